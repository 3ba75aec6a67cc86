"""tools/benchmark_training.py: a short run of train_net.py on the smoke config, projected to its schedule."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import requires_detectron2

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "benchmark_training.py"
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"


def run(tmp_path, *args):
    # Its own dataset folder: the shared one is for the tests that watch the splits being written.
    env = dict(os.environ, XVFA_DATASETS=str(tmp_path / "datasets"))
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)


def test_a_short_run_is_timed_and_projected_to_the_schedule(tmp_path):
    result = run(tmp_path, "--config-file", SMOKE, "--iters", 5, "--keep", tmp_path / "run", "train.max_iter=400")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"CPU capability {torch.backends.cpu.get_cpu_capability()}" in out
    seconds, timed = re.search(r"seconds per iteration: ([\d.]+) \(detectron2, (\d+) iterations\)", out).groups()
    other = float(re.search(r"start, warm-up and evaluation: ([\d.]+) min", out).group(1))
    projected = float(re.search(r"projected run of 400 iterations: ([\d.]+) min", out).group(1))
    assert int(timed) == 3 and float(seconds) > 0  # 5 iterations, the first two not timed
    # Each minute figure is printed to 0.1 min.
    assert projected == pytest.approx(400 * float(seconds) / 60 + other, abs=0.11)
    # The short run was the config's, for 5 iterations, evaluated at the end.
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Overall training speed: 3 iterations" in log and "Total inference time" in log


def test_a_failing_run_is_a_non_zero_exit_with_train_nets_message(tmp_path):
    result = run(tmp_path, "--config-file", SMOKE, "--iters", 5, f"dataset.train_json={tmp_path}/none.json",
                 f"dataset.val_json={tmp_path}/none.json", f"dataset.image_root={tmp_path}")
    assert result.returncode != 0
    said = f"benchmark_training: train_net.py failed:\ntrain_net.py: {tmp_path}/none.json: file not found"
    assert said in result.stderr, result.stderr[-3000:]
    assert run(tmp_path, "--config-file", SMOKE, "--iters", 2).returncode == 2  # too few to time
