"""A battery of bad inputs through the public tools. Each names the file (and line or annotation id)
and the problem, exits non-zero, and leaves no half-written output and earlier outputs intact.
Inputs that are legitimately handled (MONOCHROME1, 16-bit, RGB) are checked for the right result."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import requires_detectron2
from points_csv import HEADER
from synthetic_dicom import write_dicom
from xvfa_ext.radiograph_io import read_radiograph
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed
from xvfa_ext.synthetic_dataset import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"
EARLIER = b"an earlier output"


def tool(name, *args, cwd=None):
    folder = "datasets" if name == "convert_points.py" else "tools"
    return subprocess.run([sys.executable, str(ROOT / folder / name), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def film():
    return generate_image(image_seed(3, 0), SyntheticConfig(height=160, width=128))[0]


@pytest.fixture
def out(tmp_path):
    """An output folder that already holds an earlier result."""
    folder = tmp_path / "out"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "earlier.json").write_bytes(EARLIER)
    return folder


def intact(folder: Path):
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["earlier.json"]
    assert (folder / "annotations" / "earlier.json").read_bytes() == EARLIER


def convert_one_image(tmp_path, name, out):
    """convert_points.py on one vertebra row of image ``name`` under tmp_path/images."""
    points = [10, 10, 20, 9, 30, 8, 10, 30, 20, 31, 30, 32]
    with open(tmp_path / "points.csv", "w", newline="") as f:
        csv.writer(f).writerows([HEADER[:14], [name, "T7", *points]])
    return tool("convert_points.py", "--input", tmp_path / "points.csv", "--images", tmp_path / "images",
                "--output", out / "new")


def _png_bytes(film):
    return cv2.imencode(".png", film)[1].tobytes()


BAD_IMAGES = {
    "truncated.png": (lambda film, p: p.write_bytes(_png_bytes(film)[:200]), "cannot decode the image"),
    "zero.png": (lambda film, p: p.write_bytes(b""), "cannot decode the image"),
    "text.png": (lambda film, p: p.write_text("this is a note, not a radiograph\n"), "cannot decode the image"),
    "truncated.dcm": (lambda film, p: (write_dicom(p, film), p.write_bytes(p.read_bytes()[:600])),
                      "not a readable DICOM image"),
    "no_pixels.dcm": (lambda film, p: (write_dicom(p, film), _strip_pixels(p)), "not a readable DICOM image"),
}


def _strip_pixels(path):
    import pydicom

    ds = pydicom.dcmread(str(path))
    del ds.PixelData
    ds.save_as(str(path))


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image(tmp_path, out, film, name):
    make, problem = BAD_IMAGES[name]
    (tmp_path / "images").mkdir()
    make(film, tmp_path / "images" / name)
    result = convert_one_image(tmp_path, name, out)
    assert result.returncode == 1
    assert f"{tmp_path / 'points.csv'}, line 2: {tmp_path / 'images' / name}: {problem}" in result.stderr
    intact(out)


def test_monochrome1_dicom_is_inverted(tmp_path, out, film):
    (tmp_path / "images").mkdir()
    write_dicom(tmp_path / "images" / "mono1.dcm", film)
    gray, spacing, patient = read_radiograph(tmp_path / "images" / "mono1.dcm")
    assert np.abs(gray.astype(int) - film.astype(int)).max() <= 1  # bright bone stays bright
    assert spacing == (0.3, 0.25) and patient == "P0042"
    assert convert_one_image(tmp_path, "mono1.dcm", out).returncode == 0
    image = json.loads((out / "new" / "annotations" / "trainval.json").read_text())["images"]
    image += json.loads((out / "new" / "annotations" / "test.json").read_text())["images"]
    assert image[0]["patient_id"] == "P0042" and (image[0]["height"], image[0]["width"]) == film.shape


@pytest.mark.parametrize("kind", ["16bit.tif", "rgb.jpg"])
def test_16_bit_tiff_and_rgb_jpeg_are_read_as_the_same_film(tmp_path, out, film, kind):
    (tmp_path / "images").mkdir()
    path = tmp_path / "images" / kind
    if kind == "16bit.tif":
        cv2.imwrite(str(path), film.astype(np.uint16) * 257)
    else:
        cv2.imwrite(str(path), cv2.merge([film, film, film]), [cv2.IMWRITE_JPEG_QUALITY, 100])
    gray = read_radiograph(path)[0]
    expected = (film.astype(float) - film.min()) / (film.max() - film.min()) * 255 if kind == "16bit.tif" else film
    assert gray.shape == film.shape and np.abs(gray.astype(float) - expected).mean() < 1.5
    assert convert_one_image(tmp_path, kind, out).returncode == 0


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    paths = write_synthetic_dataset(root, 3, seed=1, config=SyntheticConfig(height=160, width=128), progress=False)
    return root, json.loads(paths["train"].read_text())


def _five_keypoints(d):
    d["annotations"][0]["keypoints"] = d["annotations"][0]["keypoints"][:15]


def _nan(d):
    d["annotations"][0]["keypoints"][4] = float("nan")


def _zero_height(d):
    k = d["annotations"][0]["keypoints"]
    k[9:18] = k[0:9]


def _outside(d):
    d["annotations"][0]["bbox"] = [100.0, 150.0, 40.0, 30.0]


def _duplicate_ids(d):
    d["annotations"][1]["id"] = d["annotations"][0]["id"]


def _no_file(d):
    d["images"][0]["file_name"] = "gone.png"


BAD_COCO = {
    "five_keypoints": (_five_keypoints, "annotation {a} of image {ai}: 5 keypoints, expected 6"),
    "nan_keypoint": (_nan, "annotation {a} of image {ai}: a keypoint or box value is not a finite number"),
    "zero_height": (_zero_height, "annotation {a} of image {ai}: a vertebra of zero height"),
    "bbox_outside": (_outside, "annotation {a} of image {ai}: box [100.0, 150.0, 40.0, 30.0] lies outside the 128x160 image"),
    "duplicate_ids": (_duplicate_ids, "annotation {a} of image {ai}: annotation id {a} appears twice"),
    "image_without_file": (_no_file, "image {i} refers to a missing file"),
}


@requires_detectron2
@pytest.mark.parametrize("case", sorted(BAD_COCO) + ["malformed_json"])
def test_bad_coco_file(tmp_path, out, coco, case):
    root, data = coco
    data = json.loads(json.dumps(data))
    path = tmp_path / "bad.json"
    if case == "malformed_json":
        path.write_text(json.dumps(data)[:-20])
        problem = "malformed JSON"
    else:
        change, problem = BAD_COCO[case]
        change(data)
        path.write_text(json.dumps(data))
        first = data["annotations"][0]
        problem = problem.format(a=first["id"], ai=first["image_id"], i=data["images"][0]["id"])
    result = tool("visualize_data.py", "--json", path, "--images", root / "images", "--output", out / "vis")
    assert result.returncode != 0
    assert f"{path}: " in result.stderr and problem in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    intact(out)


def test_wrong_weights_file(tmp_path, out):
    wrong = tmp_path / "instances_predictions.pth"
    torch.save([{"image_id": 1}], wrong)
    result = tool("combine_weights.py", "--detector", wrong, "--fine", wrong, "--output", out / "annotations" / "x.pth")
    assert result.returncode == 2 and f"{wrong}: not an XVFA checkpoint" in result.stderr
    intact(out)


def test_unwritable_output_folder(tmp_path, film):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), film)
    blocker = tmp_path / "a_file"
    blocker.write_bytes(EARLIER)  # a file where the output folder should be: nothing can be written under it
    result = convert_one_image(tmp_path, "a.png", blocker)
    assert result.returncode == 1 and f"{blocker / 'new'}: cannot write there" in result.stderr
    assert blocker.read_bytes() == EARLIER


@requires_detectron2
def test_empty_input_folder(tmp_path, out):
    (tmp_path / "empty").mkdir()
    result = tool("predict.py", "--config-file", SMOKE, "--weights", tmp_path / "none.pth", "--input",
                  tmp_path / "empty", "--output", out / "annotations")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"predict.py: no radiograph (PNG, JPEG, TIFF or DICOM) in {tmp_path / 'empty'}")
    intact(out)
