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
    assert (before["grade"], before["morphology"]) == ("moderate", "wedge-like")
    assert before["heights_mm"]["anterior"] == pytest.approx(68 * 0.2)
    assert before["explanation"].startswith("moderate wedge: anterior height 0.68")
    moved = [p[:] for p in WEDGE]
    moved[5][1] = 95  # the reader moves lower_anterior down
    after = xvfa_ext.classify_keypoints(moved)[0]
    assert after["grade"] == "normal" and after["heights_px"]["anterior"] == pytest.approx(95)


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
    assert "line 3: expected 12 coordinates, got 4" in result.stderr
    assert "line 4: 'x' is not a number" in result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith("v1,moderate,wedge-like") and lines[2].startswith("5,moderate")


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
