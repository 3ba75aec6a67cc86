"""What a reader sees per vertebra and per patient: morphometry, GSQ classes and explanations.

:func:`classify_keypoints` re-grades keypoints, for example after a reader moved a point; the
report helpers give the JSON and CSV rows of ``tools/predict.py``.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .gsq import DEFAULT_THRESHOLDS, GRADES, INVALID, MORPHOLOGIES, classify, explain, morphometry
from .layout import KEYPOINT_NAMES
from .metrics import GRADE_TASKS, SCORES, grade_scores, reduction_scores

SCREENING_GRADE = 2  # moderate or worse is flagged, as the paper groups normal+mild vs moderate+severe
_HEIGHTS = (("anterior", "ha"), ("middle", "hm"), ("posterior", "hp"))
_RATIOS = (("APR", "apr"), ("MPR", "mpr"), ("MAR", "mar"))


def _name(names: Sequence[str], index: int) -> str:
    return names[index] if index != INVALID else "invalid"


def classify_keypoints(
    keypoints, pixel_spacing: Optional[Sequence[float]] = None, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> List[Dict]:
    """Heights, ratios, reduction, GSQ grade and morphology and the explanation of each vertebra.

    ``keypoints`` are ``(N, 6, 2)`` (or ``(6, 2)``) in pixels; with ``pixel_spacing`` (row, column
    spacing in mm) the heights are also given in mm.
    """
    kps = torch.as_tensor(np.asarray(keypoints, dtype=np.float64))
    if kps.dim() == 2:
        kps = kps[None]
    m = morphometry(kps)
    grade, morphology = classify(kps, thresholds)
    sentences = explain(kps, thresholds)
    out = []
    for i in range(len(kps)):
        row = {
            "keypoints": kps[i].tolist(),
            "heights_px": {name: float(m[key][i]) for name, key in _HEIGHTS},
            "ratios": {name: float(m[key][i]) for name, key in _RATIOS},
            "reduction": float(m["reduction"][i]),
            "valid": bool(m["valid"][i]),
            "grade": _name(GRADES, int(grade[i])),
            "morphology": _name(MORPHOLOGIES, int(morphology[i])),
            "explanation": sentences[i],
        }
        if pixel_spacing is not None:
            row["heights_mm"] = _heights_mm(kps[i], pixel_spacing)
        out.append(row)
    return out


def _heights_mm(kps: torch.Tensor, pixel_spacing: Sequence[float]) -> Dict[str, float]:
    """Heights in mm: x scales with the column spacing, y with the row spacing."""
    row_mm, col_mm = (float(v) for v in pixel_spacing)
    scaled = kps * kps.new_tensor([col_mm, row_mm])
    m = morphometry(scaled)
    return {name: float(m[key]) for name, key in _HEIGHTS}


def _probs(names: Sequence[str], values) -> Dict[str, float]:
    return {name: round(float(v), 6) for name, v in zip(names, values)}


def vertebra_report(
    index: int,
    box: Sequence[float],
    score: float,
    keypoints: np.ndarray,
    eps: np.ndarray,
    probabilities: Dict[str, Dict[str, np.ndarray]],
    pixel_spacing: Optional[Sequence[float]] = None,
    level: Optional[str] = None,
    level_certain: bool = False,
) -> Dict:
    """One predicted vertebra as the JSON report holds it.

    ``probabilities`` maps ``grade`` and ``morphology`` to arrays named ``combined``, ``keypoints``,
    ``image``, ``sampled_mean`` and ``sampled_std``. ``screening_scores`` holds, per screening
    task, the three scores the evaluator ranks vertebrae by (:data:`~xvfa_ext.metrics.SCORES`).
    """
    gsq = classify_keypoints(keypoints, pixel_spacing)[0]
    per_score = {
        "sampled_mean": grade_scores(probabilities["grade"]["sampled_mean"][None]),
        "combined": grade_scores(probabilities["grade"]["combined"][None]),
        "reduction": reduction_scores([gsq["reduction"]]),
    }
    grade = probabilities["grade"]["combined"]
    morphology = probabilities["morphology"]["combined"]
    report = {
        "index": index,
        "level": level,
        "level_certain": bool(level is not None and level_certain),
        "box": [round(float(v), 2) for v in box],
        "score": round(float(score), 6),
        "keypoints": {
            name: {"x": round(float(x), 2), "y": round(float(y), 2), "eps_px": round(float(e), 3)}
            for name, (x, y), e in zip(KEYPOINT_NAMES, keypoints, eps)
        },
        "heights_px": gsq["heights_px"],
        "ratios": gsq["ratios"],
        "reduction": gsq["reduction"],
        "grade": GRADES[int(np.argmax(grade))],
        "morphology": MORPHOLOGIES[int(np.argmax(morphology))],
        "grade_probabilities": {k: _probs(GRADES, v) for k, v in probabilities["grade"].items()},
        "morphology_probabilities": {k: _probs(MORPHOLOGIES, v) for k, v in probabilities["morphology"].items()},
        "screening_scores": {
            task: {name: round(float(per_score[name][task][0]), 6) for name in SCORES} for task in GRADE_TASKS
        },
        "explanation": gsq["explanation"],
    }
    if "heights_mm" in gsq:
        report["heights_mm"] = gsq["heights_mm"]
    return report


def patient_summary(vertebrae: List[Dict]) -> Dict:
    """The worst grade, the count of moderate and severe vertebrae, and the screening flag."""
    grades = [GRADES.index(v["grade"]) for v in vertebrae]
    worst = max(grades, default=0)
    return {
        "vertebrae": len(vertebrae),
        "worst_grade": GRADES[worst],
        "moderate_or_severe": sum(g >= SCREENING_GRADE for g in grades),
        "screening_positive": worst >= SCREENING_GRADE,
    }


CSV_FIELDS = (
    ["image", "index", "level", "level_certain", "score", "grade", "morphology", "p_normal", "p_mild", "p_moderate", "p_severe"]
    + ["height_anterior_px", "height_middle_px", "height_posterior_px", "height_anterior_mm", "height_middle_mm"]
    + ["height_posterior_mm", "APR", "MPR", "MAR", "reduction", "mean_eps_px"]
    + [f"score_{name}" for name in SCORES]
    + ["explanation"]
)
# The CSV's scores are those of the screening flag's task.
_CSV_TASK = "normal_mild_vs_moderate_severe"


def csv_row(image: str, vertebra: Dict) -> Dict:
    """One vertebra as a CSV row (heights in mm empty where the pixel spacing is unknown)."""
    p = vertebra["grade_probabilities"]["combined"]
    mm = vertebra.get("heights_mm", {})
    return {
        "image": image,
        "index": vertebra["index"],
        "level": vertebra["level"] or "",
        "level_certain": int(vertebra.get("level_certain", False)),
        "score": vertebra["score"],
        "grade": vertebra["grade"],
        "morphology": vertebra["morphology"],
        **{f"p_{g}": p[g] for g in GRADES},
        **{f"height_{name}_px": round(vertebra["heights_px"][name], 3) for name, _ in _HEIGHTS},
        **{f"height_{name}_mm": round(mm[name], 3) if name in mm else "" for name, _ in _HEIGHTS},
        **{name: round(vertebra["ratios"][name], 4) for name, _ in _RATIOS},
        "reduction": round(vertebra["reduction"], 4),
        "mean_eps_px": round(float(np.mean([k["eps_px"] for k in vertebra["keypoints"].values()])), 3),
        **{f"score_{name}": value for name, value in vertebra["screening_scores"][_CSV_TASK].items()},
        "explanation": vertebra["explanation"],
    }
