"""What a reader sees per vertebra and per patient: the JSON and CSV of ``tools/predict.py``.

The vertebrae are :func:`~xvfa_ext.records.vertebra_records`; :func:`classify_keypoints` re-grades
keypoints, for example after a reader moved a point.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

from .gsq import DEFAULT_THRESHOLDS, GRADES
from .metrics import SCORES
from .records import HEIGHT_NAMES, RATIO_NAMES, gsq_fields, keypoint_array

SCREENING_GRADE = 2  # moderate or worse is flagged, as the paper groups normal+mild vs moderate+severe


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
    ["image", "index", "level", "level_certain", "score", "grade", "morphology", "shape", "p_normal", "p_mild", "p_moderate"]
    + ["p_severe", "gsq_grade", "gsq_morphology"]
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
        "score": round(vertebra["score"], 6),
        "grade": vertebra["grade"],
        "morphology": vertebra["morphology"],
        "shape": vertebra["shape"],
        **{f"p_{g}": round(p[g], 6) for g in GRADES},
        "gsq_grade": vertebra["gsq_grade"],
        "gsq_morphology": vertebra["gsq_morphology"],
        **{f"height_{name}_px": round(vertebra["heights_px"][name], 3) for name, _ in HEIGHT_NAMES},
        **{f"height_{name}_mm": round(mm[name], 3) if name in mm else "" for name, _ in HEIGHT_NAMES},
        **{name: round(vertebra["ratios"][name], 4) for name, _ in RATIO_NAMES},
        "reduction": round(vertebra["reduction"], 4),
        "mean_eps_px": round(float(keypoint_array(vertebra, "eps_px").mean()), 3),
        **{f"score_{name}": round(value, 6) for name, value in vertebra["screening_scores"][_CSV_TASK].items()},
        "explanation": vertebra["explanation"],
    }
