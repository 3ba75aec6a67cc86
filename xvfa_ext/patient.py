"""A patient's summary of its vertebrae's grades: worst grade, count of moderate and severe, and the
screening flag. It needs no torch, so that a worklist of many films is summed up quickly."""

from typing import Dict, List, Optional

from .layout import GRADES

SCREENING_GRADE = 2  # moderate or worse is flagged, as the paper groups normal+mild vs moderate+severe


def patient_summary(vertebrae: List[Dict], rule: Optional[Dict] = None) -> Dict:
    """The worst grade, the count of moderate and severe vertebrae, and the screening flag under
    ``rule`` (:func:`xvfa_ext.reports.screening_rule`; by default the most likely grade). No vertebra found: normal."""
    grades = [GRADES.index(v["grade"]) for v in vertebrae]
    worst = max(grades, default=0)
    if rule is None or rule["rule"] == "grade":
        positive = worst >= SCREENING_GRADE
    else:
        score = max((v["screening_scores"][rule["task"]][rule["score"]] for v in vertebrae), default=0.0)
        positive = score >= rule["patient"]["threshold"]
    return {
        "vertebrae": len(vertebrae),
        "worst_grade": GRADES[worst],
        "moderate_or_severe": sum(g >= SCREENING_GRADE for g in grades),
        "screening_positive": bool(positive),
    }


def reviewed_patient_summary(vertebrae: List[Dict]) -> Dict:
    """:func:`patient_summary` of the reader's grades (:func:`xvfa_ext.regrade.regrade`); vertebrae
    without a grade (points that make no vertebra) are counted as ``ungraded``."""
    graded = [v for v in vertebrae if v.get("grade") in GRADES]
    return {**patient_summary(graded), "vertebrae": len(vertebrae), "ungraded": len(vertebrae) - len(graded)}
