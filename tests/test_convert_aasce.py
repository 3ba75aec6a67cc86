"""datasets/convert_aasce.py and convert_points.py --points corners: four corners per vertebra."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from points_csv import write_points_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "datasets"))
_spec = importlib.util.spec_from_file_location("convert_aasce", ROOT / "datasets" / "convert_aasce.py")
convert_aasce = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_aasce)
convert_points = sys.modules["convert_points"]

CORNER_HEADER = ["image", "level"] + [f"{n}_{a}" for n in convert_aasce.CORNER_ORDER for a in "xy"]


def _corners(rng, top, left, height, width, wedge):
    """Four corners (upper left, upper right, lower left, lower right) of a vertebra whose right
    side is shorter than its left by ``wedge`` of its height."""
    ul, ur = np.array([left, top]), np.array([left + width, top + rng.uniform(-2, 2)])
    ll = np.array([left, top + height])
    lr = np.array([left + width, ur[1] + height * (1 - wedge)])
    return np.stack([ul, ur, ll, lr])


def write_aasce(root: Path, names, size=(600, 240), seed=0):
    """An AASCE-like folder: noise films under data/training and their landmarks (68 x, then 68 y,
    normalised) under labels/training. Returns each film's corners in pixels, (17, 4, 2)."""
    rng = np.random.default_rng(seed)
    (root / "data" / "training").mkdir(parents=True)
    (root / "labels" / "training").mkdir(parents=True)
    h, w = size
    corners = {}
    rows = []
    for k, name in enumerate(names):
        cv2.imwrite(str(root / "data" / "training" / name), rng.integers(0, 255, (h, w), dtype=np.uint8))
        wedges = rng.choice([0.0, 0.1, 0.3, 0.45], size=17)
        c = np.stack([_corners(rng, 20 + 32 * i, 80, 26, 60, wedges[i]) for i in range(17)])
        corners[name] = c
        flat = c.reshape(-1, 2)
        rows.append(list(flat[:, 0] / w) + list(flat[:, 1] / h))
    (root / "labels" / "training" / "filenames.csv").write_text("\n".join(names) + "\n")
    with open(root / "labels" / "training" / "landmarks.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return corners


NAMES = [f"sunhl-1th-0{d}-Jan-2017-{p} {letter} AP.jpg" for d, p, letter in
         [(1, 101, "A"), (1, 101, "B"), (2, 102, "A"), (3, 103, "A"), (3, 104, "C"), (4, 105, "A"), (4, 105, "B"),
          (5, 106, "A"), (5, 107, "A"), (6, 108, "A"), (6, 109, "A"), (7, 110, "A")]] + ["sunhl-1th-20-Jul-2016-coronal1.jpg"]


def test_patients_come_from_the_number_before_the_letter():
    assert convert_aasce.patient_of("sunhl-1th-02-Jan-2017-162 A AP.jpg") == "162"
    assert convert_aasce.patient_of("sunhl-1th-22-Nov-2016-142 A AP (2).jpg") == "142"
    assert convert_aasce.patient_of("sunhl-1th-21-Nov-2016-138 D AP2.jpg") == "138"
    assert convert_aasce.patient_of("sunhl-1th-20-Jul-2016-coronal1.jpg") == "sunhl-1th-20-Jul-2016-coronal1"


def test_aasce_films_become_frontal_coco_files_split_by_patient(tmp_path):
    corners = write_aasce(tmp_path / "aasce", NAMES)
    out = tmp_path / "out"
    assert convert_aasce.main(["--root", str(tmp_path / "aasce"), "--split", "training", "--output", str(out)]) == 0
    ann = out / "annotations"
    files = {s: json.loads((ann / f"{s}.json").read_text()) for s in ("train", "val", "test", "trainval")}
    assert not files["test"]["images"], "the training folder is split into train and val only"
    info = files["trainval"]["info"]
    assert info["view"] == "frontal" and info["middles"] == "from_corners" and info["levels"] == list(convert_aasce.LEVELS)
    # Posterior heights are the left sides: 26 px on every synthetic vertebra.
    assert info["vertebra_height_px"] == pytest.approx(26, abs=0.01)
    patients = {s: {img["patient_id"] for img in files[s]["images"]} for s in ("train", "val")}
    assert patients["val"] and not patients["train"] & patients["val"]
    assert patients["train"] | patients["val"] == {str(p) for p in range(101, 111)} | {"sunhl-1th-20-Jul-2016-coronal1"}
    name_of = {img["id"]: img["file_name"] for img in files["trainval"]["images"]}
    annotations = files["trainval"]["annotations"]
    assert len(annotations) == 17 * len(NAMES)
    for a in annotations:
        pts = np.asarray(a["keypoints"]).reshape(6, 3)[:, :2]
        c = corners[name_of[a["image_id"]]][convert_aasce.LEVELS.index(a["level"])]
        np.testing.assert_allclose(pts[[0, 2, 3, 5]], c, atol=0.02)  # up, ua, lp, la: the image-left side posterior
        np.testing.assert_allclose(pts[1], (c[0] + c[1]) / 2, atol=0.02)
        np.testing.assert_allclose(pts[4], (c[2] + c[3]) / 2, atol=0.02)
        assert a["middles"] == "from_corners" and a["graded_by"] == "gsq"
    # The wedges drawn (0, 0.1, 0.3, 0.45 of the height on the right) give every grade.
    assert {a["grade"] for a in annotations} == {0, 2, 3}


def test_a_corner_beyond_its_film_is_named_or_left_out_on_request(tmp_path, capsys):
    write_aasce(tmp_path / "aasce", NAMES[:3])
    path = tmp_path / "aasce" / "labels" / "training" / "landmarks.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    rows[1][68 + 4 * 16 + 3] = "1.02"  # film 2's L5, lower right corner, y beyond the film
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    args = ["--root", str(tmp_path / "aasce"), "--split", "training"]
    assert convert_aasce.main(args + ["--output", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "landmarks.csv, line 2" in err and NAMES[1] in err and "L5" in err and "beyond the film" in err
    assert not (tmp_path / "a" / "annotations").exists()
    assert convert_aasce.main(args + ["--output", str(tmp_path / "b"), "--outside", "drop"]) == 0
    assert "left out" in capsys.readouterr().err
    coco = json.loads((tmp_path / "b" / "annotations" / "trainval.json").read_text())
    assert len(coco["annotations"]) == 3 * 17 - 1


def test_levels_follow_position_when_a_film_lists_its_vertebrae_out_of_order(tmp_path, capsys):
    corners = write_aasce(tmp_path / "aasce", NAMES[:3])
    path = tmp_path / "aasce" / "labels" / "training" / "landmarks.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    # Film 1 lists its lowest vertebra first.
    for axis in (0, 68):
        values = rows[0][axis:axis + 68]
        rows[0][axis:axis + 68] = values[64:] + values[:64]
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    assert convert_aasce.main(["--root", str(tmp_path / "aasce"), "--split", "training", "--output", str(tmp_path / "o")]) == 0
    assert f"{NAMES[0]} lists its vertebrae out of top-to-bottom order" in capsys.readouterr().err
    coco = json.loads((tmp_path / "o" / "annotations" / "trainval.json").read_text())
    first = next(img["id"] for img in coco["images"] if img["file_name"] == NAMES[0])
    for a in coco["annotations"]:
        if a["image_id"] == first:
            level = convert_aasce.LEVELS.index(a["level"])
            np.testing.assert_allclose(np.asarray(a["keypoints"]).reshape(6, 3)[0, :2], corners[NAMES[0]][level][0], atol=0.02)


def test_mismatched_label_files_are_an_error(tmp_path, capsys):
    write_aasce(tmp_path / "aasce", NAMES[:3])
    (tmp_path / "aasce" / "labels" / "training" / "filenames.csv").write_text("\n".join(NAMES[:2]) + "\n")
    assert convert_aasce.main(["--root", str(tmp_path / "aasce"), "--split", "training", "--output", str(tmp_path / "o")]) == 1
    assert "names 2 films, landmarks.csv has 3 rows" in capsys.readouterr().err


def test_corner_spreadsheets_make_middles_from_the_corners(tmp_path):
    csv_path, image_dir, rows = write_points_csv(tmp_path / "src", num_images=6)
    corner_csv = tmp_path / "corners.csv"
    with open(corner_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CORNER_HEADER + ["patient_id"])
        for r in rows:
            xy = np.asarray(r[2:14], dtype=float).reshape(6, 2)
            writer.writerow([r[0], r[1], *xy[[0, 2, 3, 5]].reshape(-1), r[16]])
    out = tmp_path / "out"
    assert convert_points.main(["--input", str(corner_csv), "--images", str(image_dir), "--output", str(out),
                                "--points", "corners"]) == 0
    coco = {s: json.loads((out / "annotations" / f"{s}.json").read_text()) for s in ("trainval", "test")}
    annotations = coco["trainval"]["annotations"] + coco["test"]["annotations"]
    assert len(annotations) == len(rows) and coco["test"]["info"]["middles"] == "from_corners"
    for a in annotations:
        pts = np.asarray(a["keypoints"]).reshape(6, 3)[:, :2]
        np.testing.assert_allclose(pts[1], (pts[0] + pts[2]) / 2, atol=0.02)
        np.testing.assert_allclose(pts[4], (pts[3] + pts[5]) / 2, atol=0.02)
        assert a["middles"] == "from_corners"
    # A six-point spreadsheet given as corners lacks nothing it needs; a corner one given as six does.
    assert convert_points.main(["--input", str(corner_csv), "--images", str(image_dir), "--output", str(tmp_path / "six")]) == 1
