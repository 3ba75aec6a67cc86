"""COCO vertebra files on disk: the category, splits by patient, and folds over train+val patients.

Shared by the synthetic dataset and ``datasets/convert_points.py``, so that both write the same layout:
``annotations/{train,val,test,trainval}.json`` and ``annotations/folds.json``.
"""

import json
from pathlib import Path
from typing import Dict, List

import numpy as np

from .files import write_atomic
from .layout import KEYPOINT_NAMES, SKELETON

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"val": 0.15, "test": 0.15}
NUM_FOLDS = 5
CATEGORY = {
    "id": 1,
    "name": "vertebra",
    "supercategory": "spine",
    "keypoints": list(KEYPOINT_NAMES),
    "skeleton": [[i + 1, j + 1] for i, j in SKELETON],  # COCO counts keypoints from 1
}


def _split_patients(patients: List[str], seed: int) -> Dict[str, List[str]]:
    order = list(np.random.default_rng([seed, 1 << 30]).permutation(patients))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * len(order))) if len(order) > 2 else 0
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * len(order))) if len(order) > 2 else 0
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def _coco(images: List[Dict], annotations: List[Dict], info: Dict) -> Dict:
    return {"info": info, "images": images, "annotations": annotations, "categories": [CATEGORY]}


def split_files(images: List[Dict], annotations: List[Dict], info: Dict, seed: int) -> Dict[str, bytes]:
    """The contents of ``{train,val,test,trainval}.json`` and ``folds.json``, split by ``patient_id``.

    A patient's images all go to one split and one fold. The same seed gives the same splits.
    """
    by_patient: Dict[str, List[int]] = {}
    for img in images:
        by_patient.setdefault(str(img["patient_id"]), []).append(img["id"])
    patient_splits = _split_patients(list(by_patient), seed)
    patient_splits["trainval"] = patient_splits["train"] + patient_splits["val"]
    files = {}
    for split, patients in patient_splits.items():
        ids = {i for p in patients for i in by_patient[p]}
        coco = _coco(
            [img for img in images if img["id"] in ids],
            [a for a in annotations if a["image_id"] in ids],
            dict(info, split=split),
        )
        files[f"{split}.json"] = json.dumps(coco).encode()

    trainval = sorted(patient_splits["trainval"])
    order = np.random.default_rng([seed, 1 << 31]).permutation(len(trainval))
    folds = []
    for k in range(NUM_FOLDS):
        val = sorted(trainval[i] for i in order[k::NUM_FOLDS])
        train = sorted(set(trainval) - set(val))
        folds.append(
            {
                "fold": k,
                "train_patients": train,
                "val_patients": val,
                "train_image_ids": sorted(i for p in train for i in by_patient[p]),
                "val_image_ids": sorted(i for p in val for i in by_patient[p]),
            }
        )
    files["folds.json"] = json.dumps({"source": "trainval.json", "folds": folds}, indent=1).encode()
    return files


def write_split_files(ann_dir: Path, files: Dict[str, bytes]) -> Dict[str, Path]:
    """Write :func:`split_files`' contents into ``ann_dir``; the paths by split (and ``folds``)."""
    paths = {}
    for name, data in files.items():
        paths[name[: -len(".json")]] = Path(ann_dir) / name
        write_atomic(paths[name[: -len(".json")]], data)
    return paths
