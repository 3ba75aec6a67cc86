#!/usr/bin/env python3
"""How far the readers' own point noise keeps even a perfect model from the slope of d and the AUC.

    python tools/benchmark_reading_noise.py --annotations datasets/aasce_training/annotations/val.json \
        [--distance 0.02 0.04 0.06] [--draws 20] [--seed 0]

The annotated points of every read vertebra stand for the truth; each draw re-reads them with
Gaussian point noise that puts two readings ``distance`` of the posterior height apart on average
(``xvfa_ext.metrics.reading_noise_ceiling``). A model that knew the truth, scored against such a
reading as ``tools/train_net.py`` scores a model against the annotation, gets the slope and AUC in
the table: what the evaluation's targets can ask of a model at that reader noise.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from xvfa_ext.data.validation import DatasetError, check_annotations, read_coco_file
from xvfa_ext.layout import read_points
from xvfa_ext.metrics import reading_noise_ceiling


def _fmt(spread) -> str:
    return "-" if spread["mean"] is None else f"{spread['mean']:.3f} ± {spread['std']:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, required=True, help="a vertebra COCO file (convert_points.py's)")
    parser.add_argument("--distance", type=float, nargs="+", default=[0.02, 0.04, 0.06],
                        help="mean distance between two readers' points, as fractions of the posterior height")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bad = [d for d in args.distance if not d >= 0]
    if bad or args.draws < 1:
        parser.error(f"distances must be >= 0 and --draws at least 1 (got {bad or args.distance}, {args.draws})")
    try:
        data = read_coco_file(str(args.annotations))
        check_annotations(str(args.annotations), data)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    read = [p for p in map(read_points, data["annotations"]) if p is not None]
    if not read:
        print(f"error: {args.annotations}: no vertebra with all six points read", file=sys.stderr)
        return 2
    from_corners = data.get("info", {}).get("middles") == "from_corners"
    print(f"{args.annotations}: {len(read)} read vertebrae of {len(data['annotations'])}; "
          f"middles {'from the corners' if from_corners else 'read'}; {args.draws} draws, seed {args.seed}")
    print("| two readers apart (of the height) | slope of d, perfect model | AUC n+m vs m+s by d, perfect model |")
    print("|---|---|---|")
    for distance in args.distance:
        ceiling = reading_noise_ceiling(np.stack(read), distance, args.draws, args.seed, from_corners)
        print(f"| {distance:.3f} | {_fmt(ceiling['slope'])} | {_fmt(ceiling['auc'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
