"""Checking a vertebra COCO keypoint file: every problem names the file, the annotation and what is wrong."""

import json
from typing import Dict

import numpy as np

from ..gsq import morphometry
from ..layout import KEYPOINT_NAMES


class DatasetError(ValueError):
    """A dataset file that cannot be used, with the file and the problem named."""


def read_coco_file(json_file: str) -> Dict:
    """The JSON of a COCO file with its three lists, or a DatasetError naming the file."""
    try:
        with open(json_file) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{json_file}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{json_file}: malformed JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{json_file}: no '{key}' list; not a COCO file")
    return data


def check_annotations(json_file: str, data: Dict) -> None:
    """Every annotation usable, or a DatasetError naming the file, the annotation id and the problem."""
    categories = [c for c in data["categories"] if c.get("name") == "vertebra"]
    if len(data["categories"]) != 1 or not categories:
        raise DatasetError(f"{json_file}: expected the single category 'vertebra', got {data['categories']!r:.200}")
    if list(categories[0].get("keypoints", [])) != list(KEYPOINT_NAMES):
        raise DatasetError(f"{json_file}: category keypoints must be {list(KEYPOINT_NAMES)}")
    sizes = {}
    for img in data["images"]:
        if img.get("id") in sizes:
            raise DatasetError(f"{json_file}: image id {img.get('id')} appears twice")
        sizes[img.get("id")] = (img.get("width"), img.get("height"))
    seen = set()
    for ann in data["annotations"]:
        where = f"{json_file}: annotation {ann.get('id')} of image {ann.get('image_id')}"
        if ann.get("id") in seen:
            raise DatasetError(f"{where}: annotation id {ann.get('id')} appears twice")
        seen.add(ann.get("id"))
        if ann.get("image_id") not in sizes:
            raise DatasetError(f"{where}: no image with id {ann.get('image_id')} in the file")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * len(KEYPOINT_NAMES):
            count = len(kps) / 3 if isinstance(kps, list) else 0
            raise DatasetError(f"{where}: {count:g} keypoints, expected {len(KEYPOINT_NAMES)}")
        for key in ("bbox", "grade", "morphology"):
            if key not in ann:
                raise DatasetError(f"{where}: no '{key}'")
        values = np.asarray(kps + list(ann["bbox"]), dtype=float) if _numbers(kps + list(ann["bbox"])) else None
        if values is None or not np.isfinite(values).all():
            raise DatasetError(f"{where}: a keypoint or box value is not a finite number")
        x, y, w, h = ann["bbox"][:4]
        if w <= 0 or h <= 0:
            raise DatasetError(f"{where}: empty box {ann['bbox']}")
        width, height = sizes[ann["image_id"]]
        if width and height and (x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1):  # 1 px of rounding
            raise DatasetError(f"{where}: box {ann['bbox']} lies outside the {width}x{height} image")
        points = np.asarray(kps, dtype=float).reshape(-1, 3)
        if (points[:, 2] > 0).all() and not bool(morphometry(points[:, :2])["valid"]):
            raise DatasetError(f"{where}: a vertebra of zero height (an upper keypoint on its lower one)")
        if not (isinstance(ann["grade"], int) and 0 <= ann["grade"] <= 3):
            raise DatasetError(f"{where}: grade {ann['grade']!r} is not 0-3")
        if not (isinstance(ann["morphology"], int) and 0 <= ann["morphology"] <= 2):
            raise DatasetError(f"{where}: morphology {ann['morphology']!r} is not 0-2")


def _numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
