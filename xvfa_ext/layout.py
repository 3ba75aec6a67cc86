"""Vertebra annotation layout shared by every part of the package.

Six keypoints per vertebra in the order of ``shared/spec/GSQ.md``: the upper endplate from posterior
to anterior, then the lower endplate in the same order.
"""

KEYPOINT_NAMES = (
    "upper_posterior",
    "upper_middle",
    "upper_anterior",
    "lower_posterior",
    "lower_middle",
    "lower_anterior",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# Endplates and the three heights (posterior, middle, anterior), as pairs of keypoint indices.
ENDPLATES = ((0, 1), (1, 2), (3, 4), (4, 5))
HEIGHTS = ((0, 3), (1, 4), (2, 5))
SKELETON = ENDPLATES + HEIGHTS

# The thoracic and lumbar levels annotated in the cohort, cranial to caudal.
VERTEBRA_LEVELS = ("T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4")

# Vertebral regions in cranial-to-caudal order, for level names such as C7, T1, T12, L5 or S1.
_REGIONS = "CTLS"


def level_key(level: str):
    """Sort key placing recognised level names (C1-C7, T1-T12, L1-L6, S1-S5) cranial to caudal, else None."""
    name = str(level).strip().upper()
    if len(name) >= 2 and name[0] in _REGIONS and name[1:].isdigit():
        return (_REGIONS.index(name[0]), int(name[1:]))
    return None


def order_levels(levels, mean_y=None):
    """The distinct ``levels`` cranial to caudal: anatomically where every name is recognised,
    else by ``mean_y`` (level -> mean image row of its vertebrae, cranial at the top)."""
    distinct = list(dict.fromkeys(str(v) for v in levels))
    if all(level_key(v) is not None for v in distinct):
        return sorted(distinct, key=level_key)
    if mean_y is None:
        raise ValueError(f"levels {distinct} are not all of the form C7, T12, L1: their order needs positions")
    return sorted(distinct, key=lambda v: mean_y[v])
