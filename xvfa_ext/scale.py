"""Image scale in vertebra units: how large a dataset's vertebrae are, and the resize that brings
them to the size a model was built for.

A dataset records the median posterior height of its vertebrae in pixels (``vertebra_height_px`` in
its COCO ``info``; :func:`median_vertebra_height`). The detector sees every film resized so that this
median vertebra is ``detector_height`` pixels tall, whatever the film's size; the fine stage crops
from the film resized so that it is at most ``fine_height`` pixels tall (never enlarged), which
keeps the crops the same for a film and a larger copy of it (:func:`resize_factors`).
"""

from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

import numpy as np

INFO_KEY = "vertebra_height_px"
# The detector's resize factors are multiples of this.
FACTOR_STEP = 1 / 64


def posterior_heights(annotations: Iterable[dict]) -> np.ndarray:
    """Posterior heights ``|upper_posterior - lower_posterior|`` in pixels of the COCO vertebra
    annotations whose two posterior points are both read (visibility > 0)."""
    heights = []
    for a in annotations:
        points = np.asarray(a.get("keypoints", ()), dtype=np.float64).reshape(-1, 3)
        if len(points) < 4 or points[0, 2] <= 0 or points[3, 2] <= 0:
            continue
        h = float(np.linalg.norm(points[0, :2] - points[3, :2]))
        if np.isfinite(h) and h > 0:
            heights.append(h)
    return np.asarray(heights)


def median_vertebra_height(annotations: Iterable[dict]) -> Optional[float]:
    """The median posterior height in pixels, rounded to 0.01; None without a read vertebra."""
    heights = posterior_heights(annotations)
    return round(float(np.median(heights)), 2) if len(heights) else None


@dataclass(frozen=True)
class ImageScale:
    """The two resize factors of one film: ``fine`` (full resolution to the image the keypoint crops
    come from, at most 1) and ``detector`` (full resolution to the detector's input)."""

    fine: float
    detector: float


def check_height(value, what: str) -> float:
    """``value`` as a positive finite number of pixels, or a ValueError naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of pixels, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a positive number of pixels, got {value!r}")
    return number


def resize_factors(
    image_size: Tuple[int, int],
    vertebra_height: float,
    detector_height: float,
    fine_height: Optional[float] = None,
    max_size: Optional[int] = None,
    step: float = FACTOR_STEP,
) -> ImageScale:
    """The resize factors of an ``image_size`` (height, width) film whose median vertebra is
    ``vertebra_height`` pixels tall.

    The detector's factor brings that vertebra to ``detector_height`` pixels, rounded to a multiple
    of ``step`` (so that datasets whose median vertebrae differ by a fraction of a pixel see their
    films at the same size; 0 for no rounding) and bounded so that the detector's input has no side
    longer than ``max_size``. The fine factor brings the vertebra to at most ``fine_height`` pixels
    (1 where it is smaller already, or where ``fine_height`` is None).
    """
    vertebra_height = check_height(vertebra_height, "the vertebra height")
    detector = check_height(detector_height, "the detector's vertebra height") / vertebra_height
    if step:
        detector = max(step, round(detector / step) * step)
    if max_size is not None:
        detector = min(detector, check_height(max_size, "max_size") / max(image_size))
    fine = 1.0
    if fine_height is not None:
        fine = min(1.0, check_height(fine_height, "the fine stage's vertebra height") / vertebra_height)
    return ImageScale(fine=fine, detector=detector)


def write_scaled_film(record: dict, factor: float, path) -> dict:
    """A copy of a detectron2 dataset dict's film resized by ``factor`` (bicubic, same bit depth),
    written to ``path``, and the dict for it with its size, boxes and keypoints scaled alike."""
    import copy

    import cv2

    image = cv2.imread(str(record["file_name"]), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{record['file_name']}: cannot decode the image")
    if not cv2.imwrite(str(path), cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)):
        raise ValueError(f"{path}: cannot write the scaled film")
    scaled = copy.deepcopy(record)
    scaled.update(file_name=str(path), height=round(factor * record["height"]), width=round(factor * record["width"]))
    for a in scaled.get("annotations", []):
        a["bbox"] = [factor * v for v in a["bbox"]]
        a["keypoints"] = [v if k % 3 == 2 else factor * v for k, v in enumerate(a["keypoints"])]
    return scaled
