import json
import subprocess
import sys
from pathlib import Path

import pytest

import xvfa_ext
from xvfa_ext.layout import KEYPOINT_NAMES

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gsq.py"
WEDGE = [[0, 0], [20, 0], [40, 0], [0, 100], [20, 90], [40, 68]]


def test_classify_keypoints_follows_a_moved_point():
    before = xvfa_ext.classify_keypoints(WEDGE, pixel_spacing=(0.2, 0.1))[0]
    assert (before["gsq_grade"], before["gsq_morphology"], before["gsq_shape"]) == ("moderate", "wedge-like", "wedge")
    assert before["heights_mm"]["anterior"] == pytest.approx(68 * 0.2)
    assert before["explanation"].startswith("moderate wedge: anterior height 0.68")
    moved = [p[:] for p in WEDGE]
    moved[5][1] = 95  # the reader moves lower_anterior down
    after = xvfa_ext.classify_keypoints(moved)[0]
    assert after["gsq_grade"] == "normal" and after["heights_px"]["anterior"] == pytest.approx(95)


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60)


def test_csv_bad_rows_by_line_number(tmp_path):
    rows = ["id,c1,c2,c3,c4,c5,c6,c7,c8,c9,c10,c11,c12", "v1," + ",".join(str(v) for p in WEDGE for v in p),
            "v2,0,0,20,0", "v3,0,0,20,0,40,0,0,100,20,x,40,68", ",".join(str(v) for p in WEDGE for v in p)]
    src = tmp_path / "points.csv"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "graded.csv"
    result = run("--input", str(src), "--output", str(out))
    assert result.returncode == 1
    assert "line 3: 5 cells, where the layout of line 1 has 13" in result.stderr
    assert "line 4: 'x' is not a number" in result.stderr
    # Twelve numbers under a header with an id column: not an id-less row, a row that does not match.
    assert "line 5: 12 cells, where the layout of line 1 has 13" in result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("v1,moderate,wedge-like")


def test_json_report_regraded_after_a_correction(tmp_path):
    report = {"image": "a.png", "vertebrae": [
        {"index": 0, "keypoints": {n: {"x": x, "y": y} for n, (x, y) in zip(KEYPOINT_NAMES, WEDGE)}},
        {"index": 1, "keypoints": {n: {"x": 0, "y": 0} for n in KEYPOINT_NAMES[:5]}},
    ]}
    report["vertebrae"][0]["keypoints"]["lower_anterior"]["y"] = 97
    src = tmp_path / "report.json"
    src.write_text(json.dumps(report))
    result = run("--input", str(src), "--output", str(tmp_path / "out.json"))
    assert result.returncode == 1 and "vertebra 1: missing keypoint field 'lower_anterior'" in result.stderr
    graded = json.loads((tmp_path / "out.json").read_text())["vertebrae"][0]
    assert graded["gsq_grade"] == "normal" and graded["heights_px"]["anterior"] == pytest.approx(97)


FLAT = ",".join(str(v) for p in WEDGE for v in p)
NAMED = ",".join(f"{n}_{a}" for n in KEYPOINT_NAMES for a in "xy")


def test_a_numeric_id_and_a_missing_coordinate_are_not_read_as_points(tmp_path):
    # Headerless, the first row decides: an id and twelve coordinates. A row that lost a coordinate
    # has twelve cells and must not have its id taken for the first x.
    short = "7," + ",".join(FLAT.split(",")[:-1])
    src = tmp_path / "points.csv"
    src.write_text(f"5,{FLAT}\n{short}\n")
    result = run("--input", str(src), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{src}: line 2: 12 cells, where the layout of line 1 has 13"
    assert (tmp_path / "out.csv").read_text().splitlines()[1].startswith("5,moderate,wedge-like")


@pytest.mark.parametrize("text, problem", [
    ("", "the file is empty"),
    ("\n \n", "the file is empty"),
    (f"{NAMED}\n", "line 1: a header and no vertebra rows"),
    ("a,b,c\n1,2,3\n", "line 1: the header lacks upper_posterior_x"),
    ("1,2,3\n", "line 1: 3 numbers; a row without a header holds 12 coordinates, or an id and 12"),
])
def test_empty_headerless_or_unknown_layouts_are_errors(tmp_path, text, problem):
    src = tmp_path / "points.csv"
    src.write_text(text)
    result = run("--input", str(src), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 2 and result.stderr.strip().startswith(f"{src}: {problem}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_header_after_blank_lines_named_columns_and_pixel_spacing(tmp_path):
    src = tmp_path / "points.csv"
    src.write_text(f"\n\nid,note,{NAMED}\nL1,checked,{FLAT}\n")
    result = run("--input", str(src), "--output", str(tmp_path / "out.csv"), "--pixel-spacing", "0.2", "0.1")
    assert result.returncode == 0, result.stderr
    import csv

    (row,) = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert row["id"] == "L1" and row["grade"] == "moderate"
    assert float(row["height_anterior_mm"]) == pytest.approx(68 * 0.2)


def test_a_dicom_report_is_regraded_in_mm_and_stale_mm_heights_go(tmp_path):
    keypoints = {n: {"x": x, "y": y} for n, (x, y) in zip(KEYPOINT_NAMES, WEDGE)}
    vertebra = {"index": 0, "keypoints": keypoints, "heights_mm": {"anterior": 99.0}}
    src = tmp_path / "report.json"
    src.write_text(json.dumps({"pixel_spacing_mm": [0.2, 0.1], "vertebrae": [vertebra]}))
    assert run("--input", str(src), "--output", str(tmp_path / "mm.json")).returncode == 0
    regraded = json.loads((tmp_path / "mm.json").read_text())["vertebrae"][0]
    assert regraded["heights_mm"]["anterior"] == pytest.approx(68 * 0.2)
    src.write_text(json.dumps({"pixel_spacing_mm": None, "vertebrae": [vertebra]}))
    assert run("--input", str(src), "--output", str(tmp_path / "px.json")).returncode == 0
    assert "heights_mm" not in json.loads((tmp_path / "px.json").read_text())["vertebrae"][0]
