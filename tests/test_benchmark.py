"""tools/benchmark.py runs end to end on the smoke config and prints both ratios and peak memory."""

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from conftest import requires_detectron2

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_prints_times_ratios_and_memory(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "--config-file",
           str(ROOT / "configs" / "xvfa_dino_r50_smoke.py"), "--batch", "1", "--iters", "1", "--threads", "1"]
    # Its own dataset folder: the shared one is for the tests that watch the splits being written.
    env = dict(os.environ, XVFA_DATASETS=str(tmp_path))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for line in result.stdout.splitlines():
        match = re.match(r"(train s/iteration|inference s/image|peak memory \(.*\))\s+([\d.]+)\s+([\d.]+)\s*([\d.]*)$", line)
        if match:
            rows[match.group(1).split(" (")[0]] = [float(v) for v in match.groups()[1:] if v]
    assert set(rows) == {"train s/iteration", "inference s/image", "peak memory"}, result.stdout
    for label in ("train s/iteration", "inference s/image"):
        dino, xvfa, ratio = rows[label]
        assert dino > 0 and xvfa > 0
        assert abs(ratio - xvfa / dino) < 0.01 + 0.01 * ratio  # the ratio printed is of the times printed
    assert all(gib > 0.1 for gib in rows["peak memory"])
    from xvfa_ext.keypoint_head import resolve_trunk_dtype

    capability = f"CPU capability {torch.backends.cpu.get_cpu_capability()}, keypoint trunk in {resolve_trunk_dtype('auto', 'cpu')}"
    assert capability in result.stdout
