#!/usr/bin/env python3
"""Reader agreement beside model uncertainty (paper section 3.5).

    python tools/agreement.py --first read1.json --second read2.json [--predictions vfa_predictions.json]

Two COCO annotation files of the same images, a first and a second reading (by one reader or two),
are matched by image file name and vertebra level. The per-keypoint deviation between the readings
(pixels: mean, median and 95th percentile, which is what the paper's "within the 5th and 95th
percentile" compares with) is set beside the model's eps at alpha 0.9 on those images, from an
evaluation's vfa_predictions.json.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from xvfa_ext.layout import KEYPOINT_NAMES
from xvfa_ext.files import write_atomic
from xvfa_ext.records import keypoint_array


def read_annotations(path: Path):
    """{(file name, level): keypoints (6, 3)} of the labelled vertebrae of a COCO file."""
    try:
        data = json.loads(path.read_text())
        files = {img["id"]: Path(img["file_name"]).name for img in data["images"]}
        out = {}
        for ann in data["annotations"]:
            if ann.get("imputed"):
                continue
            kps = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
            if kps.shape != (len(KEYPOINT_NAMES), 3):
                raise ValueError(f"annotation {ann.get('id')}: {len(kps)} keypoints, expected {len(KEYPOINT_NAMES)}")
            out[(files[ann["image_id"]], ann.get("level", ann["id"]))] = kps
        return out
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read the annotations ({exc})")


def model_eps(path: Path, images: set):
    """Per keypoint, the model's eps (pixels) on matched labelled vertebrae of those images."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read the predictions ({exc})")
    eps = [
        keypoint_array(r["prediction"], "eps_px")
        for r in rows
        if r.get("matched") and not r["imputed"] and Path(r["file_name"]).name in images
    ]
    return np.array(eps).reshape(-1, len(KEYPOINT_NAMES))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", required=True, type=Path, help="the first reading (COCO keypoints)")
    parser.add_argument("--second", required=True, type=Path, help="the second reading of the same images (the same or another reader)")
    parser.add_argument("--predictions", type=Path, help="vfa_predictions.json of an evaluation on those images")
    parser.add_argument("--output", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    first, second = read_annotations(args.first), read_annotations(args.second)
    common = sorted(set(first) & set(second), key=str)
    if not common:
        raise SystemExit("the two reads share no vertebra (matched by image file name and level)")
    deviation = defaultdict(list)
    for key in common:
        both = (first[key][:, 2] > 0) & (second[key][:, 2] > 0)
        d = np.linalg.norm(first[key][:, :2] - second[key][:, :2], axis=1)
        for k in np.flatnonzero(both):
            deviation[KEYPOINT_NAMES[k]].append(float(d[k]))
    images = {name for name, _ in common}
    eps = model_eps(args.predictions, images) if args.predictions else None
    table = {"vertebrae": len(common), "images": len(images), "keypoints": {}}
    print(f"{len(common)} vertebrae on {len(images)} images in both the first and the second reading")
    print(f"{'keypoint':18}{'mean px':>10}{'median px':>11}{'95th pct px':>13}{'model eps@0.9 px':>18}")

    def stats(d):
        if not len(d):
            return {"reader_mean_px": None, "reader_median_px": None, "reader_p95_px": None}
        return {"reader_mean_px": float(d.mean()), "reader_median_px": float(np.median(d)),
                "reader_p95_px": float(np.percentile(d, 95))}

    def line(name, row, e):
        cells = [f"{row[k]:{w}.2f}" if row[k] is not None else f"{'-':>{w}}"
                 for k, w in (("reader_mean_px", 10), ("reader_median_px", 11), ("reader_p95_px", 13))]
        print(f"{name:18}" + "".join(cells) + (f"{e:18.2f}" if e is not None else f"{'-':>18}"))

    for k, name in enumerate(KEYPOINT_NAMES):
        e = float(eps[:, k].mean()) if eps is not None and len(eps) else None
        table["keypoints"][name] = dict(stats(np.array(deviation[name])), model_eps_px=e)
        line(name, table["keypoints"][name], e)
    everything = np.concatenate([np.array(v) for v in deviation.values()]) if deviation else np.array([])
    table.update(stats(everything))
    table["model_eps_mean_px"] = float(eps.mean()) if eps is not None and len(eps) else None
    line("all", table, table["model_eps_mean_px"])
    if args.output:
        write_atomic(args.output, json.dumps(table, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
