"""One record per predicted vertebra: what the evaluator scores, the reports hold and the Visualizer draws.

:func:`vertebra_records` is the only place where a model's per-image ``Instances`` become
per-vertebra values. Morphometry, the crisp GSQ grade and its explanation are computed there once
per vertebra, from the predicted mean keypoints in the radiograph's pixels; everything downstream
reads the records. ``Instances`` are used through ``len`` and ``get`` alone, so this module needs no
detectron2.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .gsq import DEFAULT_THRESHOLDS, GRADES, INVALID, MORPHOLOGIES, assess, morphometry, shape_word
from .layout import KEYPOINT_NAMES
from .metrics import BOX_SCORES, GRADE_TASKS, SCORES, grade_scores, reduction_scores
from .prediction_fields import CLASSES, PROBABILITY_FIELDS
from .uncertainty import COVERAGE_LEVELS

HEIGHT_NAMES = (("anterior", "ha"), ("middle", "hm"), ("posterior", "hp"))
RATIO_NAMES = (("APR", "apr"), ("MPR", "mpr"), ("MAR", "mar"))


def _name(names: Sequence[str], index: int) -> str:
    return names[index] if index != INVALID else "invalid"


def heights_mm(keypoints, pixel_spacing: Sequence[float]) -> np.ndarray:
    """Heights ``(N, 3)`` (anterior, middle, posterior) in mm of keypoints ``(N, 6, 2)`` in pixels:
    x scales with the column spacing and y with the row spacing of ``pixel_spacing`` (row, column)."""
    row_mm, col_mm = (float(v) for v in pixel_spacing)
    kps = torch.as_tensor(np.asarray(keypoints, dtype=np.float64))
    m = morphometry(kps * kps.new_tensor([col_mm, row_mm]))
    return torch.stack([m[key] for _, key in HEIGHT_NAMES], -1).numpy()


def gsq_fields(keypoints, pixel_spacing: Optional[Sequence[float]] = None, thresholds=DEFAULT_THRESHOLDS) -> List[Dict]:
    """What GSQ says of each vertebra of keypoints ``(N, 6, 2)`` in pixels, as record fields.

    ``heights_px``, ``ratios``, ``reduction``, ``valid``, the crisp ``gsq_grade``, ``gsq_morphology``
    and ``gsq_shape`` with their ``explanation``, and with ``pixel_spacing`` (row, column mm)
    ``heights_mm``. Re-grading after a reader moved a point uses this too.
    """
    a = assess(np.asarray(keypoints, dtype=np.float64).reshape(-1, len(KEYPOINT_NAMES), 2), thresholds)
    mm = heights_mm(keypoints, pixel_spacing).reshape(-1, 3) if pixel_spacing is not None else None
    values = {k: a[k].tolist() for k in ("ha", "hm", "hp", "apr", "mpr", "mar", "reduction", "valid", "grade", "morphology")}
    out = []
    for i in range(len(a["shape"])):
        fields = {
            "heights_px": {name: values[key][i] for name, key in HEIGHT_NAMES},
            "ratios": {name: values[key][i] for name, key in RATIO_NAMES},
            "reduction": values["reduction"][i],
            "valid": values["valid"][i],
            "gsq_grade": _name(GRADES, values["grade"][i]),
            "gsq_morphology": _name(MORPHOLOGIES, values["morphology"][i]),
            "gsq_shape": a["shape"][i],
            "explanation": a["explanation"][i],
        }
        if mm is not None:
            fields["heights_mm"] = {name: float(v) for (name, _), v in zip(HEIGHT_NAMES, mm[i])}
        out.append(fields)
    return out


def vertebra_records(
    instances,
    levels: Optional[Sequence[Optional[str]]] = None,
    level_certain: Optional[Sequence[bool]] = None,
    pixel_spacing: Optional[Sequence[float]] = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> List[Dict]:
    """The records of one image's predicted vertebrae, in the order of ``instances``.

    Args:
        instances: ``Instances`` of N vertebrae as ``XVFA.inference`` gives them, in the
            radiograph's pixels: ``pred_boxes`` (N, 4) XYXY, ``scores`` (N,), ``pred_keypoints``
            (N, 6, 3), ``pred_keypoint_eps`` (N, 6), ``pred_keypoint_eps_levels`` (N, 6, L) at
            :data:`~xvfa_ext.uncertainty.COVERAGE_LEVELS`, ``pred_keypoint_scale`` (N, 6, 2), and
            ``grade_probs*`` (N, 4) and ``morphology_probs*`` (N, 3) with the suffixes of
            :data:`PROBABILITY_FIELDS`.
        levels, level_certain: each vertebra's level and whether it is certain, or None.
        pixel_spacing: (row, column) mm per pixel, for heights in mm.

    Returns:
        N dicts: ``index``, ``level``, ``level_certain``, ``box``, ``score``, ``keypoints`` (per
        name: ``x``, ``y``, ``eps_px`` at the model's alpha, ``eps_px_by_alpha``, ``scale_px``, and
        for an ensemble (:func:`~xvfa_ext.ensemble.ensemble_instances`) ``epistemic_px``, the
        spread between its models, beside ``eps_px``, their mean interval),
        the fields of :func:`gsq_fields`, ``grade``, ``morphology`` and ``shape`` of the combined
        probabilities (eq. 7), ``grade_probabilities`` and ``morphology_probabilities`` (per
        :data:`PROBABILITY_FIELDS`, per class; an ensemble's also ``members_std``, the spread of
        its models' sampled means), and ``screening_scores`` (per task of
        :data:`~xvfa_ext.metrics.GRADE_TASKS`, per score of :data:`~xvfa_ext.metrics.SCORES`).
    """
    n = len(instances)
    if levels is not None and len(levels) != n:
        raise ValueError(f"{len(levels)} levels for {n} vertebrae")

    def field(name: str) -> np.ndarray:
        return instances.get(name).detach().cpu().double().numpy()

    def optional(name: str) -> Optional[np.ndarray]:
        try:
            return field(name)
        except KeyError:
            return None

    boxes = instances.get("pred_boxes").tensor.detach().cpu().double().numpy()
    scores = field("scores")
    if optional("pred_keypoints") is None:
        return _box_records(boxes, scores, field("grade_probs"), levels, level_certain)
    keypoints = field("pred_keypoints")[..., :2]
    eps, eps_levels, scale = field("pred_keypoint_eps"), field("pred_keypoint_eps_levels"), field("pred_keypoint_scale")
    probs = {
        task: {kind: field(f"{task}_probs{suffix}") for kind, suffix in PROBABILITY_FIELDS.items()} for task in CLASSES
    }
    # An ensemble's (xvfa_ext.ensemble): the spread between its models.
    epistemic = optional("pred_keypoint_epistemic")
    for task in CLASSES:
        spread = optional(f"{task}_probs_members_std")
        if spread is not None:
            probs[task]["members_std"] = spread
    gsq = gsq_fields(keypoints, pixel_spacing, thresholds)
    per_score = {
        "sampled_mean": grade_scores(probs["grade"]["sampled_mean"]),
        "combined": grade_scores(probs["grade"]["combined"]),
        "reduction": reduction_scores([g["reduction"] for g in gsq]),
    }
    records = []
    for i in range(n):
        grade = int(np.argmax(probs["grade"]["combined"][i]))
        morphology = int(np.argmax(probs["morphology"]["combined"][i]))
        heights = gsq[i]["heights_px"]
        record = {
            "index": i,
            **_level_fields(levels, level_certain, i),
            "box": boxes[i].tolist(),
            "score": float(scores[i]),
            "keypoints": {
                name: {
                    "x": float(keypoints[i, k, 0]),
                    "y": float(keypoints[i, k, 1]),
                    "eps_px": float(eps[i, k]),
                    "eps_px_by_alpha": {str(a): float(eps_levels[i, k, j]) for j, a in enumerate(COVERAGE_LEVELS)},
                    "scale_px": scale[i, k].tolist(),
                    **({"epistemic_px": float(epistemic[i, k])} if epistemic is not None else {}),
                }
                for k, name in enumerate(KEYPOINT_NAMES)
            },
            **gsq[i],
            "grade": GRADES[grade],
            "morphology": MORPHOLOGIES[morphology],
            "shape": shape_word(morphology, heights["anterior"], heights["posterior"]),
            **{
                f"{task}_probabilities": {
                    kind: dict(zip(names, values[i].tolist())) for kind, values in probs[task].items()
                }
                for task, names in CLASSES.items()
            },
            "screening_scores": {task: {name: float(per_score[name][task][i]) for name in SCORES} for task in GRADE_TASKS},
        }
        records.append(record)
    return records


def _level_fields(levels, level_certain, i: int) -> Dict:
    return {
        "level": levels[i] if levels is not None else None,
        "level_certain": bool(levels is not None and levels[i] is not None and level_certain is not None and level_certain[i]),
    }


def _box_records(boxes, scores, grade_probs, levels, level_certain) -> List[Dict]:
    """Records of a detector of grades (no keypoints, no morphology): ``keypoints`` is None, and the
    grade probabilities and screening scores are of the one kind :data:`~xvfa_ext.metrics.BOX_SCORES`."""
    (kind,) = BOX_SCORES
    per_task = grade_scores(grade_probs)
    return [
        {
            "index": i,
            **_level_fields(levels, level_certain, i),
            "box": boxes[i].tolist(),
            "score": float(scores[i]),
            "keypoints": None,
            "grade": GRADES[int(np.argmax(grade_probs[i]))],
            "grade_probabilities": {kind: dict(zip(GRADES, grade_probs[i].tolist()))},
            "screening_scores": {task: {kind: float(per_task[task][i])} for task in GRADE_TASKS},
        }
        for i in range(len(boxes))
    ]


def record_scores(record: Dict) -> Dict[str, str]:
    """The screening scores a record gives, headline first: :data:`~xvfa_ext.metrics.SCORES`, or
    :data:`~xvfa_ext.metrics.BOX_SCORES` for a detector of grades."""
    return SCORES if record["keypoints"] is not None else BOX_SCORES


def keypoint_array(record: Dict, key: Optional[str] = None) -> np.ndarray:
    """A record's keypoints ``(6, 2)``, or with ``key`` their ``eps_px`` ``(6,)`` or ``scale_px`` ``(6, 2)``."""
    points = [record["keypoints"][name] for name in KEYPOINT_NAMES]
    if key is None:
        return np.array([[p["x"], p["y"]] for p in points])
    return np.array([p[key] for p in points])


def probability_array(record: Dict, task: str, kind: str = "combined") -> np.ndarray:
    """A record's ``task`` (grade or morphology) probabilities of ``kind`` in class order."""
    values = record[f"{task}_probabilities"][kind]
    return np.array([values[name] for name in CLASSES[task]])


def missed_probabilities(task: str) -> np.ndarray:
    """The ``task`` (grade or morphology) probabilities of a vertebra no prediction was matched to:
    a missed vertebra counts as certainly normal, here alone."""
    return np.eye(len(CLASSES[task]))[0]


def screening_score_arrays(records: Sequence[Optional[Dict]], scores: Sequence[str] = tuple(SCORES)) -> Dict[str, Dict[str, np.ndarray]]:
    """Per score of ``scores`` (:data:`~xvfa_ext.metrics.SCORES` by default), per task, the records'
    screening scores ``(N,)``.

    A ``None`` stands for a vertebra no prediction was matched to: it scores as certain normal
    (:func:`missed_probabilities`), zero.
    """
    normal = missed_probabilities("grade")
    missed = {task: float(normal[first:].sum()) for task, first in GRADE_TASKS.items()}
    return {
        name: {
            task: np.array([r["screening_scores"][task][name] if r is not None else missed[task] for r in records], dtype=float)
            for task in GRADE_TASKS
        }
        for name in scores
    }
