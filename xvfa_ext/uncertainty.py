"""Keypoint intervals from the learned density (eq. 6), propagated by sampling to GSQ classes."""

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .classification import combine_probabilities
from .crops import from_crop
from .gsq import FuzzyGSQ
from .rle import ResidualLogLikelihood

DEFAULT_ALPHA = 0.9
DEFAULT_NUM_SAMPLES = 1000
# Levels at which predictions also carry eps, for coverage-against-alpha plots.
COVERAGE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def interval_radii(samples: torch.Tensor, centre: torch.Tensor, alphas: Sequence[float]) -> torch.Tensor:
    """Radii ``eps`` of the discs around each keypoint that hold each of ``alphas`` of its samples.

    ``samples`` are ``(..., M, K, 2)`` and ``centre`` ``(..., K, 2)``; the result is ``(..., K, L)``
    for ``L`` levels. The sample distances are computed once for every level.
    """
    for alpha in alphas:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    distance = torch.linalg.vector_norm(samples - centre.unsqueeze(-3), dim=-1)
    if distance.numel() == 0:  # no vertebra: quantile refuses empty input
        return distance.new_zeros(distance.shape[:-2] + distance.shape[-1:] + (len(alphas),))
    return torch.quantile(distance, distance.new_tensor(alphas), dim=-2).movedim(0, -1)


def interval_radius(samples: torch.Tensor, centre: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """Radius ``eps`` of the disc around each keypoint that holds ``alpha`` of its samples: ``(..., K)``."""
    return interval_radii(samples, centre, (alpha,))[..., 0]


@dataclass
class Uncertainty:
    """Per vertebra: keypoint interval radii and class probabilities under keypoint sampling."""

    eps: torch.Tensor  # (N, K), in the units of the keypoints (pixels when boxes are given)
    combined_grade_mean: torch.Tensor  # (N, 4), eq. 7 with the image probabilities
    combined_grade_std: torch.Tensor
    combined_morphology_mean: torch.Tensor  # (N, 3)
    combined_morphology_std: torch.Tensor
    samples: torch.Tensor  # (N, M, K, 2)


def estimate_uncertainty(
    density: ResidualLogLikelihood,
    gsq: FuzzyGSQ,
    mu: torch.Tensor,
    scale: torch.Tensor,
    boxes: Optional[torch.Tensor] = None,
    image_probs: Optional[tuple] = None,
    alpha: float = DEFAULT_ALPHA,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = 0,
) -> Uncertainty:
    """Samples each keypoint's density, measures ``eps`` at ``alpha`` and classifies every sample.

    ``mu`` and ``scale`` are ``(N, K, 2)`` in crop coordinates; with ``boxes`` (N, 4) the samples
    and ``eps`` are in image pixels. ``image_probs`` (grade, morphology) are combined with each
    sample's GSQ probabilities as in eq. 7; without them the combined fields equal keypoint-only.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = density.sample(mu, scale, num_samples, generator)
        centre = mu
        if boxes is not None:
            samples, centre = from_crop(samples, boxes), from_crop(mu, boxes)
        eps = interval_radius(samples, centre, alpha)
        grade, morphology = gsq(samples)
        if image_probs is None:
            combined_grade, combined_morphology = grade, morphology
        else:
            combined_grade = combine_probabilities(grade, image_probs[0].unsqueeze(-2))
            combined_morphology = combine_probabilities(morphology, image_probs[1].unsqueeze(-2))
    return Uncertainty(
        eps=eps,
        combined_grade_mean=combined_grade.mean(-2),
        combined_grade_std=combined_grade.std(-2),
        combined_morphology_mean=combined_morphology.mean(-2),
        combined_morphology_std=combined_morphology.std(-2),
        samples=samples,
    )
