"""The synthetic dataset on disk: PNG radiographs, COCO keypoint files, patient splits and folds."""

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from .files import write_atomic
from .layout import KEYPOINT_NAMES, SKELETON
from .synthetic import SyntheticConfig, generate_image, image_seed, vertebra_box

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


def _annotations(image_id: int, first_id: int, vertebrae, height: int, width: int) -> List[Dict]:
    out = []
    for k, v in enumerate(vertebrae):
        keypoints = np.concatenate([v.annotated, np.full((len(v.annotated), 1), 2.0)], axis=1)
        box = vertebra_box(v.annotated, height, width)
        out.append(
            {
                "id": first_id + k,
                "image_id": image_id,
                "category_id": CATEGORY["id"],
                "bbox": [round(x, 2) for x in box],
                "area": round(box[2] * box[3], 2),
                "iscrowd": 0,
                "keypoints": [round(float(x), 2) for x in keypoints.reshape(-1)],
                "num_keypoints": len(v.annotated),
                "grade": v.grade,
                "morphology": v.morphology,
                "level": v.level,
                "imputed": v.imputed,
            }
        )
    return out


def _split_patients(patients: List[str], seed: int) -> Dict[str, List[str]]:
    order = list(np.random.default_rng([seed, 1 << 30]).permutation(patients))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * len(order))) if len(order) > 2 else 0
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * len(order))) if len(order) > 2 else 0
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def _coco(images: List[Dict], annotations: List[Dict], info: Dict) -> Dict:
    return {"info": info, "images": images, "annotations": annotations, "categories": [CATEGORY]}


def write_synthetic_dataset(
    out_dir, num_images: int, seed: int = 0, config: Optional[SyntheticConfig] = None, progress: bool = True
) -> Dict[str, Path]:
    """Render ``num_images`` radiographs (one per patient) into ``out_dir``.

    Writes ``images/*.png``, ``annotations/{train,val,test,trainval}.json`` split by patient and
    ``annotations/folds.json`` (five folds over the train+val patients). Returns the JSON paths.
    """
    if num_images < 1:
        raise ValueError(f"the number of images must be positive, got {num_images}")
    cfg = config or SyntheticConfig()
    out = Path(out_dir)
    image_dir, ann_dir = out / "images", out / "annotations"
    try:
        image_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{out}: cannot create the dataset folder ({exc.strerror})") from exc
    if not os.access(image_dir, os.W_OK) or not os.access(ann_dir, os.W_OK):
        raise OSError(f"{out}: the dataset folder is not writable")

    images, annotations = [], []
    for index in tqdm(range(num_images), desc="synthetic radiographs", disable=not progress, unit="img"):
        image, vertebrae = generate_image(image_seed(seed, index), cfg)
        file_name = f"{index:06d}.png"
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"{image_dir / file_name}: PNG encoding failed")
        write_atomic(image_dir / file_name, png.tobytes())
        image_id = index + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": cfg.height,
                "width": cfg.width,
                "patient_id": f"P{index:06d}",
            }
        )
        annotations += _annotations(image_id, len(annotations) + 1, vertebrae, cfg.height, cfg.width)

    info = {
        "description": "xvfa_ext synthetic lateral spine radiographs",
        "seed": seed,
        "num_images": num_images,
        "prevalence": cfg.prevalence,
        "height": cfg.height,
        "width": cfg.width,
    }
    by_patient = {img["patient_id"]: img["id"] for img in images}
    patient_splits = _split_patients(list(by_patient), seed)
    patient_splits["trainval"] = patient_splits["train"] + patient_splits["val"]
    paths = {}
    for split, patients in patient_splits.items():
        ids = {by_patient[p] for p in patients}
        coco = _coco(
            [img for img in images if img["id"] in ids],
            [a for a in annotations if a["image_id"] in ids],
            dict(info, split=split),
        )
        paths[split] = ann_dir / f"{split}.json"
        write_atomic(paths[split], json.dumps(coco).encode())

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
                "train_image_ids": sorted(by_patient[p] for p in train),
                "val_image_ids": sorted(by_patient[p] for p in val),
            }
        )
    paths["folds"] = ann_dir / "folds.json"
    write_atomic(paths["folds"], json.dumps({"source": "trainval.json", "folds": folds}, indent=1).encode())
    return paths
