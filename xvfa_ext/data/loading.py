"""Loading a checked vertebra COCO keypoint file as detectron2 dataset dicts."""

import os
from typing import Dict, List, Optional

from detectron2.data import MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..scale import INFO_KEY
from .validation import DatasetError, check_annotations, read_coco_file

EXTRA_ANNOTATION_KEYS = ("grade", "morphology", "level", "imputed", "graded_by")


def load_vertebra_coco(json_file: str, image_root: str, dataset_name: Optional[str] = None, image_ids=None) -> List[Dict]:
    """detectron2 dataset dicts with ``grade``, ``morphology``, ``level``, ``imputed`` per vertebra
    and ``patient_id`` per image; errors name the file and the problem."""
    data = read_coco_file(json_file)
    check_annotations(json_file, data)
    if dataset_name is not None:  # what the file records of its vertebrae's size, read once here
        MetadataCatalog.get(dataset_name).set(recorded_vertebra_height=data.get("info", {}).get(INFO_KEY))
    records = load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys=list(EXTRA_ANNOTATION_KEYS))
    patients = {img["id"]: str(img.get("patient_id", img["id"])) for img in data["images"]}
    keep = set(image_ids) if image_ids is not None else None
    out = []
    for record in records:
        if keep is not None and record["image_id"] not in keep:
            continue
        if not os.path.isfile(record["file_name"]):
            raise DatasetError(f"{json_file}: image {record['image_id']} refers to a missing file {record['file_name']}")
        record["patient_id"] = patients[record["image_id"]]
        out.append(record)
    return out
