"""The paper's screening metrics, computed with scikit-learn, as plain dicts a JSON file can hold.

AUC, F1, sensitivity and specificity at the Youden point for normal vs fracture and normal+mild vs
moderate+severe, at vertebra level and at patient level (a patient is as fractured as its worst
vertebra), one vs rest for each morphology, confusion matrices normalised by true class, keypoint
error in pixels and the coverage of the keypoint intervals. A metric that a set cannot define (AUC
with one class present) is ``None``, never NaN.
"""

from collections import defaultdict
from typing import Dict, Optional, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score, roc_curve

from .gsq import GRADES, INVALID, MORPHOLOGIES
from .layout import KEYPOINT_NAMES

# Screening tasks on grades: the positive class is ``grade >= first positive grade``.
GRADE_TASKS = {"normal_vs_fracture": 1, "normal_mild_vs_moderate_severe": 2}


def _finite(name: str, values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return values


def binary_screening(positive: Sequence[bool], score: Sequence[float]) -> Dict:
    """AUC, and F1, sensitivity and specificity at the Youden point (max of sensitivity + specificity - 1)."""
    y = np.asarray(positive, dtype=bool)
    s = _finite("scores", np.asarray(score, dtype=float))
    out = {"positives": int(y.sum()), "negatives": int((~y).sum())}
    if y.all() or not y.any():
        return dict(out, auc=None, f1=None, sensitivity=None, specificity=None, threshold=None)
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    threshold = float(thresholds[best])
    return dict(
        out,
        auc=float(roc_auc_score(y, s)),
        f1=float(f1_score(y, s >= threshold)),
        sensitivity=float(tpr[best]),
        specificity=float(1 - fpr[best]),
        threshold=threshold if np.isfinite(threshold) else None,
    )


def grade_scores(grade_probs: np.ndarray) -> Dict[str, np.ndarray]:
    """The probability of each screening task's positive class."""
    return {task: grade_probs[:, first:].sum(1) for task, first in GRADE_TASKS.items()}


def _confusion(true: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> Dict:
    labels = list(range(len(names)))
    return {
        "classes": list(names),
        "support": [int((true == c).sum()) for c in labels],
        "normalized": confusion_matrix(true, pred, labels=labels, normalize="true").tolist(),
    }


def screening_metrics(
    grade_true: Sequence[int],
    grade_probs: np.ndarray,
    morphology_true: Sequence[int],
    morphology_probs: np.ndarray,
    patient_ids: Optional[Sequence[str]] = None,
) -> Dict:
    """Vertebra-level (and with ``patient_ids`` patient-level) screening results.

    Vertebrae whose grade or morphology is -1 (invalid or unlabelled) are left out and counted.
    """
    grade_true = np.asarray(grade_true, dtype=int)
    morphology_true = np.asarray(morphology_true, dtype=int)
    grade_probs = _finite("grade probabilities", np.asarray(grade_probs, dtype=float).reshape(-1, len(GRADES)))
    morphology_probs = _finite(
        "morphology probabilities", np.asarray(morphology_probs, dtype=float).reshape(-1, len(MORPHOLOGIES))
    )
    if not len(grade_true) == len(grade_probs) == len(morphology_true) == len(morphology_probs):
        raise ValueError("labels and probabilities must describe the same vertebrae")
    keep = (grade_true != INVALID) & (morphology_true != INVALID)
    g, gp = grade_true[keep], grade_probs[keep]
    m, mp = morphology_true[keep], morphology_probs[keep]

    scores = grade_scores(gp)
    vertebra = {
        "count": int(keep.sum()),
        "left_out": int((~keep).sum()),
        "grade": {task: binary_screening(g >= first, scores[task]) for task, first in GRADE_TASKS.items()},
        "morphology": {name: binary_screening(m == c, mp[:, c]) for c, name in enumerate(MORPHOLOGIES)},
        "confusion_grade": _confusion(g, gp.argmax(1), GRADES),
        "confusion_morphology": _confusion(m, mp.argmax(1), MORPHOLOGIES),
    }
    out = {"vertebra": vertebra}
    if patient_ids is not None:
        out["patient"] = _patient_metrics(np.asarray(patient_ids)[keep], g, gp)
    return out


def _patient_metrics(patients: np.ndarray, grade_true: np.ndarray, grade_probs: np.ndarray) -> Dict:
    rows = defaultdict(list)
    for i, p in enumerate(patients.tolist()):
        rows[p].append(i)
    worst_true = np.array([grade_true[idx].max() for idx in rows.values()])
    worst_pred = np.array([grade_probs[idx].argmax(1).max() for idx in rows.values()])
    scores = grade_scores(grade_probs)
    return {
        "count": len(rows),
        "grade": {
            task: binary_screening(worst_true >= first, [scores[task][idx].max() for idx in rows.values()])
            for task, first in GRADE_TASKS.items()
        },
        "confusion_grade": _confusion(worst_true, worst_pred, GRADES),
    }


def _visible_mask(shape, visible) -> np.ndarray:
    return np.ones(shape[:2], dtype=bool) if visible is None else np.asarray(visible, dtype=bool)


def keypoint_error(pred: np.ndarray, true: np.ndarray, visible: Optional[np.ndarray] = None) -> Dict:
    """Euclidean keypoint error in pixels over visible keypoints: mean, median and per keypoint."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    vis = _visible_mask(pred.shape, visible)
    dist = np.linalg.norm(pred - true, axis=-1)
    if not np.isfinite(dist[vis]).all():
        raise ValueError("keypoints hold NaN or infinite values")
    if not vis.any():
        return {"count": 0, "mean_px": None, "median_px": None, "per_keypoint_mean_px": {}}
    return {
        "count": int(vis.sum()),
        "mean_px": float(dist[vis].mean()),
        "median_px": float(np.median(dist[vis])),
        "per_keypoint_mean_px": {
            name: float(dist[:, k][vis[:, k]].mean()) if vis[:, k].any() else None
            for k, name in enumerate(KEYPOINT_NAMES)
        },
    }


def interval_coverage(pred: np.ndarray, true: np.ndarray, eps: np.ndarray, visible: Optional[np.ndarray] = None) -> Dict:
    """Fraction of true keypoints within ``eps`` of the prediction, and the mean ``eps`` in pixels."""
    pred, true, eps = np.asarray(pred, dtype=float), np.asarray(true, dtype=float), np.asarray(eps, dtype=float)
    vis = _visible_mask(pred.shape, visible)
    inside = np.linalg.norm(pred - true, axis=-1) <= eps
    if not vis.any():
        return {"count": 0, "coverage": None, "mean_eps_px": None}
    return {"count": int(vis.sum()), "coverage": float(inside[vis].mean()), "mean_eps_px": float(eps[vis].mean())}
