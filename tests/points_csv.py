"""A spreadsheet of points as a reader would give it, made from synthetic radiographs (for the tests)."""

import csv
import json
from pathlib import Path

import numpy as np

from xvfa_ext.layout import COORDINATE_COLUMNS, VERTEBRA_LEVELS
from xvfa_ext.synthetic import SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset

HEADER = ["image", "level", *COORDINATE_COLUMNS, "grade", "morphology", "patient_id"]
# The synthetic T4-L4 renamed to thirteen other levels, from T1 down.
OTHER_LEVELS = ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1")


def write_points_csv(root: Path, num_images: int = 8, seed: int = 5, size=(192, 144), levels=None, keep=None):
    """Images under ``root/src/images`` and ``root/points.csv``, every third grade left blank.

    Without ``levels``: the thirteen synthetic vertebrae renamed T1-L1, every fourth left out.
    With ``levels``: spines of those levels, and ``keep(annotation)`` says which vertebrae are read.
    Returns (csv path, image folder, rows).
    """
    config = SyntheticConfig(height=size[0], width=size[1], prevalence="enriched", labelled_fraction=1.0,
                             levels=tuple(levels or VERTEBRA_LEVELS))
    write_synthetic_dataset(root / "src", num_images, seed=seed, config=config, progress=False)
    rename = dict(zip(VERTEBRA_LEVELS, OTHER_LEVELS)) if levels is None else {}
    keep = keep or (lambda a: a["id"] % 4 != 0)
    images = {}
    anns = []
    for split in ("trainval", "test"):
        coco = json.loads((root / "src" / "annotations" / f"{split}.json").read_text())
        images.update({img["id"]: img for img in coco["images"]})
        anns += coco["annotations"]
    rows = []
    for a in sorted(anns, key=lambda a: a["id"]):
        if not keep(a):
            continue
        level = rename.get(a["level"], a["level"])
        xy = np.asarray(a["keypoints"]).reshape(6, 3)[:, :2].reshape(-1).tolist()
        blank = a["id"] % 3 == 0
        img = images[a["image_id"]]
        rows.append([img["file_name"], level, *xy, "" if blank else a["grade"], "" if blank else a["morphology"],
                     img["patient_id"]])
    path = root / "points.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path, root / "src" / "images", rows
