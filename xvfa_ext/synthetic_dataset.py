"""The synthetic dataset on disk: PNG radiographs, COCO keypoint files, patient splits and folds."""

import os
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from .files import write_atomic
from .coco_splits import CATEGORY, split_files, write_split_files
from .synthetic import SyntheticConfig, generate_image, image_seed, vertebra_box

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
    paths = write_split_files(ann_dir, split_files(images, annotations, info, seed))
    return paths
