"""tools/benchmark_reading_noise.py: the slope and AUC a perfect model keeps at a given reader noise."""

import json
import re
import subprocess
import sys
from pathlib import Path

from xvfa_ext.layout import read_points
from xvfa_ext.synthetic import SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


def tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark_reading_noise.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_the_table_falls_with_the_distance_and_bad_files_are_named(tmp_path):
    paths = write_synthetic_dataset(tmp_path, 12, seed=3, config=SyntheticConfig(height=160, width=128), progress=False)
    coco = json.loads(paths["trainval"].read_text())
    coco["annotations"][0]["imputed"] = True  # an imputed vertebra is not a reading
    (tmp_path / "some.json").write_text(json.dumps(coco))
    result = tool("--annotations", tmp_path / "some.json", "--distance", "0", "0.1", "--draws", "5")
    assert result.returncode == 0, result.stderr
    read = sum(read_points(a) is not None for a in coco["annotations"])
    assert 0 < read < len(coco["annotations"]) - 1
    assert f"{read} read vertebrae of {len(coco['annotations'])}; middles read" in result.stdout
    rows = re.findall(r"^\| (\d\.\d+) \| ([\d.]+) ± ([\d.]+) \| ([\d.]+) ± ([\d.]+) \|$", result.stdout, re.M)
    assert [r[0] for r in rows] == ["0.000", "0.100"]
    assert rows[0][1:] == ("1.000", "0.000", "1.000", "0.000") and float(rows[1][1]) < 0.95

    del coco["annotations"][1]["keypoints"][-3:]
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    result = tool("--annotations", tmp_path / "bad.json")
    assert result.returncode == 2
    assert f"bad.json: annotation {coco['annotations'][1]['id']} of image" in result.stderr
    assert "keypoints, expected 6" in result.stderr
    result = tool("--annotations", tmp_path / "some.json", "--distance", "-0.1")
    assert result.returncode == 2 and "distances must be >= 0" in result.stderr
