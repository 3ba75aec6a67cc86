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


# How assign_levels weighs a film's found vertebrae against the dataset's levels (negative log
# likelihoods; measured on the AASCE training films' detections, README "Levels"): a found box that
# is no annotated vertebra, a level missed between two found ones, a box's distance from its level's
# usual position (in median spacings between neighbouring levels), the log of the ratio of two
# boxes' distance to their levels' usual distance, and the margin by which a box's best level must
# beat its second best to be certain.
FALSE_BOX_COST = 6.0
MISSED_LEVEL_COST = 2.0
POSITION_SIGMA = 0.5
SPACING_SIGMA = 0.2
CERTAIN_MARGIN = 2.0


def assign_levels(y_centres, image_height: float, levels, positions=None):
    """Levels for vertebrae given cranial to caudal, from where each level usually lies.

    ``levels`` are the dataset's levels, cranial to caudal; ``positions`` maps each to its usual
    vertical position as a fraction of the image height (:func:`level_positions`). The found boxes
    are aligned to the levels in order, as a chain: each box either takes a level below its
    predecessor's or is a false box, and levels may be missed between two boxes. The alignment
    minimises, by dynamic programming, the sum of each box's squared distance from its level's usual
    position, each pair of consecutive boxes' squared log ratio of their distance to their levels'
    usual distance (a missed vertebra leaves a gap of two), and the costs of false boxes and missed
    levels (the constants above). A box's level is certain when the best alignment that gives the
    box another level costs ``CERTAIN_MARGIN`` more. Without positions, levels are given only when
    as many vertebrae as levels were found.

    Returns ``(level or None per vertebra, certain per vertebra)``.
    """
    import numpy as np

    n, m = len(y_centres), len(levels)
    if n == 0 or m == 0:
        return [None] * n, [False] * n
    if not positions or any(lv not in positions for lv in levels):
        if n == m:
            return list(levels), [True] * n
        return [None] * n, [False] * n
    y = np.asarray(y_centres, dtype=float) / float(image_height)
    p = np.array([positions[lv] for lv in levels], dtype=float)
    steps = np.diff(p)
    # Usual positions from few or partly annotated films may cross: such a step counts as the median one.
    spacing = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0 / m
    chain = np.concatenate([[0.0], np.cumsum(np.where(steps > 0, steps, spacing))])
    box, level = np.arange(n), np.arange(m)
    unary = 0.5 * ((y[:, None] - p[None, :]) / (POSITION_SIGMA * spacing)) ** 2  # (n, m)
    # Pairwise cost of box i at level l followed by box j at level k: (n, n, m, m), inf where not j > i, k > l.
    distance = np.maximum(y[None, :] - y[:, None], 1e-6)
    after = box[None, :] - box[:, None]  # how many boxes j lies below i
    later = level[None, :] - level[:, None]  # how many levels k lies below l
    usual = np.where(later > 0, chain[None, :] - chain[:, None], 1.0)
    ratio = np.log(distance[:, :, None, None] / usual[None, None])
    pair = (0.5 * (ratio / SPACING_SIGMA) ** 2
            + FALSE_BOX_COST * np.maximum(after - 1, 0)[:, :, None, None]
            + MISSED_LEVEL_COST * np.maximum(later - 1, 0)[None, None])
    allowed = (after > 0)[:, :, None, None] & (later > 0)[None, None]
    pair = np.where(allowed, pair, np.inf)
    # forward[i, l]: the best chain ending with box i at level l (boxes before its first one false),
    # came_from[i, l] its previous box and level, or -1 where box i is the chain's first;
    # backward[i, l]: the best continuation after it (boxes after its last one false), unary excluded.
    forward, backward = np.empty((n, m)), np.empty((n, m))
    came_from = np.full((n, m), -1)
    for j in range(n):
        best = np.full(m, FALSE_BOX_COST * j)
        if j:
            through = (forward[:j, :, None] + pair[:j, j]).reshape(j * m, m)
            previous = through.argmin(axis=0)
            better = through[previous, level] < best
            best = np.where(better, through[previous, level], best)
            came_from[j] = np.where(better, previous, -1)
        forward[j] = unary[j] + best
    for i in range(n - 1, -1, -1):
        best = np.full(m, FALSE_BOX_COST * (n - 1 - i))
        if i < n - 1:
            best = np.minimum(best, (pair[i, i + 1:] + (unary[i + 1:] + backward[i + 1:])[:, None, :]).min(axis=(0, 2)))
        backward[i] = best
    chosen = np.full(n, -1)  # each box's level index on the best alignment, -1 for a false box
    ends = forward + FALSE_BOX_COST * (n - 1 - box)[:, None]
    state = int(ends.argmin()) if ends.min() < FALSE_BOX_COST * n else -1
    while state >= 0:
        chosen[state // m] = state % m
        state = int(came_from[state // m, state % m])
    # A box's level is certain when every alignment that gives it another level costs CERTAIN_MARGIN
    # more than the best one.
    at_level = forward + backward
    others = np.where(level[None, :] == chosen[:, None], np.inf, at_level).min(axis=1)
    sure = (chosen >= 0) & (others - ends.min() > CERTAIN_MARGIN)
    return [levels[k] if k >= 0 else None for k in chosen], sure.tolist()


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
