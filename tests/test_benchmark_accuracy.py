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
    # The found vertebrae get their own rows where some, not all, were found.
    of_found = end_to_end.get("screening_of_found", {}).get("scores", {})
    rows = json.loads((out / "end_to_end" / "vfa_predictions.json").read_text())
    graded = [r for r in rows if not r["imputed"] and r["grade"] != -1 and r["morphology"] != -1]
    assert (0 < sum(r["matched"] for r in graded) < len(graded)) == bool(of_found)
    for score, per_task in of_found.items():
        auc = per_task["normal_vs_fracture"]["auc"]
        assert f"| end to end, found vertebrae only | {score} | {'-' if auc is None else f'{auc:.3f}'} |" in table
    assert ("found vertebrae only" in table) == bool(of_found)
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


def test_the_table_scores_the_found_vertebrae_apart_where_some_were_missed():
    import importlib.util

    from xvfa_ext.metrics import GRADE_TASKS, SCORES

    spec = importlib.util.spec_from_file_location("benchmark_accuracy", ROOT / "tools" / "benchmark_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def tasks(auc):
        return {t: {"auc": auc, "sensitivity": 0.5, "specificity": 0.5} for t in GRADE_TASKS}

    def metrics(auc):
        return {"alpha": 0.9, "detection": {"recall": 0.8}, "ceiling": {"vertebra": tasks(1.0)},
                "screening": {"vertebra": {"grade": tasks(auc)}, "scores": {s: {"vertebra": tasks(auc)} for s in SCORES}}}

    missed = dict(metrics(0.6), screening_of_found={"count": 8, "scores": {s: tasks(0.9) for s in SCORES}})
    text = bench.table(metrics(0.7), missed, {"end_to_end": 60.0})
    for score in SCORES:
        assert f"| end to end | {score} | 0.600 |" in text
        assert f"| end to end, found vertebrae only | {score} | 0.900 |" in text
    assert "found vertebrae only" not in bench.table(metrics(0.7), metrics(0.6), {"end_to_end": 60.0})
