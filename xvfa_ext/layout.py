"""Vertebra annotation layout shared by every part of the package.

Six keypoints per vertebra in the order of ``docs/gsq.md``: the upper endplate from posterior
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
# Genant's grades and the morphologies of docs/gsq.md, by index.
GRADES = ("normal", "mild", "moderate", "severe")
MORPHOLOGIES = ("normal", "wedge-like", "concave")
# Spreadsheet columns of a vertebra's points: upper_posterior_x, upper_posterior_y, ... lower_anterior_y.
COORDINATE_COLUMNS = tuple(f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in ("x", "y"))

# Endplates and the three heights (posterior, middle, anterior), as pairs of keypoint indices.
ENDPLATES = ((0, 1), (1, 2), (3, 4), (4, 5))
HEIGHTS = ((0, 3), (1, 4), (2, 5))
SKELETON = ENDPLATES + HEIGHTS

# How a horizontal flip relabels keypoints, by view. A lateral film flipped is the view from the
# patient's other side: anterior stays anterior, no label changes. On a frontal (AP) film posterior
# and anterior name the two sides of the image, so a flip swaps them.
FLIP_PAIRS = {
    "lateral": (),
    "frontal": (("upper_posterior", "upper_anterior"), ("lower_posterior", "lower_anterior")),
}


def flip_indices(view: str):
    """Per keypoint, the index of the keypoint it becomes after a horizontal flip of a ``view`` film."""
    if view not in FLIP_PAIRS:
        raise ValueError(f"view must be one of {sorted(FLIP_PAIRS)}, got {view!r}")
    index = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS[view]:
        i, j = KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)
        index[i], index[j] = j, i
    return index


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


def level_positions(records) -> dict:
    """Each level's median vertical position (box centre over image height) in detectron2 dataset dicts."""
    rows = {}
    for r in records:
        for a in r.get("annotations", []):
            if a.get("level") is None:
                continue
            x, y, w, h = a["bbox"][:4]  # XYWH, as the vertebra files store boxes
            rows.setdefault(str(a["level"]), []).append((y + h / 2) / r["height"])
    return {level: float(sorted(v)[len(v) // 2]) for level, v in rows.items()}


def assign_levels(y_centres, image_height: float, levels, positions=None):
    """Levels for vertebrae given cranial to caudal, anchored by where each level usually lies.

    ``levels`` are the dataset's levels, cranial to caudal; ``positions`` maps each to its usual
    vertical position as a fraction of the image height (:func:`level_positions`). The run of found
    vertebrae is slid along the levels (or the levels along a longer run) to the offset that fits
    those positions best in least squares. An assignment is certain when the fit's root mean square
    error is under a quarter of the usual spacing between neighbouring levels, so that the next
    offset fits clearly worse; vertebrae beyond the levels get none.
    Without positions, levels are given only when as many vertebrae as levels were found.

    Returns ``(level or None per vertebra, certain per vertebra)``.
    """
    n, m = len(y_centres), len(levels)
    if n == 0 or m == 0:
        return [None] * n, [False] * n
    if not positions or any(lv not in positions for lv in levels):
        if n == m:
            return list(levels), [True] * n
        return [None] * n, [False] * n
    y = [float(v) / image_height for v in y_centres]
    p = [positions[lv] for lv in levels]
    spacing = sorted(b - a for a, b in zip(p, p[1:]))[(m - 1) // 2] if m > 1 else 1.0
    if n <= m:
        fits = [(sum((y[i] - p[s + i]) ** 2 for i in range(n)) / n, s, 0) for s in range(m - n + 1)]
    else:
        fits = [(sum((y[t + j] - p[j]) ** 2 for j in range(m)) / m, 0, t) for t in range(n - m + 1)]
    cost, s, t = min(fits)
    certain = cost ** 0.5 < spacing / 4
    out, sure = [None] * n, [False] * n
    for i in range(n):
        j = s + i - t
        if 0 <= j < m and (n <= m or t <= i < t + m):
            out[i], sure[i] = levels[j], certain
    return out, sure


def levels_by_position(boxes, image_height: float, metadata=None):
    """Levels of XYXY ``boxes`` (any order) and whether each is certain (:func:`layout.assign_levels`).

    The dataset's levels and their usual positions come from ``metadata`` (``levels``,
    ``level_positions``, see ``xvfa_ext.data.dataset_levels``); without them, T4-L4 when thirteen
    vertebrae were found.
    """
    import numpy as np

    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    centres = (boxes[:, 1] + boxes[:, 3]) / 2
    order = np.argsort(centres, kind="stable")
    names = metadata.get("levels", None) if metadata is not None else None
    positions = metadata.get("level_positions", None) if metadata is not None else None
    assigned, certain = assign_levels(centres[order], image_height, names or VERTEBRA_LEVELS, positions)
    levels = [None] * len(boxes)
    sure = [False] * len(boxes)
    for rank, i in enumerate(order):
        levels[i], sure[i] = assigned[rank], certain[rank]
    return levels, sure


def read_points(annotation: dict):
    """The ``(6, 2)`` points of a COCO vertebra annotation that a reader measured, or None for an
    imputed vertebra or one without all six points visible. A wrong number of values is an error."""
    import numpy as np

    points = np.asarray(annotation["keypoints"], dtype=float).reshape(-1, 3)
    if len(points) != NUM_KEYPOINTS:
        raise ValueError(f"annotation {annotation.get('id')}: {3 * len(points)} keypoint values, expected {3 * NUM_KEYPOINTS}")
    if annotation.get("imputed", False) or not (points[:, 2] > 0).all():
        return None
    return points[:, :2]
