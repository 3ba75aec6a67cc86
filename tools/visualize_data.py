#!/usr/bin/env python3
"""Draw the ground truth of a vertebra dataset: boxes, keypoints, heights and GSQ labels.

    python tools/visualize_data.py --dataset xvfa_synthetic_train --output vis/ [--num 10]
    python tools/visualize_data.py --json my/annotations/train.json --images my/images --output vis/
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from xvfa_ext.data import DatasetError, register_vertebra_coco  # noqa: E402  (and the synthetic datasets)
from xvfa_ext.radiograph_io import read_radiograph  # noqa: E402
from xvfa_ext.files import write_atomic  # noqa: E402
from xvfa_ext.visualizer import VertebraVisualizer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="xvfa_synthetic_train", help="a registered dataset name")
    parser.add_argument("--json", help="a vertebra COCO file instead of a registered name (with --images)")
    parser.add_argument("--images", help="the folder the --json file's file_name entries are under")
    parser.add_argument("--output", required=True, help="folder for the drawn PNGs")
    parser.add_argument("--num", type=int, default=10, help="how many images (0: all)")
    parser.add_argument("--scale", type=float, default=2.0, help="drawing scale")
    args = parser.parse_args(argv)
    if (args.json is None) != (args.images is None):
        parser.error("--json and --images go together")
    if args.json is not None:
        args.dataset = f"file:{Path(args.json).resolve()}"
        try:
            register_vertebra_coco(args.dataset, args.json, args.images)
            DatasetCatalog.get(args.dataset)
        except DatasetError as exc:
            parser.exit(1, f"visualize_data.py: {exc}\n")
    if args.dataset not in DatasetCatalog.list():
        parser.error(f"unknown dataset {args.dataset!r}; registered vertebra datasets: "
                     + ", ".join(n for n in DatasetCatalog.list() if n.startswith("xvfa")))
    records = DatasetCatalog.get(args.dataset)
    records = records[: args.num] if args.num else records
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    metadata = MetadataCatalog.get(args.dataset)
    for record in tqdm(records, desc="drawing", unit="img"):
        gray, _, _ = read_radiograph(record["file_name"])
        image = np.repeat(gray[:, :, None], 3, axis=2)
        vis = VertebraVisualizer(image, metadata, scale=args.scale).draw_ground_truth(record)
        ok, png = cv2.imencode(".png", vis.get_image()[:, :, ::-1])
        if not ok:
            raise SystemExit(f"visualize_data.py: {record['file_name']}: the drawing could not be encoded as PNG")
        write_atomic(out / f"{Path(record['file_name']).stem}.png", png.tobytes())
    print(f"drew {len(records)} images of {args.dataset} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
