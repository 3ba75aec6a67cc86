import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from xvfa_ext.gsq import classify
from xvfa_ext.layout import KEYPOINT_NAMES, VERTEBRA_LEVELS
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed
from xvfa_ext.coco_splits import NUM_FOLDS
from xvfa_ext.synthetic_dataset import write_synthetic_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "datasets" / "prepare_synthetic.py"
SMALL = SyntheticConfig(height=192, width=144)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, write_synthetic_dataset(out, 24, seed=7, config=SMALL, progress=False)


def test_labels_are_crisp_gsq_of_noise_free_keypoints():
    for i in range(10):
        image, vertebrae = generate_image(image_seed(3, i), SyntheticConfig(prevalence="enriched"))
        assert image.dtype == np.uint8 and image.shape == (512, 384)
        assert [v.level for v in vertebrae] == list(VERTEBRA_LEVELS)
        grade, morphology = classify(np.stack([v.keypoints for v in vertebrae]))
        assert [v.grade for v in vertebrae] == grade.tolist()
        assert [v.morphology for v in vertebrae] == morphology.tolist()
        labelled = sum(not v.imputed for v in vertebrae)
        assert 1 <= labelled <= 13
        noise = np.abs(np.stack([v.annotated - v.keypoints for v in vertebrae if not v.imputed]))
        assert 0 < noise.mean() < 3


def test_deterministic_for_a_seed():
    a, va = generate_image(image_seed(5, 2), SMALL)
    b, vb = generate_image(image_seed(5, 2), SMALL)
    c, _ = generate_image(image_seed(6, 2), SMALL)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert all(np.array_equal(x.annotated, y.annotated) for x, y in zip(va, vb))


@pytest.mark.parametrize("preset, low, high", [("paper", 0.02, 0.09), ("enriched", 0.25, 0.35)])
def test_prevalence_presets(preset, low, high):
    cfg = SyntheticConfig(height=192, width=144, prevalence=preset)
    grades = [v.grade for i in range(150) for v in generate_image(image_seed(11, i), cfg)[1]]
    fractured = np.mean(np.array(grades) > 0)
    assert low <= fractured <= high


def test_images_look_like_radiographs_with_bright_vertebrae():
    image, vertebrae = generate_image(image_seed(1, 0), SyntheticConfig())
    centres = np.stack([v.keypoints.mean(0) for v in vertebrae]).round().astype(int)
    inside = image[centres[:, 1], centres[:, 0]].astype(float)
    assert inside.mean() > image.mean() + 20
    assert image.std() > 20


def test_coco_files_load_and_hold_every_field(dataset):
    out, paths = dataset
    coco = COCO(str(paths["train"]))
    cat = coco.loadCats(1)[0]
    assert cat["name"] == "vertebra" and cat["keypoints"] == list(KEYPOINT_NAMES)
    assert [1, 4] in cat["skeleton"] and [4, 5] in cat["skeleton"]
    ann = coco.loadAnns(coco.getAnnIds())[0]
    for key in ("bbox", "keypoints", "grade", "morphology", "level", "imputed", "area", "iscrowd"):
        assert key in ann
    assert len(ann["keypoints"]) == 18 and ann["keypoints"][2::3] == [2] * 6
    x, y, w, h = ann["bbox"]
    kx, ky = ann["keypoints"][0::3], ann["keypoints"][1::3]
    assert x <= min(kx) and max(kx) <= x + w and y <= min(ky) and max(ky) <= y + h
    image = coco.loadImgs(ann["image_id"])[0]
    assert image["patient_id"].startswith("P") and (out / "images" / image["file_name"]).is_file()


def test_splits_are_by_patient_and_folds_cover_trainval(dataset):
    _, paths = dataset
    patients = {}
    for split in ("train", "val", "test"):
        images = json.loads(paths[split].read_text())["images"]
        patients[split] = {img["patient_id"] for img in images}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert not (patients["val"] & patients["test"])
    assert sum(len(p) for p in patients.values()) == 24
    folds = json.loads(paths["folds"].read_text())["folds"]
    assert len(folds) == NUM_FOLDS
    vals = [set(f["val_patients"]) for f in folds]
    assert set().union(*vals) == patients["train"] | patients["val"]
    assert sum(len(v) for v in vals) == len(patients["train"] | patients["val"])
    for f in folds:
        assert not set(f["train_patients"]) & set(f["val_patients"])


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_script_writes_a_dataset(tmp_path):
    result = run_script("--out", str(tmp_path), "--num-images", "3", "--seed", "1", "--height", "160",
                        "--width", "128", "--prevalence", "enriched", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "images").glob("*.png"))) == 3
    assert json.loads((tmp_path / "annotations" / "trainval.json").read_text())["info"]["prevalence"] == "enriched"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-images", "-3"], "--num-images must be positive"),
        (["--num-images", "x"], "invalid int value"),
        (["--height", "10"], "at least 128x96"),
    ],
)
def test_script_bad_arguments_give_one_line(tmp_path, args, message):
    result = run_script("--out", str(tmp_path / "d"), *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_script_unwritable_folder_gives_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_script("--out", str(blocker / "sub"), "--num-images", "2")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(blocker / "sub") in result.stderr
