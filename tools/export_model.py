#!/usr/bin/env python3
"""Write a trained model as one file: config, weights, levels, view, scale and operating points.

    python tools/export_model.py --config-file output/xvfa_dino_r50/config.yaml \\
        --weights output/xvfa_dino_r50/model_final.pth --metrics output/xvfa_dino_r50/vfa_metrics.json \\
        --output model.xvfa [KEY=VALUE ...]

Several ``--weights`` make an ensemble (for example the fold models of ``tools/cross_validate.py``).
The config's datasets are read once, for the training data's levels and vertebra size; the file then
needs nothing else: ``tools/predict.py --model model.xvfa``. ``--metrics`` (a ``vfa_metrics.json``)
adds the Youden operating points that ``predict.py --threshold youden`` applies.
"""

import argparse
import logging
import sys
from pathlib import Path

from xvfa_ext.checkpoints import split_weights
from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from xvfa_ext.bundle import bundle_summary, write_bundle  # noqa: E402
from xvfa_ext.data import DatasetError  # noqa: E402
from xvfa_ext.predictor import bundle_from_training  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="the training config (or the config.yaml saved with the model)")
    parser.add_argument("--weights", nargs="+", required=True, help="checkpoints of tools/train_net.py (several: an ensemble)")
    parser.add_argument("--metrics", type=Path, help="the vfa_metrics.json of the model's evaluation (operating points)")
    parser.add_argument("--output", required=True, type=Path, help="the model file to write, e.g. model.xvfa")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides")
    args = parser.parse_args(argv)
    args.weights, args.opts = split_weights(args.weights, args.opts)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        bundle = bundle_from_training(args.config_file, args.weights, args.opts, args.metrics)
    except (DatasetError, ValueError) as exc:
        parser.exit(2, f"export_model.py: {exc}\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_bundle(args.output, bundle)
    for line in bundle_summary(bundle):
        logging.info(line)
    logging.info(f"wrote {args.output} (content hash {bundle['hash']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
