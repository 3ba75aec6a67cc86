"""Vertebra crops: boxes to fixed-size crops and keypoints between image and crop coordinates.

Crop coordinates are ``(x - x0) / (x1 - x0)`` and ``(y - y0) / (y1 - y0)``: 0 and 1 at the box edges.
"""

from typing import Optional

import torch
from torchvision.ops import roi_align


def crop_vertebrae(images: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, size: int) -> torch.Tensor:
    """ROIAlign ``size x size`` crops of ``boxes`` (N, 4, XYXY pixels) from ``images`` (B, C, H, W).

    Each output pixel averages ``ceil(box side / size)`` samples per axis (ROIAlign's adaptive
    sampling): one bilinear sample where the crop enlarges the box, an average where it shrinks it.
    """
    rois = torch.cat([batch_index.to(boxes.dtype)[:, None], boxes], dim=1)
    return roi_align(images, rois.to(images.dtype), output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)


def _origin_and_size(boxes: torch.Tensor):
    origin = boxes[:, None, :2]
    size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-6)[:, None, :]
    return origin, size


def to_crop(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Image points ``(N, K, 2)`` to the crop coordinates of their boxes ``(N, 4)``."""
    origin, size = _origin_and_size(boxes)
    return (points - origin) / size


def from_crop(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crop points ``(N, ..., K, 2)`` back to image pixels; scales map with ``size`` alone."""
    origin, size = _origin_and_size(boxes)
    extra = points.dim() - 3
    shape = (points.shape[0],) + (1,) * extra + (1, 2)
    return points * size.reshape(shape) + origin.reshape(shape)


def enlarge_boxes(boxes: torch.Tensor, factor) -> torch.Tensor:
    """Boxes ``(N, 4)`` grown about their centres by ``factor``: a number, or ``(N, 2)`` per box and axis."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return torch.cat([centre - half, centre + half], dim=1)


def boxes_around_points(points: torch.Tensor, padding) -> torch.Tensor:
    """XYXY boxes ``(N, 4)`` around keypoints ``(N, K, 2)``, each side padded by ``padding`` of the
    points' extent on its axis: a number, or ``(N, 2)`` per box and axis."""
    lo, hi = points.min(dim=1).values, points.max(dim=1).values
    pad = (hi - lo) * padding
    return torch.cat([lo - pad, hi + pad], dim=1)


def jitter_boxes(
    boxes: torch.Tensor, max_scale: float = 0.35, max_shift: float = 10.0, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Enlarge each side by up to ``max_scale`` and shift the centre by up to ``max_shift`` pixels.

    Training crops then resemble the detector's imprecise boxes (paper suppl. Table 4).
    """
    n = len(boxes)
    rand = torch.rand(n, 4, generator=generator).to(boxes)
    shift = (2 * rand[:, :2] - 1) * max_shift
    return enlarge_boxes(boxes, 1 + max_scale * rand[:, 2:]) + shift.repeat(1, 2)
