"""What a reader sees per vertebra and per patient: the JSON and CSV of ``tools/predict.py``.

The vertebrae are :func:`~xvfa_ext.records.vertebra_records`; :func:`classify_keypoints` re-grades
keypoints, for example after a reader moved a point.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

from .gsq import DEFAULT_THRESHOLDS, GRADES
from .metrics import SCORES
from .patient import SCREENING_GRADE, patient_summary  # noqa: F401 - the report's patient summary, by its old name too
from .records import HEIGHT_NAMES, RATIO_NAMES, gsq_fields, keypoint_array


def classify_keypoints(
    keypoints, pixel_spacing: Optional[Sequence[float]] = None, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> List[Dict]:
    """Heights, ratios, reduction, crisp GSQ grade, morphology and shape, and the explanation of each vertebra.

    ``keypoints`` are ``(N, 6, 2)`` (or ``(6, 2)``) in pixels; with ``pixel_spacing`` (row, column
    spacing in mm) the heights are also given in mm. The fields are those of a record's GSQ part
    (:func:`~xvfa_ext.records.gsq_fields`) with the ``keypoints``.
    """
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 6, 2)
    return [dict(keypoints=k.tolist(), **f) for k, f in zip(kps, gsq_fields(kps, pixel_spacing, thresholds))]


# The task the screening flag answers, and the CSV's scores: normal+mild vs moderate+severe.
SCREENING_TASK = "normal_mild_vs_moderate_severe"


def screening_rule(threshold="grade", operating_points: Optional[Dict] = None) -> Dict:
    """How ``screening_positive`` is decided, as the report states it.

    Args:
        threshold: ``"grade"`` (the most likely grade is moderate or worse), ``"youden"`` (the
            Youden points of ``operating_points``, :func:`xvfa_ext.bundle.operating_points`) or a
            number P: a vertebra is positive when its headline screening score is at least P, a
            patient when its worst vertebra's is.
        operating_points: the model's, needed for ``"youden"``.
    """
    if threshold == "grade":
        return {"rule": "grade", "description": "positive where the most likely grade is moderate or severe"}
    score = operating_points["headline"] if operating_points else "sampled_mean"
    if threshold == "youden":
        if not operating_points:
            raise ValueError("--threshold youden needs a model exported with the vfa_metrics.json of an evaluation")
        vertebra = operating_points["vertebra"].get(score, {}).get(SCREENING_TASK)
        patient = operating_points.get("patient", {}).get(score, {}).get(SCREENING_TASK, vertebra)
        if vertebra is None:
            raise ValueError(f"the model's operating points have no {SCREENING_TASK} threshold for {score}")
        return {"rule": "youden", "score": score, "task": SCREENING_TASK, "vertebra": vertebra, "patient": patient,
                "description": f"Youden points of the model's evaluation on its {score} score"}
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be 'grade', 'youden' or a probability, got {threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {value:g}")
    point = {"threshold": value}
    return {"rule": "fixed", "score": score, "task": SCREENING_TASK, "vertebra": point, "patient": point,
            "description": f"{score} score at least {value:g}"}


def vertebra_positive(vertebra: Dict, rule: Optional[Dict] = None) -> bool:
    """Whether one vertebra's record is screening positive under ``rule`` (:func:`screening_rule`)."""
    if rule is None or rule["rule"] == "grade":
        return GRADES.index(vertebra["grade"]) >= SCREENING_GRADE
    return vertebra["screening_scores"][rule["task"]][rule["score"]] >= rule["vertebra"]["threshold"]


CSV_FIELDS = (
    ["image", "index", "level", "level_certain", "score", "grade", "morphology", "shape", "p_normal", "p_mild", "p_moderate"]
    + ["p_severe", "gsq_grade", "gsq_morphology"]
    + ["height_anterior_px", "height_middle_px", "height_posterior_px", "height_anterior_mm", "height_middle_mm"]
    + ["height_posterior_mm", "APR", "MPR", "MAR", "reduction", "mean_eps_px"]
    + [f"score_{name}" for name in SCORES]
    + ["explanation"]
)


def csv_row(image: str, vertebra: Dict) -> Dict:
    """One vertebra as a CSV row (heights in mm empty where the pixel spacing is unknown; the model's
    probabilities, score and interval empty for a vertebra a reader added)."""
    p = vertebra.get("grade_probabilities", {}).get("combined")
    mm = vertebra.get("heights_mm", {})
    keypoints = next(iter(vertebra["keypoints"].values()))
    scores = vertebra.get("screening_scores", {}).get(SCREENING_TASK, {})
    return {
        "image": image,
        "index": vertebra["index"],
        "level": vertebra["level"] or "",
        "level_certain": int(vertebra.get("level_certain", False)),
        "score": round(vertebra["score"], 6) if "score" in vertebra else "",
        "grade": vertebra["grade"],
        "morphology": vertebra["morphology"],
        "shape": vertebra["shape"],
        **{f"p_{g}": round(p[g], 6) if p else "" for g in GRADES},
        "gsq_grade": vertebra["gsq_grade"],
        "gsq_morphology": vertebra["gsq_morphology"],
        **{f"height_{name}_px": round(vertebra["heights_px"][name], 3) for name, _ in HEIGHT_NAMES},
        **{f"height_{name}_mm": round(mm[name], 3) if name in mm else "" for name, _ in HEIGHT_NAMES},
        **{name: round(vertebra["ratios"][name], 4) for name, _ in RATIO_NAMES},
        "reduction": round(vertebra["reduction"], 4),
        "mean_eps_px": round(float(keypoint_array(vertebra, "eps_px").mean()), 3) if "eps_px" in keypoints else "",
        **{f"score_{name}": round(scores[name], 6) if name in scores else "" for name in SCORES},
        "explanation": vertebra["explanation"],
    }


# A re-graded report's rows (xvfa_ext.regrade): grade, morphology and shape are the reader's; the
# model's grade, where the reader's came from, and an override's reason and reader follow.
REVIEWED_CSV_FIELDS = CSV_FIELDS + ["model_grade", "grade_source", "override_reason", "override_reader"]


def reviewed_csv_row(image: str, vertebra: Dict) -> Dict:
    """One re-graded vertebra as a row of :data:`REVIEWED_CSV_FIELDS`."""
    model = vertebra.get("model") or {}
    override = vertebra.get("override") or {}
    return {
        **csv_row(image, vertebra),
        "model_grade": model.get("grade", ""),
        "grade_source": vertebra.get("grade_source", ""),
        "override_reason": override.get("reason", ""),
        "override_reader": override.get("reader", ""),
    }
