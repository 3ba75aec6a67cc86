"""tools/train_net.py end to end on CPU: train, resume, evaluate, and two processes over gloo."""

import json
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


def test_three_scores_and_the_ceiling_are_those_of_the_rows(trained):
    """Each named score's AUC is the AUC of the per-vertebra values the evaluator wrote; the
    ceiling's is that of the annotated keypoints' height reduction."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from xvfa_ext.gsq import morphometry

    out, log = trained
    metrics = json.loads((out / "vfa_metrics.json").read_text())
    rows = [r for r in json.loads((out / "vfa_predictions.json").read_text()) if not r["imputed"]]
    positive = np.array([r["grade"] >= 1 for r in rows])
    task = "normal_vs_fracture"
    assert metrics["scores"]["headline"] == "sampled_mean"
    detection = metrics["detection"]
    assert sum(detection["missed_by_grade"]) == detection["vertebrae"] - detection["matched"]
    def fracture(row, kind):  # a missed vertebra counts as certain normal
        p = row["prediction"]
        return 0.0 if p is None else 1 - p["grade_probabilities"][kind]["normal"]

    expected = {
        "headline": [fracture(r, "sampled_mean") for r in rows],
        "combined": [fracture(r, "combined") for r in rows],
        "reduction": [r["prediction"]["reduction"] if r["prediction"] else 0.0 for r in rows],
    }
    screening = metrics["screening"]
    found = {
        "headline": screening["vertebra"]["grade"][task]["auc"],
        "combined": screening["scores"]["combined"]["vertebra"][task]["auc"],
        "reduction": screening["scores"]["reduction"]["vertebra"][task]["auc"],
    }
    for name, scores in expected.items():
        assert found[name] == pytest.approx(roc_auc_score(positive, scores)), name
    annotated = morphometry(torch.tensor([r["keypoints"] for r in rows], dtype=torch.float64))["reduction"]
    ceiling = metrics["ceiling"]["vertebra"][task]["auc"]
    assert ceiling == pytest.approx(roc_auc_score(positive, annotated.numpy()))
    assert ceiling > 0.9  # a few pixels of annotation noise on 256x192 images
    assert metrics["ceiling"]["count"] == len(rows)
    for name in ("vertebra/normal_vs_fracture/auc_reduction", "vertebra/normal_vs_fracture/auc_combined",
                 "ceiling/vertebra/normal_vs_fracture/auc"):
        assert name in log


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


def run_tool(name, *args):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def test_plots_and_agreement_from_a_smoke_evaluation(trained, tmp_path):
    import cv2

    from xvfa_ext.data import ensure_synthetic

    out, _ = trained
    # The fine stage on ground-truth boxes, so that every vertebra is matched and every plot drawn.
    evaluation = tmp_path / "eval"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(ROOT / "configs" / "xvfa_dino_r50_fine.py"),
         "--eval-only", f"train.init_checkpoint={out / 'model_final.pth'}", f"train.output_dir={evaluation}",
         "dataloader.test.dataset.names=xvfa_synthetic_small_val", "dataloader.test.num_workers=0",
         "model.roi_head.crop_size=112", "model.roi_head.num_samples=200", "model.roi_head.head.compile_inference=False"],
        check=True, capture_output=True, timeout=600, cwd=ROOT,
    )
    printed = run_tool("plot_results.py", "--results", str(evaluation), "--output", str(tmp_path / "plots"))
    for name in ("gsq_borders_morphology", "gsq_borders_grade", "confusion", "roc", "coverage"):
        image = cv2.imread(str(tmp_path / "plots" / f"{name}.png"))
        assert image is not None and image.std() > 0, printed

    val = ensure_synthetic("xvfa_synthetic_small") / "annotations" / "val.json"
    reread = json.loads(val.read_text())
    for ann in reread["annotations"]:
        ann["keypoints"] = [v + (3 if k % 3 == 0 else 4 if k % 3 == 1 else 0) for k, v in enumerate(ann["keypoints"])]
    second = tmp_path / "reread.json"
    second.write_text(json.dumps(reread))
    table_file = tmp_path / "agreement.json"
    run_tool("agreement.py", "--first", str(val), "--second", str(second), "--predictions",
             str(evaluation / "vfa_predictions.json"), "--output", str(table_file))
    table = json.loads(table_file.read_text())
    assert table["reader_mean_px"] == pytest.approx(5.0)
    assert table["model_eps_mean_px"] > 0
