"""tools/train_net.py end to end on CPU: train, resume, evaluate, and two processes over gloo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires_detectron2

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "xvfa_dino_r50_smoke.py")


def train_net(*args, timeout=600):
    cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", SMOKE, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=dict(os.environ))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return log


def assert_evaluated(log):
    for task in ("bbox", "keypoints", "vfa"):
        assert f"copypaste: Task: {task}" in log
    assert "vertebra/normal_vs_fracture/auc" in log and "patient/normal_mild_vs_moderate_severe/auc" in log


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    log = train_net(f"train.output_dir={out}", "train.max_iter=4", "train.checkpointer.period=2", "train.eval_period=4")
    return out, log


def test_trains_checkpoints_and_evaluates(trained):
    out, log = trained
    assert "Starting training from iteration 0" in log
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    assert (out / "metrics.json").is_file() and list(out.glob("events.out.tfevents.*"))
    assert (out / "vfa_metrics.json").is_file() and (out / "coco_instances_results.json").is_file()
    assert "loss_rle" in log and "loss_gsq_kps" in log and "loss_class_dn" in log and "eta:" in log
    assert_evaluated(log)


def test_resume_continues_from_the_last_checkpoint(trained):
    out, _ = trained
    log = train_net("--resume", f"train.output_dir={out}", "train.max_iter=6", "train.eval_period=100")
    assert "Starting training from iteration 4" in log
    assert (out / "model_final.pth").is_file()


def test_eval_only(trained, tmp_path):
    out, _ = trained
    log = train_net("--eval-only", f"train.init_checkpoint={out / 'model_final.pth'}", f"train.output_dir={tmp_path}")
    assert_evaluated(log)
    assert (tmp_path / "vfa_metrics.json").is_file()


def test_two_cpu_processes(tmp_path):
    log = train_net("--num-gpus", "2", f"train.output_dir={tmp_path}", "train.max_iter=2", "train.eval_period=2",
                    "train.checkpointer.period=100")
    assert "World size: 2" in log
    assert (tmp_path / "model_final.pth").is_file()
    assert_evaluated(log)
