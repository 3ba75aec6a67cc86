"""Genant's semi-quantitative (GSQ) rules: crisp, fuzzy and explained.

``docs/gsq.md`` is the contract; every function here follows it to the letter so that the
labels of the synthetic data, the training losses and the explanations agree.
"""

import math
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from .layout import GRADES, MORPHOLOGIES, NUM_KEYPOINTS  # noqa: F401 - GRADES and MORPHOLOGIES are the rules' too

DEFAULT_THRESHOLDS = (0.20, 0.25, 0.40)
# The fuzzy rules' temperature tau, in units of a height ratio, as the model config uses it: at 0.05
# the GSQ losses' gradient reaches keypoints a few pixels from a threshold, where at 0.01 it is a
# spike that knocks the keypoints off while they learn. Crisp grades do not depend on it.
DEFAULT_TEMPERATURE = 0.05
INVALID = -1

# Reductions are compared in float64; one within this distance of a threshold counts as on it, so
# that heights 8 and 10 (a reduction of 0.19999999999999996 in floating point) are mild, as 20% is.
_ON_THRESHOLD = 1e-9
_HEIGHT_NAMES = {"ha": "anterior", "hm": "middle", "hp": "posterior"}


def _as_keypoints(keypoints) -> torch.Tensor:
    kps = torch.as_tensor(keypoints)
    if kps.dim() < 2 or tuple(kps.shape[-2:]) != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must be shaped (..., {NUM_KEYPOINTS}, 2), got {tuple(kps.shape)}")
    return kps if kps.is_floating_point() else kps.double()


def _heights(kps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    def dist(i, j):
        return torch.linalg.vector_norm(kps[..., i, :] - kps[..., j, :], dim=-1)

    return dist(2, 5), dist(1, 4), dist(0, 3)  # ha, hm, hp


def _valid(ha, hm, hp) -> torch.Tensor:
    heights = torch.stack([ha, hm, hp], dim=-1)
    return (torch.isfinite(heights) & (heights > 0)).all(dim=-1)


def _safe_keypoints(kps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace invalid vertebrae by a unit square so that values and gradients stay finite."""
    with torch.no_grad():
        valid = _valid(*_heights(kps))
    square = kps.new_tensor([[0, 0], [0.5, 0], [1, 0], [0, 1], [0.5, 1], [1, 1]])
    return torch.where(valid[..., None, None], kps, square), valid


def _measure(kps: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Morphometry of vertebrae whose heights are all positive and finite."""
    ha, hm, hp = _heights(kps)
    href = torch.maximum(ha, hp)
    hmin = torch.minimum(torch.minimum(ha, hm), hp)
    return {
        "ha": ha,
        "hm": hm,
        "hp": hp,
        "apr": ha / hp,
        "mpr": hm / hp,
        "mar": hm / ha,
        "reduction": 1 - hmin / href,
    }


def morphometry(keypoints) -> Dict[str, torch.Tensor]:
    """Heights, ratios and height reduction of vertebrae shaped ``(..., 6, 2)``.

    Returns ``ha, hm, hp, apr, mpr, mar, reduction`` and ``valid``. An invalid vertebra (a zero or
    non-finite height) keeps its finite heights, has 0 for non-finite heights, ratios and reduction,
    and ``valid`` False: never a NaN.
    """
    kps = _as_keypoints(keypoints)
    safe, valid = _safe_keypoints(kps)
    measured = _measure(safe)
    raw_heights = dict(zip(("ha", "hm", "hp"), _heights(kps)))
    out = {}
    for key, value in measured.items():
        if key in raw_heights:
            raw = raw_heights[key]
            out[key] = torch.where(torch.isfinite(raw), raw, torch.zeros_like(raw))
        else:
            out[key] = torch.where(valid, value, torch.zeros_like(value))
    out["valid"] = valid
    return out


def _check_thresholds(thresholds: Sequence[float]) -> Tuple[float, float, float]:
    t = tuple(float(v) for v in thresholds)
    if len(t) != 3 or not (0 < t[0] < t[1] < t[2] < 1):
        raise ValueError(f"GSQ thresholds must be three increasing numbers in (0, 1), got {thresholds}")
    return t


def _crisp(m: Dict[str, torch.Tensor], t: Tuple[float, float, float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crisp ``(grade, morphology)`` of a :func:`morphometry` result; -1 in both where it is invalid."""
    d = m["reduction"]
    grade = sum((d >= ti - _ON_THRESHOLD).long() for ti in t)
    concave = (m["mpr"] < 1) & (m["mar"] < 1)
    morphology = torch.where(grade == 0, 0, torch.where(concave, 2, 1))
    invalid = torch.full_like(grade, INVALID)
    return torch.where(m["valid"], grade, invalid), torch.where(m["valid"], morphology, invalid)


def classify(keypoints, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crisp GSQ ``(grade, morphology)`` as int64 tensors; -1 in both for an invalid vertebra."""
    t = _check_thresholds(thresholds)
    return _crisp(morphometry(_as_keypoints(keypoints).double()), t)


def shape_word(morphology: int, ha: float, hp: float) -> str:
    """'concave', 'wedge' (anterior height the lower) or 'crush' for a wedge-like morphology, '' for
    a normal (or invalid) one: the word that the explanation and the Visualizer's label use."""
    if morphology == 2:
        return "concave"
    if morphology == 1:
        return "wedge" if ha < hp else "crush"
    return ""


class FuzzyGSQ(nn.Module):
    """Differentiable GSQ: sigmoids for comparisons, min/max/1-x for AND/OR/NOT.

    ``forward(keypoints)`` returns ``(grade_probs (..., 4), morphology_probs (..., 3))``, memberships
    normalised to sum to one. Invalid vertebrae get uniform rows and no gradient; the losses skip
    them by the mask of :func:`classify`.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        temperature: float = DEFAULT_TEMPERATURE,
        trainable: bool = False,
    ):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        t = torch.tensor(_check_thresholds(thresholds), dtype=torch.float32)
        log_tau = torch.tensor(math.log(temperature), dtype=torch.float32)
        if trainable:
            self.thresholds = nn.Parameter(t)
            self.log_temperature = nn.Parameter(log_tau)
        else:
            self.register_buffer("thresholds", t)
            self.register_buffer("log_temperature", log_tau)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def _greater(self, x: torch.Tensor, threshold) -> torch.Tensor:
        return torch.sigmoid((x - threshold) / self.temperature)

    def forward(self, keypoints) -> Tuple[torch.Tensor, torch.Tensor]:
        kps = _as_keypoints(keypoints).to(self.thresholds.dtype)
        safe, valid = _safe_keypoints(kps)
        m = _measure(safe)
        r = 1 - m["reduction"]
        t1, t2, t3 = self.thresholds
        normal = self._greater(r, 1 - t1)
        mild = torch.minimum(1 - normal, self._greater(r, 1 - t2))
        not_normal_or_mild = torch.minimum(1 - normal, 1 - mild)
        moderate = torch.minimum(not_normal_or_mild, self._greater(r, 1 - t3))
        severe = torch.minimum(not_normal_or_mild, 1 - moderate)
        grade = torch.stack([normal, mild, moderate, severe], dim=-1)

        concave = torch.minimum(self._greater(1, m["mpr"]), self._greater(1, m["mar"]))
        wedge = torch.minimum(1 - concave, self._greater(1, m["apr"]))
        crush = torch.minimum(1 - concave, self._greater(m["apr"], 1))
        fracture = 1 - normal
        morphology = torch.stack(
            [normal, torch.minimum(fracture, torch.maximum(wedge, crush)), torch.minimum(fracture, concave)],
            dim=-1,
        )
        return _normalise(grade, valid), _normalise(morphology, valid)


def _normalise(memberships: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    probs = memberships / memberships.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    uniform = torch.full_like(probs, 1.0 / probs.shape[-1])
    return torch.where(valid[..., None], probs, uniform)


def _pct_in_band(x: float, grade: int, t: Tuple[float, float, float]) -> str:
    """``x`` as a percentage with one decimal that never reads as another grade's band: rounded,
    then kept inside the grade's band, so that a reduction of 0.1999 is '19.9%', not the '20%'
    that starts the mild band."""
    lo = 0.0 if grade == 0 else 100 * t[grade - 1]
    hi = 100 * t[grade] if grade < len(t) else math.inf
    value = round(100 * x, 1)
    return f"{min(max(value, lo), hi - 0.1):.1f}%"


def _explain_one(m: Dict[str, float], grade: int, morphology: int, t: Tuple[float, float, float]) -> str:
    heights = {k: m[k] for k in ("ha", "hm", "hp")}
    if grade == INVALID:
        bad = [f"{_HEIGHT_NAMES[k]} height {v:g}" for k, v in heights.items() if not v > 0]
        return f"invalid: {', '.join(bad)}; no morphometry"
    ref = "ha" if m["ha"] >= m["hp"] else "hp"
    shape = shape_word(morphology, m["ha"], m["hp"])
    if shape == "concave":
        reduced = "hm"
    elif shape:
        reduced, ref = ("ha", "hp") if shape == "wedge" else ("hp", "ha")
    else:
        reduced = min((k for k in heights if k != ref), key=heights.get)
    lo, mid, hi = (f"{100 * ti:g}" for ti in t)
    bands = [f"below {lo}%", f"{lo}-{mid}%", f"{mid}-{hi}%", f"{hi}% or more"]
    label = GRADES[grade] + (f" {shape}" if shape else "")
    ratio = m[reduced] / m[ref]
    return (
        f"{label}: {_HEIGHT_NAMES[reduced]} height {ratio:.2f} of {_HEIGHT_NAMES[ref]} "
        f"({_pct_in_band(m['reduction'], grade, t)} reduction; {bands[grade]} is {GRADES[grade]}); "
        f"heights anterior {m['ha']:.1f} px, middle {m['hm']:.1f} px, posterior {m['hp']:.1f} px; "
        f"APR {m['apr']:.2f}, MPR {m['mpr']:.2f}, MAR {m['mar']:.2f}"
    )


def assess(keypoints, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> Dict:
    """Everything GSQ says of vertebrae shaped ``(N, 6, 2)``, from one :func:`morphometry`.

    Returns the morphometry's tensors (``ha, hm, hp, apr, mpr, mar, reduction, valid``, each ``(N,)``),
    the crisp ``grade`` and ``morphology`` (int64 ``(N,)``, -1 where invalid), and per vertebra its
    ``shape`` word (:func:`shape_word`) and ``explanation`` sentence (lists of N strings).
    """
    t = _check_thresholds(thresholds)
    kps = _as_keypoints(keypoints).double()
    if kps.dim() != 3:
        raise ValueError(f"keypoints must be shaped (N, {NUM_KEYPOINTS}, 2), got {tuple(kps.shape)}")
    m = morphometry(kps)
    grade, morphology = _crisp(m, t)
    values = {k: v.tolist() for k, v in m.items() if k != "valid"}
    g, mo = grade.tolist(), morphology.tolist()
    rows = [{k: v[i] for k, v in values.items()} for i in range(len(g))]
    return dict(
        m,
        grade=grade,
        morphology=morphology,
        shape=[shape_word(mo[i], r["ha"], r["hp"]) for i, r in enumerate(rows)],
        explanation=[_explain_one(r, g[i], mo[i], t) for i, r in enumerate(rows)],
    )
