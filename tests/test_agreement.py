"""tools/agreement.py: a first and a second reading, with the 95th percentile of their deviation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "agreement.py"


def _coco(shifts):
    anns = [{"id": k + 1, "image_id": 1, "level": f"T{k + 1}", "keypoints": [v for j in range(6) for v in (10.0 * j + s, 5.0, 2)]}
            for k, s in enumerate(shifts)]
    return {"images": [{"id": 1, "file_name": "a.png"}], "annotations": anns, "categories": []}


def test_first_and_second_reading_with_mean_median_and_95th_percentile(tmp_path):
    shifts = np.arange(1, 21, dtype=float)  # the second reading moves vertebra k by k px
    (tmp_path / "one.json").write_text(json.dumps(_coco(np.zeros(20))))
    (tmp_path / "two.json").write_text(json.dumps(_coco(shifts)))
    out = subprocess.run([sys.executable, str(TOOL), "--first", str(tmp_path / "one.json"), "--second",
                          str(tmp_path / "two.json"), "--output", str(tmp_path / "t.json")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "20 vertebrae on 1 images in both the first and the second reading" in out.stdout
    assert "95th pct px" in out.stdout and "read twice" not in out.stdout
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["reader_mean_px"] == pytest.approx(10.5) and table["reader_median_px"] == pytest.approx(10.5)
    assert table["reader_p95_px"] == pytest.approx(np.percentile(shifts, 95))
    assert table["keypoints"]["upper_middle"]["reader_p95_px"] == pytest.approx(np.percentile(shifts, 95))
