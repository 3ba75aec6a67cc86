"""A user's own data end to end, by the README's "Your own data" commands: points spreadsheet ->
COCO files -> smoke training -> evaluation -> prediction on two images -> a re-graded report."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import requires_detectron2
from points_csv import write_points_csv
from xvfa_ext.gsq import GRADES, classify
from xvfa_ext.layout import KEYPOINT_NAMES

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd):
    out = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{args[0]} failed:\n{out.stderr[-3000:]}"
    return out


def test_spreadsheet_to_trained_model_predictions_and_regrade(tmp_path):
    csv_path, images, rows = write_points_csv(tmp_path, num_images=10, size=(256, 192))
    assert {r[1] for r in rows} >= {"T1", "L1"}  # levels other than T4-L4; every fourth vertebra left out

    _run(ROOT / "datasets" / "convert_points.py", "--input", csv_path, "--images", images, "--output", tmp_path / "mine",
         cwd=tmp_path)
    ann = tmp_path / "mine" / "annotations"
    data = [f"dataset.image_root={images}", f"dataset.train_json={ann / 'train.json'}",
            f"dataset.val_json={ann / 'val.json'}", "dataset.name=mine"]
    smoke = ROOT / "configs" / "xvfa_dino_r50_smoke.py"
    out = tmp_path / "run"
    _run(ROOT / "tools" / "train_net.py", "--config-file", smoke, *data, f"train.output_dir={out}", cwd=tmp_path)
    trained = json.loads((out / "vfa_metrics.json").read_text())
    val = json.loads((ann / "val.json").read_text())
    assert trained["detection"]["vertebrae"] == len(val["annotations"]), "evaluated on the converted val split"

    _run(ROOT / "tools" / "train_net.py", "--config-file", smoke, "--eval-only", *data,
         f"train.init_checkpoint={out / 'model_final.pth'}", f"train.output_dir={tmp_path / 'eval'}", cwd=tmp_path)
    evaluated = json.loads((tmp_path / "eval" / "vfa_metrics.json").read_text())
    assert evaluated["detection"] == trained["detection"]

    two = [images / img["file_name"] for img in val["images"]][:1] + [images / "000000.png"]
    _run(ROOT / "tools" / "predict.py", "--config-file", smoke, "--weights", out / "model_final.pth",
         "--input", *two, "--output", tmp_path / "pred", *data, cwd=tmp_path)
    reports = sorted(p for p in (tmp_path / "pred").glob("*.json") if p.name not in ("summary.json", "studies.json"))
    assert len(reports) == 2 and (tmp_path / "pred" / "vertebrae.csv").is_file()
    report = json.loads(reports[0].read_text())
    assert report["levels"].startswith("cranial to caudal, aligned to the dataset's levels T1-L1")
    assert all(v["level"] is None or v["level"] in {r[1] for r in rows} for v in report["vertebrae"])

    # A reader moves the points of the report's vertebrae (here onto the annotated ones) and re-grades it.
    read = [r for r in rows if r[0] == Path(report["image"]).name]
    report["vertebrae"] = report["vertebrae"][: len(read)]
    for vertebra, row in zip(report["vertebrae"], read):
        for k, name in enumerate(KEYPOINT_NAMES):
            vertebra["keypoints"][name].update(x=row[2 + 2 * k], y=row[3 + 2 * k])
    (tmp_path / "edited.json").write_text(json.dumps(report))
    _run(ROOT / "tools" / "gsq.py", "--input", tmp_path / "edited.json", "--output", tmp_path / "regraded.json",
         cwd=tmp_path)
    regraded = json.loads((tmp_path / "regraded.json").read_text())["vertebrae"]
    expected = [GRADES[g] for g in classify(np.asarray([r[2:14] for r in read], dtype=float).reshape(-1, 6, 2))[0]]
    assert len(regraded) == len(read) > 0 and [v["gsq_grade"] for v in regraded] == expected


T1_L5 = tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))


def _run_of_levels(annotation):
    """Image k keeps a run of 5 to 17 consecutive levels."""
    k = annotation["image_id"]
    length = 5 + (5 * k) % 13
    start = (7 * k) % (len(T1_L5) - length + 1)
    return start <= T1_L5.index(annotation["level"]) < start + length


def test_seventeen_levels_and_5_to_17_vertebrae_per_image_train_the_fine_stage_and_evaluate(tmp_path):
    csv_path, images, rows = write_points_csv(tmp_path, num_images=14, size=(320, 192), levels=T1_L5,
                                              keep=_run_of_levels)
    counts = {}
    for r in rows:
        counts[r[0]] = counts.get(r[0], 0) + 1
    assert min(counts.values()) == 5 and max(counts.values()) == 17
    _run(ROOT / "datasets" / "convert_points.py", "--input", csv_path, "--images", images, "--output", tmp_path / "t1l5",
         cwd=tmp_path)
    ann = tmp_path / "t1l5" / "annotations"
    assert json.loads((ann / "train.json").read_text())["info"]["levels"] == list(T1_L5)
    out = tmp_path / "fine"
    _run(ROOT / "tools" / "train_net.py", "--config-file", ROOT / "configs" / "xvfa_dino_r50_fine.py",
         f"dataset.image_root={images}", f"dataset.train_json={ann / 'train.json'}",
         f"dataset.val_json={ann / 'val.json'}", "dataset.name=t1l5", f"train.output_dir={out}",
         "train.max_iter=4", "train.log_period=1", "dataloader.train.total_batch_size=2",
         "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "model.roi_head.crop_size=32",
         "model.roi_head.num_samples=100", "model.roi_head.classification_warmup_iters=2",
         "model.roi_head.head.compile_inference=False", cwd=tmp_path)
    metrics = json.loads((out / "vfa_metrics.json").read_text())
    val = json.loads((ann / "val.json").read_text())
    assert metrics["detection"]["vertebrae"] == len(val["annotations"]) and metrics["detection"]["recall"] == 1.0
    assert np.isfinite(metrics["keypoint_error"]["mean_px"])
