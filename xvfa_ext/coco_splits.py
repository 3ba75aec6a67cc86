"""COCO vertebra files on disk: the category, splits by patient, and folds over train+val patients.

Shared by the synthetic dataset and ``datasets/convert_points.py``, so that both write the same layout:
``annotations/{train,val,test,trainval}.json`` and ``annotations/folds.json``. Every file's ``info``
records the median posterior height of the dataset's vertebrae (``vertebra_height_px``), from which
the models set their input scale (:mod:`xvfa_ext.scale`).
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .files import write_atomic
from .gsq import classify, morphometry
from .layout import KEYPOINT_NAMES, SKELETON
from .scale import INFO_KEY, median_vertebra_height
from .synthetic import vertebra_box

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


def _split_patients(patients: List[str], seed: int, fractions: Dict[str, float]) -> Dict[str, List[str]]:
    order = list(np.random.default_rng([seed, 1 << 30]).permutation(patients))

    def count(split):
        if fractions[split] >= 1:
            return len(order)
        return max(1, round(fractions[split] * len(order))) if len(order) > 2 and fractions[split] > 0 else 0

    n_test = count("test")
    n_val = min(count("val"), len(order) - n_test)
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def worst_grades(images: List[Dict], annotations: List[Dict]) -> Dict[str, int]:
    """Each patient's worst grade of a read vertebra (0 for a patient without one; imputed ones do not count)."""
    patient_of = {img["id"]: str(img["patient_id"]) for img in images}
    worst = {p: 0 for p in patient_of.values()}
    for a in annotations:
        p = patient_of.get(a["image_id"])
        if p is not None and a.get("grade") is not None and not a.get("imputed", False):
            worst[p] = max(worst[p], int(a["grade"]))
    return worst


def stratified_folds(patients: List[str], worst: Dict[str, int], seed: int, num_folds: int = NUM_FOLDS) -> List[List[str]]:
    """``patients`` in ``num_folds`` folds, stratified by each one's worst grade (scikit-learn's
    StratifiedGroupKFold, a patient one group): each fold's share of every worst grade follows the
    whole. A grade held by fewer patients than folds is pooled with the nearest other grade."""
    patients = sorted(patients)
    if len(patients) < num_folds:
        order = np.random.default_rng([seed, 1 << 31]).permutation(len(patients))
        return [sorted(patients[i] for i in order[k::num_folds]) for k in range(num_folds)]
    labels = np.asarray([worst.get(p, 0) for p in patients])
    while True:
        values, counts = np.unique(labels, return_counts=True)
        rare = values[counts < num_folds]
        if len(values) < 2 or len(rare) == 0:
            break
        others = values[values != rare[-1]]
        labels[labels == rare[-1]] = others[np.argmin(np.abs(others - rare[-1]))]
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    folds = []
    for _, val in splitter.split(np.zeros(len(patients)), labels, groups=np.arange(len(patients))):
        folds.append(sorted(patients[i] for i in val))
    return folds


def vertebra_annotation(ann_id: int, image: Dict, points: np.ndarray, grade: Optional[int], morphology: Optional[int],
                        level: Optional[str], middles: str = "read") -> Dict:
    """One read vertebra of ``image`` (a COCO image with ``id``, ``height``, ``width``) as a COCO
    annotation of the project: its box around the (6, 2) ``points``, the keypoints all visible, the
    grade and morphology. Where the reader gave no grade, both come from the crisp GSQ of the points
    and ``graded_by`` says ``"gsq"`` (else ``"reader"``)."""
    graded_by = "reader"
    if grade is None or morphology is None:
        graded_by = "reader" if grade is not None else "gsq"
        grade = int(classify(points[None])[0]) if grade is None else grade
        if morphology is None:
            # docs/gsq.md: a fractured vertebra is concave where both middle ratios are below 1, else wedge-like.
            m = morphometry(points[None])
            concave = bool(m["mpr"][0] < 1 and m["mar"][0] < 1)
            morphology = 0 if grade == 0 else (2 if concave else 1)
    box = vertebra_box(points, image["height"], image["width"])
    return {
        "id": ann_id,
        "image_id": image["id"],
        "category_id": CATEGORY["id"],
        "bbox": [round(v, 2) for v in box],
        "area": round(box[2] * box[3], 2),
        "iscrowd": 0,
        "keypoints": [round(float(v), 2) for p in points for v in (*p, 2.0)],
        "num_keypoints": len(KEYPOINT_NAMES),
        "grade": int(grade),
        "morphology": int(morphology),
        "graded_by": graded_by,
        "level": level,
        "imputed": False,
        **({"middles": middles} if middles != "read" else {}),
    }


def coco_file(images: List[Dict], annotations: List[Dict], info: Dict) -> Dict:
    """One COCO vertebra file: ``info`` gains the median vertebra height (:mod:`xvfa_ext.scale`)."""
    height = median_vertebra_height(annotations)
    return _coco(images, annotations, dict(info, **{INFO_KEY: height}) if height is not None else info)


def _coco(images: List[Dict], annotations: List[Dict], info: Dict) -> Dict:
    return {"info": info, "images": images, "annotations": annotations, "categories": [CATEGORY]}


def split_files(
    images: List[Dict], annotations: List[Dict], info: Dict, seed: int, fractions: Optional[Dict[str, float]] = None
) -> Dict[str, bytes]:
    """The contents of ``{train,val,test,trainval}.json`` and ``folds.json``, split by ``patient_id``.

    A patient's images all go to one split and one fold; ``fractions`` are the shares of patients
    in ``val`` and ``test`` (:data:`SPLIT_FRACTIONS` by default; ``{"val": 0, "test": 1}`` puts every
    patient in ``test``). The folds over the train+val patients are stratified by each patient's
    worst grade. The same seed gives the same splits. ``info`` gains the median vertebra height.
    """
    fractions = dict(SPLIT_FRACTIONS, **(fractions or {}))
    height = median_vertebra_height(annotations)
    if height is not None:
        info = dict(info, **{INFO_KEY: height})
    by_patient: Dict[str, List[int]] = {}
    for img in images:
        by_patient.setdefault(str(img["patient_id"]), []).append(img["id"])
    patient_splits = _split_patients(list(by_patient), seed, fractions)
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
    folds = []
    for k, val in enumerate(stratified_folds(trainval, worst_grades(images, annotations), seed)):
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
