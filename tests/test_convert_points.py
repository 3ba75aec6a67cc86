"""datasets/convert_points.py: a CSV of six points per vertebra into the COCO split layout."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from points_csv import HEADER, OTHER_LEVELS, write_points_csv
from xvfa_ext.gsq import classify

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("convert_points", ROOT / "datasets" / "convert_points.py")
convert_points = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_points)


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    return write_points_csv(tmp_path_factory.mktemp("points"))


def test_points_become_split_coco_files_with_levels_boxes_and_gsq_grades(points, tmp_path):
    csv_path, image_dir, rows = points
    assert convert_points.main(["--input", str(csv_path), "--images", str(image_dir), "--output", str(tmp_path)]) == 0
    ann = tmp_path / "annotations"
    assert sorted(p.name for p in ann.iterdir()) == ["folds.json", "test.json", "train.json", "trainval.json", "val.json"]
    splits = {s: json.loads((ann / f"{s}.json").read_text()) for s in ("train", "val", "test", "trainval")}
    patients = {s: {img["patient_id"] for img in splits[s]["images"]} for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    everything = splits["trainval"]["annotations"] + splits["test"]["annotations"]
    assert len(everything) == len(rows)
    assert splits["train"]["info"]["levels"] == [lv for lv in OTHER_LEVELS if any(r[1] == lv for r in rows)]
    folds = json.loads((ann / "folds.json").read_text())["folds"]
    assert len(folds) == 5
    by_key = {(r[0], r[1]): r for r in rows}
    files = {img["id"]: img["file_name"] for s in ("trainval", "test") for img in splits[s]["images"]}
    for a in everything:
        row = by_key[(files[a["image_id"]], a["level"])]
        pts = np.asarray(a["keypoints"]).reshape(6, 3)[:, :2]
        np.testing.assert_allclose(pts.reshape(-1), np.asarray(row[2:14], dtype=float), atol=0.01)
        x, y, w, h = a["bbox"]
        assert (pts[:, 0] >= x).all() and (pts[:, 0] <= x + w).all() and (pts[:, 1] >= y).all() and (pts[:, 1] <= y + h).all()
        if row[14] == "":
            assert a["graded_by"] == "gsq" and a["grade"] == int(classify(pts[None])[0][0])
        else:
            assert a["graded_by"] == "reader" and (a["grade"], a["morphology"]) == (int(row[14]), int(row[15]))


def _write(path: Path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_bad_row_is_named_by_line_and_nothing_is_written(points, tmp_path):
    csv_path, image_dir, rows = points
    good = ",".join(str(v) for v in rows[0])
    bad_number = ",".join(str(v) for v in rows[1][:2] + ["abc"] + rows[1][3:])
    zero = rows[2][:]
    zero[8:14] = zero[2:8]  # the lower endplate on the upper one
    missing_image = ["no_such.png"] + rows[3][1:]
    lines = [",".join(HEADER), good, bad_number, good, ",".join(str(v) for v in zero),
             ",".join(str(v) for v in missing_image)]
    bad = _write(tmp_path / "bad.csv", lines)
    out = tmp_path / "out"
    with pytest.raises(convert_points.ConversionError) as err:
        convert_points.convert(bad, image_dir, out, {}, 0, "lateral")
    message = str(err.value)
    assert f"{bad}, line 3: upper_posterior_x 'abc' is not a number" in message
    assert f"{bad}, line 4: {rows[0][0]} level {rows[0][1]} again (first on line 2)" in message
    assert f"{bad}, line 5: a vertebra of zero height" in message
    assert not (out / "annotations").exists()


def test_missing_image_is_named_and_the_exit_status_is_non_zero(points, tmp_path, capsys):
    csv_path, image_dir, rows = points
    bad = _write(tmp_path / "bad.csv", [",".join(HEADER), ",".join(str(v) for v in ["no_such.png"] + rows[0][1:])])
    assert convert_points.main(["--input", str(bad), "--images", str(image_dir), "--output", str(tmp_path / "o")]) == 1
    assert f"{bad}, line 2: {image_dir / 'no_such.png'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o" / "annotations").exists()


def test_header_after_blank_lines_mapped_columns_and_named_grades(points, tmp_path):
    csv_path, image_dir, rows = points
    header = ["file"] + HEADER[1:]
    row = [str(v) for v in rows[0]]
    row[14], row[15] = "mild", "concave"
    src = _write(tmp_path / "mapped.csv", ["", "  ", ",".join(header), ",".join(row)])
    assert convert_points.main(["--input", str(src), "--images", str(image_dir), "--output", str(tmp_path / "o"),
                                "--column", "image=file"]) == 0
    ann = [a for s in ("trainval", "test")
           for a in json.loads((tmp_path / "o" / "annotations" / f"{s}.json").read_text())["annotations"]]
    assert [(a["grade"], a["morphology"]) for a in ann] == [(1, 2)]


@pytest.mark.parametrize("lines, problem", [
    ([], "the file is empty"),
    ([",".join(HEADER)], "no vertebra rows after the header"),
    (["image,level,x"], "line 1: the header lacks upper_posterior_x"),
])
def test_empty_or_headerless_csv_is_an_error(points, tmp_path, lines, problem):
    _, image_dir, _ = points
    src = _write(tmp_path / "p.csv", lines)
    with pytest.raises(convert_points.ConversionError, match=problem):
        convert_points.convert(src, image_dir, tmp_path / "o", {}, 0, "lateral")


def test_existing_annotations_are_not_overwritten(points, tmp_path):
    csv_path, image_dir, _ = points
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text("earlier")
    with pytest.raises(convert_points.ConversionError, match="exists already"):
        convert_points.convert(csv_path, image_dir, tmp_path, {}, 0, "lateral")
    assert (tmp_path / "annotations" / "train.json").read_text() == "earlier"
