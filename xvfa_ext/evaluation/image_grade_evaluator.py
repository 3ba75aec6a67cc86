"""Screening evaluation of an image-level classifier (Table 2's image CNN) per image and per patient."""

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..files import write_atomic
from ..gsq import GRADES, INVALID
from ..metrics import IMAGE_SCORES, SCREENING_METRICS, grade_scores, grade_screening, worst_read_grade

logger = logging.getLogger(__name__)


class ImageGradeEvaluator(DatasetEvaluator):
    """AUC, F1, sensitivity and specificity at the Youden point of an image's worst grade.

    Each output is ``{"image_grade_probs": (4,)}`` (:class:`~xvfa_ext.modeling.ImageGradeCNN`). An
    image is positive for a task when its worst read (not imputed), graded vertebra is; a patient
    scores its worst image, as :class:`VFAEvaluator` aggregates vertebrae. Images without a graded,
    read vertebra are left out and counted. ``vfa_metrics.json`` has the levels ``image`` and
    ``patient`` (``levels``), no vertebra level; ``vfa_predictions.json`` one row per image.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._gt = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}
        self._rows: List[Dict] = []

    def reset(self):
        self._rows = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "image_grade_probs" not in out:
                raise KeyError(f"image {inp['image_id']}: the model gave no 'image_grade_probs' (an image-level classifier's output)")
            record = self._gt[inp["image_id"]]
            probs = out["image_grade_probs"].detach().cpu().double().numpy()
            if probs.shape != (len(GRADES),) or not np.isfinite(probs).all():
                raise ValueError(f"image {inp['image_id']}: image_grade_probs must be {len(GRADES)} finite values, got {probs}")
            self._rows.append(
                {
                    "image_id": record["image_id"],
                    "file_name": record["file_name"],
                    "patient_id": record.get("patient_id", str(record["image_id"])),
                    "grade": worst_read_grade(
                        [a["grade"] for a in record["annotations"]], [a.get("imputed", False) for a in record["annotations"]]
                    ),
                    "probabilities": dict(zip(GRADES, probs.tolist())),
                }
            )

    def evaluate(self):
        rows = sum(comm.gather(self._rows, dst=0), [])
        if not comm.is_main_process():
            return {}
        graded = [r for r in rows if r["grade"] != INVALID]
        if not graded:
            logger.warning(f"ImageGradeEvaluator on {self._dataset_name}: no image with a graded, read vertebra was seen")
            return {}
        probs = np.array([[r["probabilities"][g] for g in GRADES] for r in graded])
        patients = [r["patient_id"] for r in graded]
        results = grade_screening([r["grade"] for r in graded], grade_scores(probs), patients)
        (score,) = IMAGE_SCORES
        report = {
            "dataset": self._dataset_name,
            "levels": ["image", "patient"],
            "scores": dict(IMAGE_SCORES, headline=score),
            "screening": {
                "image": {"count": len(graded), "left_out": len(rows) - len(graded), "grade": results["vertebra"]},
                "patient": {"count": len(set(patients)), "grade": results["patient"]},
            },
        }
        if self._output_dir:
            out = Path(self._output_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "vfa_metrics.json", json.dumps(report, indent=1, allow_nan=False).encode())
            write_atomic(out / "vfa_predictions.json", json.dumps(rows, allow_nan=False).encode())
        flat = OrderedDict(
            (f"{level}/{task}/{metric}", values[metric])
            for level in ("image", "patient")
            for task, values in report["screening"][level]["grade"].items()
            for metric in SCREENING_METRICS
            if values[metric] is not None
        )
        return OrderedDict({"vfa": flat})
