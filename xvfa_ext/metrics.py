"""The paper's screening metrics, computed with scikit-learn, as plain dicts a JSON file can hold.

AUC, F1, sensitivity and specificity at the Youden point for normal vs fracture and normal+mild vs
moderate+severe, at vertebra level and at patient level (a patient is as fractured as its worst
vertebra), one vs rest for each morphology, confusion matrices normalised by true class, keypoint
error in pixels and as a fraction of the vertebra's height, the shrinkage of the predicted height
reduction, and the coverage of the keypoint intervals. A metric that a set cannot define (AUC with
one class present) is ``None``, never NaN.

A screening score ranks vertebrae for a task. Three are reported (:data:`SCORES`): the mean over
keypoint samples of the combined probability of eq. 7 (the headline, paper section 3.5), the
combined probability of the mean keypoints, and the crisp height reduction ``d`` of the mean
keypoints, which ranks by what a reader measures.
"""

from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score, roc_curve

from .gsq import GRADES, INVALID, MORPHOLOGIES, classify, morphometry
from .layout import KEYPOINT_NAMES

# Screening tasks on grades: the positive class is ``grade >= first positive grade``.
GRADE_TASKS = {"normal_vs_fracture": 1, "normal_mild_vs_moderate_severe": 2}
# The screening scores, headline first: what each ranks vertebrae by.
SCORES = {
    "sampled_mean": "mean over keypoint samples of the combined probability (eq. 7, paper section 3.5)",
    "combined": "combined probability of eq. 7 at the mean keypoints",
    "reduction": "crisp height reduction d of the mean keypoints",
}
HEADLINE_SCORE = "sampled_mean"
# A detector of grades has no keypoints: its one score is the grade probabilities of its boxes.
BOX_SCORES = {"box": "grade probabilities of the box, from a detector of grades (no keypoints)"}
# An image-level classifier's one score: its probabilities of the image's worst grade.
IMAGE_SCORES = {"image": "probabilities of the image's worst grade, from an image-level classifier"}


def worst_read_grade(grades: Sequence[int], imputed: Sequence[bool]) -> int:
    """The worst grade among an image's read (not imputed), graded vertebrae, or ``INVALID`` if none:
    what an image-level classifier learns and is scored against."""
    read = [int(g) for g, i in zip(grades, imputed) if not i and int(g) != INVALID]
    return max(read) if read else INVALID


def _finite(name: str, values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return values


# What binary_screening reports for each task (beside the counts and the threshold).
SCREENING_METRICS = ("auc", "f1", "sensitivity", "specificity")


def binary_screening(positive: Sequence[bool], score: Sequence[float]) -> Dict:
    """AUC, and F1, sensitivity and specificity at the Youden point (max of sensitivity + specificity - 1)."""
    y = np.asarray(positive, dtype=bool)
    s = _finite("scores", np.asarray(score, dtype=float))
    out = {"positives": int(y.sum()), "negatives": int((~y).sum())}
    if y.all() or not y.any():
        return dict(out, threshold=None, **dict.fromkeys(SCREENING_METRICS))
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


def reduction_scores(reduction: Sequence[float]) -> Dict[str, np.ndarray]:
    """The height reduction ``d`` as the score of every task: each task is a threshold on ``d``."""
    d = _finite("reductions", np.asarray(reduction, dtype=float))
    return {task: d for task in GRADE_TASKS}


def grade_screening(grade_true: Sequence[int], scores: Dict[str, np.ndarray], patient_ids: Optional[Sequence[str]] = None) -> Dict:
    """Each grade task at vertebra (and with ``patient_ids`` patient) level for one score.

    ``scores`` maps each task of :data:`GRADE_TASKS` to per-vertebra scores; a patient scores its
    worst vertebra's score and is positive when its worst grade is.
    """
    g = np.asarray(grade_true, dtype=int)
    out = {"vertebra": {task: binary_screening(g >= first, scores[task]) for task, first in GRADE_TASKS.items()}}
    if patient_ids is not None:
        rows = _patient_rows(patient_ids)
        worst = np.array([g[idx].max() for idx in rows])
        out["patient"] = {
            task: binary_screening(worst >= first, [np.max(scores[task][idx]) for idx in rows])
            for task, first in GRADE_TASKS.items()
        }
    return out


def _patient_rows(patient_ids: Sequence[str]) -> List[List[int]]:
    rows = defaultdict(list)
    for i, p in enumerate(np.asarray(patient_ids).tolist()):
        rows[p].append(i)
    return list(rows.values())


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
    morphology_probs: Optional[np.ndarray],
    patient_ids: Optional[Sequence[str]] = None,
    other_scores: Optional[Dict[str, Dict[str, np.ndarray]]] = None,
) -> Dict:
    """Vertebra-level (and with ``patient_ids`` patient-level) screening results.

    ``grade_probs`` (N, 4) and ``morphology_probs`` (N, 3) give the main block, with confusion
    matrices; a model that does not predict morphology passes ``morphology_probs=None`` and its
    results have no morphology. ``other_scores`` maps a score's name to its per-task scores (N,) for
    the same vertebrae (:func:`grade_scores`, :func:`reduction_scores`); each gets the grade tasks of
    :func:`grade_screening` under ``"scores"``. Vertebrae whose grade or morphology is -1 (invalid
    or unlabelled) are left out and counted.
    """
    grade_true = np.asarray(grade_true, dtype=int)
    morphology_true = np.asarray(morphology_true, dtype=int)
    grade_probs = _finite("grade probabilities", np.asarray(grade_probs, dtype=float).reshape(-1, len(GRADES)))
    if morphology_probs is not None:
        morphology_probs = _finite(
            "morphology probabilities", np.asarray(morphology_probs, dtype=float).reshape(-1, len(MORPHOLOGIES))
        )
        if len(morphology_probs) != len(morphology_true):
            raise ValueError("labels and probabilities must describe the same vertebrae")
    if not len(grade_true) == len(grade_probs) == len(morphology_true):
        raise ValueError("labels and probabilities must describe the same vertebrae")
    keep = (grade_true != INVALID) & (morphology_true != INVALID)
    g, gp = grade_true[keep], grade_probs[keep]

    patients = np.asarray(patient_ids)[keep] if patient_ids is not None else None
    headline = grade_screening(g, grade_scores(gp), patients)
    vertebra = {
        "count": int(keep.sum()),
        "left_out": int((~keep).sum()),
        "grade": headline["vertebra"],
        "confusion_grade": _confusion(g, gp.argmax(1), GRADES),
    }
    if morphology_probs is not None:
        m, mp = morphology_true[keep], morphology_probs[keep]
        vertebra["morphology"] = {name: binary_screening(m == c, mp[:, c]) for c, name in enumerate(MORPHOLOGIES)}
        vertebra["confusion_morphology"] = _confusion(m, mp.argmax(1), MORPHOLOGIES)
    out = {"vertebra": vertebra}
    if patients is not None:
        rows = _patient_rows(patients)
        worst_true = np.array([g[idx].max() for idx in rows])
        worst_pred = np.array([gp[idx].argmax(1).max() for idx in rows])
        out["patient"] = {
            "count": len(rows),
            "grade": headline["patient"],
            "confusion_grade": _confusion(worst_true, worst_pred, GRADES),
        }
    if other_scores:
        out["scores"] = {
            name: grade_screening(g, {task: _finite(name, np.asarray(v, dtype=float))[keep] for task, v in per_task.items()}, patients)
            for name, per_task in other_scores.items()
        }
    return out


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


def relative_keypoint_error(pred: np.ndarray, true: np.ndarray, visible: Optional[np.ndarray] = None) -> Dict:
    """Keypoint error as a fraction of each vertebra's annotated posterior height ``hp``: mean and
    median over visible keypoints of vertebrae with a positive ``hp``."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    vis = _visible_mask(pred.shape, visible)
    hp = np.linalg.norm(true[:, 0] - true[:, 3], axis=-1)
    vis = vis & (hp > 0)[:, None] & vis[:, [0]] & vis[:, [3]]
    if not vis.any():
        return {"count": 0, "mean": None, "median": None}
    relative = np.linalg.norm(pred - true, axis=-1) / np.where(hp > 0, hp, 1.0)[:, None]
    return {"count": int(vis.sum()), "mean": float(relative[vis].mean()), "median": float(np.median(relative[vis]))}


def endplate_tilt(keypoints: np.ndarray) -> np.ndarray:
    """How far each vertebra is turned in the image plane, in degrees from the horizontal (0-90).

    Args:
        keypoints: ``(N, 6, 2)`` points in the order of docs/gsq.md.

    Returns:
        ``(N,)`` the angle of the sum of the two endplates' posterior-to-anterior vectors, folded to
        0-90 degrees: a vertebra tilted either way by 30 degrees gives 30.
    """
    k = np.asarray(keypoints, dtype=float).reshape(-1, 6, 2)
    direction = (k[:, 2] - k[:, 0]) + (k[:, 5] - k[:, 3])
    return np.degrees(np.arctan2(np.abs(direction[:, 1]), np.abs(direction[:, 0])))


def reduction_agreement(predicted: Sequence[float], annotated: Sequence[float]) -> Dict:
    """Least-squares slope, intercept and Pearson correlation of the predicted height reduction
    ``d`` against the annotated one (scipy.stats.linregress). A slope well below 1 says the
    predictions shrink towards the average shape."""
    x = _finite("annotated reductions", np.asarray(annotated, dtype=float))
    y = _finite("predicted reductions", np.asarray(predicted, dtype=float))
    if len(x) < 2 or np.ptp(x) == 0:
        return {"count": len(x), "slope": None, "intercept": None, "correlation": None}
    fit = stats.linregress(x, y)
    correlation = float(fit.rvalue) if np.ptp(y) > 0 else None
    return {"count": len(x), "slope": float(fit.slope), "intercept": float(fit.intercept), "correlation": correlation}


def reading_noise_ceiling(keypoints: np.ndarray, distance: float, draws: int = 20, seed: int = 0,
                          middles_from_corners: bool = False) -> Dict:
    """What readers' point noise alone leaves a perfect model of the slope of ``d`` and of the AUC.

    The annotated points stand for the truth. Each draw is a reading of them: every point moved by
    isotropic Gaussian noise of ``distance / sqrt(pi)`` of its vertebra's posterior height per axis,
    so that two such readings lie ``distance`` of the height apart on average (what a two-reader
    study reports); with ``middles_from_corners`` the middles are then made from the moved corners,
    as the data's were. A model that knew the truth is scored against the reading as the evaluator
    scores a model against the annotation: the slope of its ``d`` against the reading's
    (:func:`reduction_agreement`), and the AUC of its ``d`` for the reading's normal+mild vs
    moderate+severe grades.

    Args:
        keypoints: ``(N, 6, 2)`` annotated points, every vertebra with a valid morphometry.
        distance: the mean distance between two readers' points, as a fraction of the height.
    Returns:
        ``{"distance", "draws", "vertebrae", "slope": {"mean", "std"}, "auc": {"mean", "std"}}``;
        an AUC is None where a reading has one class only.
    """
    kps = np.asarray(keypoints, dtype=float)
    if kps.ndim != 3 or kps.shape[1:] != (len(KEYPOINT_NAMES), 2):
        raise ValueError(f"keypoints must be shaped (N, {len(KEYPOINT_NAMES)}, 2), got {kps.shape}")
    if not (np.isfinite(distance) and distance >= 0) or draws < 1:
        raise ValueError(f"need a distance >= 0 and at least one draw, got {distance} and {draws}")
    truth = morphometry(kps)
    if not truth["valid"].all():
        raise ValueError(f"vertebra {int(np.flatnonzero(~truth['valid'].numpy())[0])}: no valid morphometry")
    d_true = truth["reduction"].numpy()
    rng = np.random.default_rng(seed)
    sigma = distance / np.sqrt(np.pi) * truth["hp"].numpy()[:, None, None]
    slopes, aucs = [], []
    for _ in range(draws):
        reading = kps + rng.normal(size=kps.shape) * sigma
        if middles_from_corners:
            reading[:, 1] = (reading[:, 0] + reading[:, 2]) / 2
            reading[:, 4] = (reading[:, 3] + reading[:, 5]) / 2
        d_read = morphometry(reading)["reduction"].numpy()
        grade = classify(reading)[0].numpy()
        slopes.append(reduction_agreement(d_true, d_read)["slope"])
        aucs.append(binary_screening(grade >= GRADE_TASKS["normal_mild_vs_moderate_severe"], d_true)["auc"])

    def spread(values):
        if any(v is None for v in values):
            return {"mean": None, "std": None}
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    return {"distance": float(distance), "draws": draws, "vertebrae": len(kps),
            "slope": spread(slopes), "auc": spread(aucs)}


def interval_coverage(pred: np.ndarray, true: np.ndarray, eps: np.ndarray, visible: Optional[np.ndarray] = None) -> Dict:
    """Fraction of true keypoints within ``eps`` of the prediction, and the mean ``eps`` in pixels."""
    pred, true, eps = np.asarray(pred, dtype=float), np.asarray(true, dtype=float), np.asarray(eps, dtype=float)
    vis = _visible_mask(pred.shape, visible)
    inside = np.linalg.norm(pred - true, axis=-1) <= eps
    if not vis.any():
        return {"count": 0, "coverage": None, "mean_eps_px": None}
    return {"count": int(vis.sum()), "coverage": float(inside[vis].mean()), "mean_eps_px": float(eps[vis].mean())}
