#!/usr/bin/env python3
"""The random forest of Cheng et al. (paper Table 2) as an end-to-end baseline.

100 trees of depth 2 on ha, hm, hp, APR, MPR and MAR, fitted to the annotated keypoints of a training
set and scored on the keypoints a model predicted (``VFAEvaluator``'s ``vfa_predictions.json``):

    python tools/baseline_rf.py --train-dataset xvfa_synthetic_large_train --predictions output/fine_rot \\
        --output output/rf [--config-file configs/xvfa_dino_r50.py] [KEY=VALUE ...]

``--predictions`` is an evaluated model's output folder (its ``vfa_predictions.json`` and
``vfa_metrics.json``). Writes ``OUTPUT/vfa_metrics.json`` with the evaluator's ``screening`` block, so
that ``tools/cross_validate.py`` (``--baselines rf=random_forest``) tables it beside the models. The
config (with KEY=VALUE overrides, e.g. ``dataset.train_json=...``) only registers your datasets.
"""

import argparse
import json
import sys
from pathlib import Path

from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog  # noqa: E402

from xvfa_ext.random_forest import RandomForestBaseline, annotated_vertebrae, evaluate_on_rows  # noqa: E402
from xvfa_ext.files import read_json, write_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_baseline_metrics(train_dataset: str, predictions: Path, output: Path, seed: int = 0) -> dict:
    """Fit on ``train_dataset``'s read vertebrae, score the predictions folder's keypoints, write ``vfa_metrics.json``."""
    predictions = Path(predictions)
    model_metrics = read_json(predictions / "vfa_metrics.json", missing=" (evaluate the model first)")
    rows = read_json(predictions / "vfa_predictions.json", missing=" (evaluate the model first)")
    kps, grade, morphology = annotated_vertebrae(DatasetCatalog.get(train_dataset))
    if not len(kps):
        raise ValueError(f"{train_dataset}: no read vertebra with six keypoints to fit the random forest on")
    forest = RandomForestBaseline(seed=seed).fit(kps, grade, morphology)
    report = {
        "dataset": model_metrics.get("dataset"),
        "method": "random forest (Cheng et al.): 100 trees of depth 2 on ha, hm, hp, APR, MPR, MAR",
        "fitted_on": {"dataset": train_dataset, "vertebrae": int(len(kps))},
        "keypoints_from": str(predictions / "vfa_predictions.json"),
        "detection": model_metrics.get("detection"),
        "screening": evaluate_on_rows(forest, rows),
    }
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / "vfa_metrics.json", json.dumps(report, indent=1, allow_nan=False).encode())
    return report


def main(argv=None) -> int:
    from detectron2.config import LazyConfig

    from xvfa_ext.data import DatasetError, register_from_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dataset", required=True, help="a registered dataset with annotated keypoints")
    parser.add_argument("--predictions", type=Path, required=True, help="an evaluated model's output folder")
    parser.add_argument("--output", type=Path, required=True, help="where vfa_metrics.json is written")
    parser.add_argument("--config-file", default=str(ROOT / "configs/xvfa_dino_r50.py"), help="registers your datasets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE overrides of the config")
    args = parser.parse_args(argv)
    try:
        register_from_config(LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts))
        if args.train_dataset not in DatasetCatalog.list():
            raise ValueError(f"--train-dataset: no dataset {args.train_dataset!r} is registered")
        report = write_baseline_metrics(args.train_dataset, args.predictions, args.output, args.seed)
    except (DatasetError, ValueError) as exc:
        print(f"baseline_rf.py: {exc}", file=sys.stderr)
        return 2
    task = report["screening"]["vertebra"]["grade"]["normal_mild_vs_moderate_severe"]
    print(f"baseline_rf.py: wrote {args.output / 'vfa_metrics.json'}; normal+mild vs moderate+severe AUC {task['auc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
