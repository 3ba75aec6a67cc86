"""Screening evaluation of XVFA predictions in detectron2: vertebrae matched to ground truth by IoU."""

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from ..data import dataset_levels
from ..files import write_atomic
from ..layout import levels_by_position
from ..gsq import GRADES, INVALID, morphometry
from ..metrics import (
    SCORES,
    SCREENING_METRICS,
    endplate_tilt,
    grade_screening,
    interval_coverage,
    keypoint_error,
    reduction_agreement,
    reduction_scores,
    relative_keypoint_error,
    screening_metrics,
)
from ..records import (
    keypoint_array,
    missed_probabilities,
    probability_array,
    record_scores,
    screening_score_arrays,
    vertebra_records,
)
from ..uncertainty import COVERAGE_LEVELS

logger = logging.getLogger(__name__)


class VFAEvaluator(DatasetEvaluator):
    """The paper's screening metrics at vertebra and patient level, keypoint error and eps coverage.

    Each ground-truth vertebra is matched to at most one prediction (Hungarian on IoU, at least
    ``iou_threshold``). A missed vertebra counts as predicted normal with certainty (and zero
    height reduction). Imputed vertebrae are matched, so that finding them is no false positive,
    but not scored: their labels were not read.

    The screening tasks are scored three ways (:data:`~xvfa_ext.metrics.SCORES`); the headline, the
    sampled mean of eq. 7, keeps the plain metric names, the others add their score's name. The
    ``ceiling`` is the same tasks scored by the height reduction of the annotated keypoints: what
    the labels allow keypoints to reach. A detector of grades (:class:`~xvfa_ext.modeling.DINOGrade`)
    has no keypoints: its one score is its boxes' grade probabilities
    (:data:`~xvfa_ext.metrics.BOX_SCORES`), and its report has no morphology, keypoint error or
    coverage. Writes ``vfa_metrics.json`` and ``vfa_predictions.json`` into ``output_dir``.

    Each image's predicted vertebrae get levels by their position (:func:`~xvfa_ext.layout.levels_by_position`),
    anchored to the levels and usual positions of ``level_dataset`` (the training data; by default the
    evaluated one): ``detection.level_accuracy`` is the share of matched vertebrae whose level is the
    annotated one.

    Where the detector missed some vertebrae, ``screening_of_found`` scores the grade tasks on the
    found ones alone (``vertebra/<task>/auc_of_found`` for the headline score), and
    ``detection.recall_by_tilt`` gives the recall by how far the annotated vertebrae are turned
    (:data:`TILT_BANDS`): what the misses cost the screening, and which vertebrae they are.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        iou_threshold: float = 0.5,
        alpha: float = 0.9,
        level_dataset: Optional[str] = None,
    ):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._iou_threshold = iou_threshold
        self._alpha = alpha
        self._gt = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}
        level_dataset = level_dataset or dataset_name
        if not isinstance(level_dataset, str):  # several training sets: the first one's levels
            level_dataset = list(level_dataset)[0]
        dataset_levels(level_dataset)
        self._level_metadata = MetadataCatalog.get(level_dataset)
        self.reset()

    def reset(self):
        self._rows: List[Dict] = []
        self._false_positives = 0
        self._images = 0
        self._scores = None

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            record = self._gt[inp["image_id"]]
            pred = out["instances"].to("cpu")
            anns = record["annotations"]
            gt_boxes = torch.tensor(
                [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], dtype=torch.float32
            ).reshape(-1, 4)
            iou = box_iou(gt_boxes, pred.pred_boxes.tensor) if len(pred) and len(anns) else torch.zeros(len(anns), 0)
            rows, cols = linear_sum_assignment(-iou.numpy()) if iou.numel() else ([], [])
            match = {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= self._iou_threshold}
            self._false_positives += len(pred) - len(match)
            self._images += 1
            predicted = vertebra_records(pred)
            levels, _ = levels_by_position(pred.pred_boxes.tensor.numpy(), record["height"], self._level_metadata)
            if predicted and self._scores is None:
                # Whether the model gives keypoints, from any of its vertebrae, matched or not.
                self._scores = record_scores(predicted[0])
            for i, ann in enumerate(anns):
                kps = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
                row = {
                    "image_id": record["image_id"],
                    "file_name": record["file_name"],
                    "patient_id": record.get("patient_id", str(record["image_id"])),
                    "level": ann.get("level"),
                    "imputed": bool(ann.get("imputed", False)),
                    "grade": int(ann["grade"]),
                    "morphology": int(ann["morphology"]),
                    "box": gt_boxes[i].tolist(),
                    "box_iou": float(iou[i, match[i]]) if i in match else None,
                    "keypoints": kps[:, :2].tolist(),
                    "visible": (kps[:, 2] > 0).tolist(),
                    "matched": i in match,
                    "predicted_level": levels[match[i]] if i in match else None,
                    # The matched prediction's record; a missed vertebra counts as predicted normal with certainty.
                    "prediction": predicted[match[i]] if i in match else None,
                }
                self._rows.append(row)

    def evaluate(self):
        rows = sum(comm.gather(self._rows, dst=0), [])
        false_positives = sum(comm.gather(self._false_positives, dst=0))
        images = sum(comm.gather(self._images, dst=0))
        scores = next((s for s in comm.gather(self._scores, dst=0) if s is not None), SCORES)
        if not comm.is_main_process():
            return {}
        if not rows:
            logger.warning(f"VFAEvaluator on {self._dataset_name}: no ground-truth vertebrae were seen")
            return {}
        report = self._report(rows, false_positives, images, scores)
        if self._output_dir:
            out = Path(self._output_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "vfa_metrics.json", json.dumps(report, indent=1, allow_nan=False).encode())
            write_atomic(out / "vfa_predictions.json", json.dumps(rows, allow_nan=False).encode())
        return OrderedDict({"vfa": _flatten(report)})

    def _report(self, rows: List[Dict], false_positives: int, images: int, scores: Dict[str, str]) -> Dict:
        scored = [r for r in rows if not r["imputed"]]
        matched = [r for r in scored if r["matched"]]
        report = {
            "dataset": self._dataset_name,
            "alpha": self._alpha,
            "detection": {
                "vertebrae": len(rows),
                "matched": sum(r["matched"] for r in rows),
                "recall": sum(r["matched"] for r in rows) / len(rows),
                "false_positives": false_positives,
                "images": images,
                "false_positives_per_image": false_positives / max(images, 1),
                # Missed vertebrae by annotated grade (normal to severe); a miss counts as certainly normal.
                "missed_by_grade": [sum(not r["matched"] and r["grade"] == g for r in rows) for g in range(len(GRADES))],
                **_box_placement(rows),
                **_level_accuracy(rows),
                **_recall_by_tilt(rows),
            },
        }
        # A detector of grades (no keypoints) has its one score; XVFA has the three of SCORES.
        headline = next(iter(scores))
        with_keypoints = scores == SCORES
        if scored:
            grades = [r["grade"] for r in scored]
            patients = [r["patient_id"] for r in scored]
            report["scores"] = dict(scores, headline=headline)
            report["screening"] = screening_metrics(
                grades,
                np.array([_probabilities(r, "grade", headline) for r in scored]),
                [r["morphology"] for r in scored],
                np.array([_probabilities(r, "morphology", headline) for r in scored]) if with_keypoints else None,
                patients,
                other_scores={
                    name: values
                    for name, values in screening_score_arrays([r["prediction"] for r in scored], scores).items()
                    if name != headline
                },
            )
            graded = [r for r in scored if r["grade"] != INVALID and r["morphology"] != INVALID]
            found = [r for r in graded if r["matched"]]
            if found and len(found) < len(graded):
                # The same tasks on the found vertebrae alone: what the misses, each counted as
                # certain normal, take from the scores above.
                report["screening_of_found"] = {
                    "count": len(found),
                    "scores": {
                        name: grade_screening([r["grade"] for r in found], per_task)["vertebra"]
                        for name, per_task in screening_score_arrays([r["prediction"] for r in found], scores).items()
                    },
                }
            annotated = _annotated_reduction(scored)
            read = annotated["valid"]
            report["ceiling"] = dict(
                grade_screening(
                    np.array(grades)[read], reduction_scores(annotated["reduction"][read]), np.array(patients)[read]
                ),
                score="crisp height reduction d of the annotated keypoints",
                count=int(read.sum()),
            )
        if matched and with_keypoints:
            predictions = [r["prediction"] for r in matched]
            pred = np.array([keypoint_array(p) for p in predictions])
            true = np.array([r["keypoints"] for r in matched])
            visible = np.array([r["visible"] for r in matched])
            report["keypoint_error"] = keypoint_error(pred, true, visible)
            report["keypoint_error"]["relative_to_posterior_height"] = relative_keypoint_error(pred, true, visible)
            report["keypoint_error"]["relative_by_box_iou"] = _error_by_box_iou(matched, pred, true, visible)
            # The matched vertebrae are read ones: their annotated d is the ceiling's, computed once.
            found = np.array([r["matched"] for r in scored]) & annotated["valid"]
            predicted = np.array([r["prediction"]["reduction"] if r["matched"] else 0.0 for r in scored])
            report["reduction_agreement"] = reduction_agreement(predicted[found], annotated["reduction"][found])
            report["eps_coverage"] = interval_coverage(pred, true, np.array([keypoint_array(p, "eps_px") for p in predictions]), visible)
            report["eps_coverage_by_alpha"] = {
                str(a): interval_coverage(
                    pred, true, np.array([[k["eps_px_by_alpha"][str(a)] for k in p["keypoints"].values()] for p in predictions]),
                    visible,
                )["coverage"]
                for a in COVERAGE_LEVELS
            }
        return report


# Bands of a match's box IoU for the keypoint error by box: the first from any matching threshold, the last holds 1.0.
BOX_IOU_BANDS = (0.0, 0.6, 0.7, 0.8, 0.9, 1.0)


def _error_by_box_iou(matched: List[Dict], pred: np.ndarray, true: np.ndarray, visible: np.ndarray) -> Dict:
    """The keypoint error relative to the posterior height (:func:`relative_keypoint_error`) of the
    matched vertebrae in each band of their box's IoU with the annotated box: how much a looser box
    costs the fine stage. Bands without a vertebra are left out."""
    return {
        name: dict(vertebrae=int(inside.sum()), **relative_keypoint_error(pred[inside], true[inside], visible[inside]))
        for name, inside in _bands([r["box_iou"] for r in matched], BOX_IOU_BANDS, "{:.1f}-{:.1f}")
    }


def _bands(values, edges, name: str):
    """``(name, mask)`` for each band between consecutive ``edges`` that holds one of ``values``, the
    name formatted from the band's edges; the last band holds its upper edge (an IoU of 1.0)."""
    band = np.digitize(values, edges[1:-1])
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = band == k
        if inside.any():
            yield name.format(lo, hi), inside


# Bands of an annotated vertebra's tilt in degrees (:func:`~xvfa_ext.metrics.endplate_tilt`) for the recall by tilt.
TILT_BANDS = (0.0, 10.0, 20.0, 30.0, 90.0)
# The four corners that give a vertebra's tilt: both endplates' posterior and anterior points.
_CORNERS = (0, 2, 3, 5)


def _recall_by_tilt(rows: List[Dict]) -> Dict:
    """The recall in each band of the annotated vertebrae's tilt: a tilted vertebra's axis-aligned
    box is wider and overlaps its neighbours'. Vertebrae without their four corners annotated are
    left out, and bands without a vertebra."""
    tilted = [r for r in rows if all(r["visible"][k] for k in _CORNERS)]
    if not tilted:
        return {}
    found = np.array([r["matched"] for r in tilted])
    tilt = endplate_tilt(np.array([r["keypoints"] for r in tilted]))
    return {"recall_by_tilt": {
        name: {"vertebrae": int(inside.sum()), "recall": float(found[inside].mean())}
        for name, inside in _bands(tilt, TILT_BANDS, "{:g}-{:g}")
    }}


def _box_placement(rows: List[Dict]) -> Dict:
    """How well matched boxes sit: IoU, height against the annotated box's, and the vertical offset of
    the centre as a fraction of the annotated height (medians, and the offset's 90th percentile)."""
    matched = [r for r in rows if r["matched"]]
    if not matched:
        return {}
    true = np.array([r["box"] for r in matched])
    pred = np.array([r["prediction"]["box"] for r in matched])
    height = true[:, 3] - true[:, 1]
    offset = np.abs((pred[:, 1] + pred[:, 3]) - (true[:, 1] + true[:, 3])) / 2 / height
    return {
        "median_iou": float(np.median([r["box_iou"] for r in matched])),
        "median_height_ratio": float(np.median((pred[:, 3] - pred[:, 1]) / height)),
        "median_centre_offset_of_height": float(np.median(offset)),
        "p90_centre_offset_of_height": float(np.percentile(offset, 90)),
    }


def _level_accuracy(rows: List[Dict]) -> Dict:
    """The share of matched vertebrae with an annotated level whose predicted level is that level."""
    leveled = [r for r in rows if r["matched"] and r["level"] is not None]
    if not leveled:
        return {}
    return {
        "level_accuracy": sum(r["predicted_level"] == str(r["level"]) for r in leveled) / len(leveled),
        "level_count": len(leveled),
    }


def _probabilities(row: Dict, task: str, kind: str) -> np.ndarray:
    """The probabilities of ``kind`` (the headline score's) of a ground-truth row's prediction, or certain normal if missed."""
    if row["prediction"] is None:
        return missed_probabilities(task)
    return probability_array(row["prediction"], task, kind)


def _annotated_reduction(rows: List[Dict]) -> Dict[str, np.ndarray]:
    """The height reduction of each row's annotated keypoints, and whether it is defined (all six
    keypoints annotated, every height positive)."""
    m = morphometry(torch.tensor([r["keypoints"] for r in rows], dtype=torch.float64).reshape(-1, 6, 2))
    complete = np.array([all(r["visible"]) for r in rows], dtype=bool).reshape(-1)
    return {"reduction": m["reduction"].numpy(), "valid": m["valid"].numpy() & complete}


def _flatten(report: Dict) -> "OrderedDict[str, float]":
    """Scalars for detectron2's CSV print and event storage; undefined metrics (None) are left out."""
    flat = OrderedDict()
    flat["recall"] = report["detection"]["recall"]
    flat["false_positives_per_image"] = report["detection"]["false_positives_per_image"]
    if "level_accuracy" in report["detection"]:
        flat["level_accuracy"] = report["detection"]["level_accuracy"]
    screening = report.get("screening", {})
    blocks = [("", "", screening.get(level, {}).get("grade", {}), level) for level in ("vertebra", "patient")]
    for name, per_level in screening.get("scores", {}).items():
        blocks += [("", f"_{name}", per_level.get(level, {}), level) for level in ("vertebra", "patient")]
    if "ceiling" in report:
        blocks += [("ceiling/", "", report["ceiling"].get(level, {}), level) for level in ("vertebra", "patient")]
    for prefix, suffix, tasks, level in blocks:
        for task, values in tasks.items():
            for metric in SCREENING_METRICS:
                if values[metric] is not None:
                    flat[f"{prefix}{level}/{task}/{metric}{suffix}"] = values[metric]
    headline = report.get("scores", {}).get("headline")
    for task, values in report.get("screening_of_found", {}).get("scores", {}).get(headline, {}).items():
        if values["auc"] is not None:
            flat[f"vertebra/{task}/auc_of_found"] = values["auc"]
    for name, values in screening.get("vertebra", {}).get("morphology", {}).items():
        if values["auc"] is not None:
            flat[f"vertebra/{name}_vs_rest/auc"] = values["auc"]
    if "keypoint_error" in report:
        flat["keypoint_error_px"] = report["keypoint_error"]["mean_px"]
        relative = report["keypoint_error"]["relative_to_posterior_height"]["mean"]
        if relative is not None:
            flat["keypoint_error_of_height"] = relative
        flat[f"eps_coverage@{report['alpha']}"] = report["eps_coverage"]["coverage"]
    for key in ("slope", "correlation"):
        value = report.get("reduction_agreement", {}).get(key)
        if value is not None:
            flat[f"reduction_{key}"] = value
    return flat
