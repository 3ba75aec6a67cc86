#!/usr/bin/env python3
"""Fill the levels an image's readers left out with k-nearest-neighbour keypoints (paper section 3.2).

    python datasets/impute_missing.py --input ann.json --output ann_imputed.json [--k 5] [--levels T4..L4]
        [--reference train.json] [--refill]

For each image with some levels read, each missing level gets six keypoints from the ``k`` reference
spines (``--reference``, default the input's own images) that have that level read and whose shared
levels best match the image's after a similarity transform (``xvfa_ext.imputation``). A filled
vertebra is marked ``"imputed": true``, gets a box around its points (padded by ``--padding`` of its
size, as the annotations are) and the crisp GSQ grade and morphology of its points
(``"graded_by": "gsq"``); training weighs it by ``imputed_weight`` (1e-3). A fill whose points fall
outside the image is not written, and is counted.

Read vertebrae are never altered. ``--levels`` takes a range (``T4..L4``) or a comma list; by
default, every level some reference has read. The output must not be the input.

``--refill`` first removes the vertebrae the input already marks imputed (the synthetic data marks
some) and fills them again: it reports the fill error against the removed points in px and as a
fraction of their posterior height.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from xvfa_ext.files import read_json, write_atomic
from xvfa_ext.gsq import classify, morphometry
from xvfa_ext.imputation import impute_spine
from xvfa_ext.layout import level_key, order_levels, read_points
from xvfa_ext.synthetic import vertebra_box


class ImputationError(ValueError):
    """Input that cannot be imputed; the message names the file and the record."""


def read_coco(path: Path) -> Dict:
    data = read_json(path, ImputationError)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ImputationError(f"{path}: not a COCO file (no 'images' and 'annotations' lists)")
    sizes = {}
    for img in data["images"]:
        if not all(isinstance(img.get(key), (int, float)) for key in ("id", "height", "width")):
            raise ImputationError(f"{path}: image {img.get('id')!r} lacks a numeric id, height or width")
        sizes[img["id"]] = (img["height"], img["width"])
    seen = set()
    for ann in data["annotations"]:
        where = f"{path}: annotation {ann.get('id')!r}"
        if ann.get("image_id") not in sizes:
            raise ImputationError(f"{where} refers to image {ann.get('image_id')!r}, which the file does not list")
        if ann.get("level") is None:
            raise ImputationError(f"{where} has no level: imputation fills levels")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 18 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in kps):
            raise ImputationError(f"{where}: keypoints must be 18 finite numbers (x, y, v for six points)")
        if (ann["image_id"], str(ann["level"])) in seen:
            raise ImputationError(f"{where}: image {ann['image_id']} has level {ann['level']} twice")
        seen.add((ann["image_id"], str(ann["level"])))
    return data


def spines(data: Dict) -> Dict[int, Dict[str, np.ndarray]]:
    """Each image's read vertebrae (all six points visible, not imputed): level -> ``(6, 2)``."""
    out = {img["id"]: {} for img in data["images"]}
    for ann in data["annotations"]:
        points = read_points(ann)
        if points is not None:
            out[ann["image_id"]][str(ann["level"])] = points
    return out


def parse_levels(text: str) -> List[str]:
    """``T4..L4`` (cranial to caudal, inclusive) or ``T4,T5,L1``."""
    if ".." in text:
        first, last = (t.strip() for t in text.split("..", 1))
        if level_key(first) is None or level_key(last) is None:
            raise ImputationError(f"--levels {text}: a range needs level names such as T4..L4")
        regions = {"C": 7, "T": 12, "L": 6, "S": 5}
        every = [f"{r}{i}" for r, n in regions.items() for i in range(1, n + 1)]
        chosen = [v for v in every if level_key(first) <= level_key(v) <= level_key(last)]
        if not chosen:
            raise ImputationError(f"--levels {text}: the range is empty (is it cranial to caudal?)")
        return chosen
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    if not chosen:
        raise ImputationError("--levels is empty")
    return chosen


def impute(data: Dict, references: Dict, levels: Sequence[str], k: int, same_file: bool, padding: float):
    """New annotations for ``data``'s missing levels, the count per level, and what could not be filled."""
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    next_id = max([a.get("id", 0) for a in data["annotations"]] + [0]) + 1
    present = {img["id"]: set() for img in data["images"]}
    for a in data["annotations"]:
        present[a["image_id"]].add(str(a["level"]))
    filled, outside = Counter(), Counter()
    added = []
    for image_id, spine in spines(data).items():
        height, width = sizes[image_id]
        missing = [v for v in levels if v not in present[image_id]]
        fills = impute_spine(spine, references, missing, k, exclude=image_id if same_file else None)
        for level, fill in fills.items():
            pts = fill.keypoints
            grade, morphology = (int(v[0]) for v in classify(pts[None]))
            if (pts < 0).any() or (pts[:, 0] > width).any() or (pts[:, 1] > height).any() or grade < 0:
                outside[level] += 1  # outside the film, or a degenerate vertebra (a zero height)
                continue
            box = vertebra_box(pts, height, width, margin=padding)
            added.append({
                "id": next_id, "image_id": image_id, "category_id": 1,
                "bbox": [round(v, 2) for v in box], "area": round(box[2] * box[3], 2), "iscrowd": 0,
                "keypoints": [round(float(v), 2) for v in np.concatenate([pts, np.full((6, 1), 2.0)], 1).reshape(-1)],
                "num_keypoints": 6, "grade": grade, "morphology": morphology, "level": level,
                "imputed": True, "graded_by": "gsq",
                "imputed_from": {"neighbours": [str(n) for n in fill.neighbours], "k": k},
            })
            next_id += 1
            filled[level] += 1
    return added, filled, outside


def refill_error(removed: List[Dict], added: List[Dict]) -> Tuple[Dict, int]:
    """Mean keypoint distance of each re-filled vertebra to the removed one, in px and of its posterior height."""
    fills = {(a["image_id"], a["level"]): np.asarray(a["keypoints"], dtype=float).reshape(6, 3)[:, :2] for a in added}
    px, rel = [], []
    for ann in removed:
        key = (ann["image_id"], str(ann["level"]))
        if key not in fills:
            continue
        truth = np.asarray(ann["keypoints"], dtype=float).reshape(6, 3)[:, :2]
        err = float(np.linalg.norm(fills[key] - truth, axis=1).mean())
        px.append(err)
        rel.append(err / float(morphometry(truth[None])["hp"][0]))
    if not px:
        raise ImputationError("--refill: no removed vertebra could be filled again")
    stats = {"vertebrae": len(px), "mean_px": float(np.mean(px)), "median_px": float(np.median(px)),
             "mean_of_posterior_height": float(np.mean(rel)), "median_of_posterior_height": float(np.median(rel))}
    return stats, len(removed) - len(px)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="a COCO vertebra file (datasets/convert_points.py)")
    parser.add_argument("--output", type=Path, required=True, help="the imputed file; never the input")
    parser.add_argument("--k", type=int, default=5, help="neighbours per fill (default 5)")
    parser.add_argument("--levels", default=None, help="levels to fill: T4..L4 or T4,T5 (default: those the references read)")
    parser.add_argument("--reference", type=Path, default=None, help="the spines to draw from (default: the input)")
    parser.add_argument("--padding", type=float, default=0.1, help="box padding, a fraction of the points' extent")
    parser.add_argument("--refill", action="store_true", help="remove the input's imputed vertebrae and fill them again")
    args = parser.parse_args(argv)
    try:
        if args.output.resolve() == args.input.resolve():
            raise ImputationError(f"{args.output}: the output would overwrite the input; name another file")
        if args.k < 1:
            raise ImputationError(f"--k must be at least 1, got {args.k}")
        data = read_coco(args.input)
        removed = [a for a in data["annotations"] if a.get("imputed", False)] if args.refill else []
        if args.refill:
            if not removed:
                raise ImputationError(f"{args.input}: --refill needs vertebrae marked imputed, and there are none")
            data = dict(data, annotations=[a for a in data["annotations"] if not a.get("imputed", False)])
        same_file = args.reference is None or args.reference.resolve() == args.input.resolve()
        references = spines(data) if same_file else {f"{args.reference.name}:{i}": s for i, s in spines(read_coco(args.reference)).items()}
        known = order_levels({v for s in references.values() for v in s}) if references else []
        levels = parse_levels(args.levels) if args.levels else known
        if not any(references.values()):
            raise ImputationError(f"{args.reference or args.input}: no image has a read vertebra to draw from")
        added, filled, outside = impute(data, references, levels, args.k, same_file, args.padding)
        result = dict(data, annotations=data["annotations"] + added)
        info = dict(result.get("info", {}), imputed={"k": args.k, "reference": str(args.reference or args.input), "filled": sum(filled.values())})
        result["info"] = info
        stats = refill_error(removed, added) if args.refill else None
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, json.dumps(result).encode())
    except ImputationError as exc:
        print(f"impute_missing.py: {exc}", file=sys.stderr)
        return 1
    print(f"impute_missing.py: filled {sum(filled.values())} vertebrae in {len(data['images'])} images (k={args.k})")
    for level in levels:
        note = f"; {outside[level]} not written (outside the image or degenerate)" if outside[level] else ""
        print(f"  {level}: {filled[level]}{note}")
    if stats is not None:
        err, unfilled = stats
        print(
            f"  re-filled {err['vertebrae']} removed vertebrae ({unfilled} not filled): mean error {err['mean_px']:.2f} px "
            f"({100 * err['mean_of_posterior_height']:.1f}% of posterior height), median {err['median_px']:.2f} px "
            f"({100 * err['median_of_posterior_height']:.1f}%)"
        )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
