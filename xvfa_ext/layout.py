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
