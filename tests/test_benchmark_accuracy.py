"""tools/benchmark_accuracy.py runs the two-stage schedule at a tiny budget and prints its table."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import requires_detectron2

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]
SMALL = ["dataloader.train.dataset.names=xvfa_synthetic_small_train", "dataloader.test.dataset.names=xvfa_synthetic_small_val",
         "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "model.roi_head.crop_size=32",
         "model.roi_head.num_samples=50", "model.roi_head.head.compile_inference=False",
         # The small films' vertebrae (13 px) at the detector config's three quarters.
         "dataloader.train.mapper.detector_vertebra_height=9.8", "dataloader.test.mapper.detector_vertebra_height=9.8"]
TINY = ["train.max_iter=2", "train.eval_period=2", "dataloader.train.total_batch_size=1"]


def test_two_stage_schedule_table(tmp_path):
    out = tmp_path / "bench"
    # The small data for every stage as the leading pairs; each stage's budget after its option.
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark_accuracy.py"), *SMALL, "--output", str(out),
           "--detector-set", *TINY, "--fine-set", *TINY, "--eval-set", "model.score_threshold=0.0"]
    env = dict(os.environ, XVFA_DATASETS=str(tmp_path / "data"))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    table = (out / "table.md").read_text()
    assert table.strip() in result.stdout
    end_to_end = json.loads((out / "end_to_end" / "vfa_metrics.json").read_text())
    recall = end_to_end["detection"]["recall"]
    assert f"| end to end | {recall:.3f} |" in table
    for score in ("sampled_mean", "combined", "reduction", "annotated d"):
        assert f"| {score} |" in table
    ceiling = end_to_end["ceiling"]["vertebra"]["normal_vs_fracture"]["auc"]
    assert f"| ceiling | annotated d | {ceiling:.3f} |" in table
    for stage in ("detector", "fine", "combine", "end_to_end"):
        assert f"| {stage} |" in table
    for stage in ("detector", "fine", "end_to_end"):  # the leading pairs reached every stage
        assert "xvfa_synthetic_small_val" in (out / stage / "config.yaml").read_text()
    slope = end_to_end.get("reduction_agreement", {}).get("slope")  # none where nothing was matched
    row = next(line for line in table.splitlines() if line.startswith(f"| end to end | {recall:.3f} |"))
    assert f"| {'-' if slope is None else f'{slope:.2f}'} (" in row
    # --resume runs nothing again and rebuilds the same table.
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert again.returncode == 0 and again.stdout.count("skipped (--resume)") == 4
    assert (out / "table.md").read_text().split("| stage |")[0] == table.split("| stage |")[0]


def test_a_failed_stage_names_its_log(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark_accuracy.py"), "--output", str(out),
           "--detector-set", "dataloader.train.dataset.names=no_such_dataset"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0
    assert f"see {out / 'detector' / 'log.txt'}" in result.stderr
    assert not (out / "table.md").exists()
