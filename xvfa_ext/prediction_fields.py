"""The fields of a model's prediction: one definition of their names, shapes and coordinate frame.

``VertebraROIHead`` fills them, the XVFA model moves them to the radiograph's pixels, the ensemble
combines them, and :func:`~xvfa_ext.records.vertebra_records` reads them: all four go by this list.
Shapes are per image, for N vertebrae, 6 keypoints and L coverage levels
(:data:`~xvfa_ext.uncertainty.COVERAGE_LEVELS`).
"""

from dataclasses import dataclass
from typing import Dict, Tuple

from .gsq import GRADES, MORPHOLOGIES


@dataclass(frozen=True)
class PredictionField:
    """One field: ``frame`` says how it moves when the image is resized by (sx, sy):

    - ``box`` and ``points``: x with sx and y with sy (detectron2's ``detector_postprocess`` does it);
    - ``axes``: a length per axis ``(..., 2)``, x with sx and y with sy;
    - ``length``: a radius, with the mean of sx and sy;
    - ``none``: no pixels (scores, classes, probabilities).

    ``combine`` says what an ensemble does with the field: ``lead`` keeps the first model's (every
    model ran on its boxes), ``mean`` averages the models'.
    """

    name: str
    shape: str
    frame: str
    combine: str
    description: str


# The probabilities per task: eq. 7's combined, its two factors, and the mean and std of the
# combined probability over keypoint samples (paper section 3.5); suffix of the field name by kind.
PROBABILITY_FIELDS = {"combined": "", "keypoints": "_kps", "image": "_img", "sampled_mean": "_mean", "sampled_std": "_std"}
CLASSES = {"grade": GRADES, "morphology": MORPHOLOGIES}

FIELDS: Tuple[PredictionField, ...] = (
    PredictionField("pred_boxes", "(N, 4)", "box", "lead", "XYXY box the crop was taken from"),
    PredictionField("scores", "(N,)", "none", "lead", "detection score (1 for a given box)"),
    PredictionField("pred_classes", "(N,)", "none", "lead", "class: 0, vertebra"),
    PredictionField("pred_keypoints", "(N, 6, 3)", "points", "mean", "mean keypoints x, y, and the detection score"),
    PredictionField("pred_keypoint_scale", "(N, 6, 2)", "axes", "mean", "RLE scale of each keypoint per axis, px"),
    PredictionField("pred_keypoint_eps", "(N, 6)", "length", "mean", "interval radius at the model's alpha, px"),
    PredictionField("pred_keypoint_eps_levels", "(N, 6, L)", "length", "mean", "interval radius at each coverage level, px"),
) + tuple(
    PredictionField(f"{task}_probs{suffix}", f"(N, {len(classes)})", "none", "mean", f"{task} probabilities: {kind}")
    for task, classes in CLASSES.items()
    for kind, suffix in PROBABILITY_FIELDS.items()
)

# What only an ensemble (xvfa_ext.ensemble) adds: the spread between its models.
ENSEMBLE_FIELDS: Tuple[PredictionField, ...] = (
    PredictionField("pred_keypoint_epistemic", "(N, 6)", "length", "lead",
                    "root-mean-square distance of the models' keypoints from their mean, px"),
) + tuple(
    PredictionField(f"{task}_probs_members_std", f"(N, {len(classes)})", "none", "lead",
                    f"standard deviation over models of the sampled-mean {task} probabilities")
    for task, classes in CLASSES.items()
)

BY_NAME: Dict[str, PredictionField] = {f.name: f for f in FIELDS + ENSEMBLE_FIELDS}
# The fields the fine stage computes per vertebra (the box, score and class come with the box).
HEAD_FIELDS = tuple(f.name for f in FIELDS if f.combine != "lead")


def rescale_field(name: str, value, sx: float, sy: float):
    """``value`` of field ``name`` after a resize by (sx, sy); boxes and points are left to
    detectron2's ``detector_postprocess``."""
    frame = BY_NAME[name].frame
    if frame == "axes":
        return value * value.new_tensor([sx, sy])
    if frame == "length":
        return value * (sx + sy) / 2  # a non-uniform resize has no single factor: the mean
    return value
