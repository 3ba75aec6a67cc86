"""Keypoint density by residual log-likelihood estimation (RLE) with a RealNVP flow (paper eq. 4-5).

A regressor predicts each keypoint's centre ``mu`` and per-axis scale ``b``; the standardised
residual ``x' = (x - mu) / b`` has one learned density shared by all keypoints, a RealNVP flow from
nflows, so that ``x = mu + b * x'`` with ``x'`` drawn from the flow (eq. 4).

The loss adds the base density's negative log-likelihood (Laplace or Gaussian) to the flow's
(eq. 5). Eq. 5 counts ``log b`` once, which has no finite minimiser in ``b`` when the flow is free
(``b`` grows while the flow narrows). Like the reference RLE implementation, ``log b`` is counted
with each term: ``b`` is then the base density's maximum-likelihood scale and the flow the exact
density of the standardised residual, which is what the intervals and samples are drawn from.

Scale of the loss against the reference implementation (mmpose's ``RLELoss``): per keypoint both
count the base term, ``log b`` of each axis once with the base and once with the flow, and the
flow's negative log-density once. mmpose then sums over the keypoints and divides by the number of
samples (vertebrae); this loss divides the weighted sum by the number of visible keypoints instead.
For six visible keypoints it is therefore one sixth of mmpose's value, so loss weights (lambda_rle)
taken from an mmpose config correspond to six times the value here.
"""

import math
from typing import Optional, Tuple

import torch
from nflows.flows.base import Flow
from nflows.flows.realnvp import SimpleRealNVP
from torch import nn

BASE_DENSITIES = ("laplace", "gaussian")
DEFAULT_IMPUTED_WEIGHT = 1e-3


def build_realnvp(num_layers: int = 3, hidden_features: int = 64, num_blocks_per_layer: int = 2) -> Flow:
    """A two-dimensional RealNVP (affine couplings, standard normal base) for one keypoint residual."""
    return SimpleRealNVP(
        features=2,
        hidden_features=hidden_features,
        num_layers=num_layers,
        num_blocks_per_layer=num_blocks_per_layer,
    )


def _base_nll(residual: torch.Tensor, base: str) -> torch.Tensor:
    if base == "laplace":
        return (residual.abs() + math.log(2.0)).sum(-1)
    return (0.5 * residual**2 + 0.5 * math.log(2 * math.pi)).sum(-1)


class ResidualLogLikelihood(nn.Module):
    """The learned keypoint density: RLE loss for training, samples for uncertainty.

    ``pool_size`` standardised residuals are drawn from the flow once per state of its parameters
    and resampled with replacement for every keypoint; they are redrawn when the flow changes.
    """

    def __init__(
        self,
        base: str = "laplace",
        flow: Optional[Flow] = None,
        imputed_weight: float = DEFAULT_IMPUTED_WEIGHT,
        pool_size: int = 1 << 16,
    ):
        super().__init__()
        if base not in BASE_DENSITIES:
            raise ValueError(f"base density must be one of {BASE_DENSITIES}, got {base!r}")
        if not 0 <= imputed_weight <= 1:
            raise ValueError(f"imputed_weight must lie in [0, 1], got {imputed_weight}")
        self.base = base
        self.flow = flow if flow is not None else build_realnvp()
        self.imputed_weight = imputed_weight
        self.pool_size = pool_size
        self._pool: Optional[torch.Tensor] = None
        self._pool_key: Optional[Tuple] = None

    def forward(
        self,
        mu: torch.Tensor,
        scale: torch.Tensor,
        target: torch.Tensor,
        visible: Optional[torch.Tensor] = None,
        imputed: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Mean RLE loss over visible keypoints; imputed vertebrae count ``imputed_weight`` times.

        ``mu``, ``scale`` and ``target`` are shaped ``(N, K, 2)`` in one coordinate frame;
        ``visible`` is ``(N, K)`` and ``imputed`` ``(N,)``, both boolean.
        """
        n, k = mu.shape[:2]
        visible = torch.ones(n, k, dtype=torch.bool, device=mu.device) if visible is None else visible.bool()
        weight = visible.to(mu.dtype)
        if imputed is not None:
            vertebra_weight = torch.where(imputed.bool(), self.imputed_weight, 1.0).to(mu.dtype)
            weight = weight * vertebra_weight[:, None]
        # Hidden keypoints (their targets may be NaN) get a zero residual: no loss, no NaN gradient.
        target = torch.where(visible[..., None], target, mu.detach())
        residual = (target - mu) / scale
        log_scale = scale.log().sum(-1)
        flow_nll = -self.flow.log_prob(residual.reshape(-1, 2)).reshape(n, k)
        per_keypoint = _base_nll(residual, self.base) + flow_nll + 2 * log_scale
        return (weight * per_keypoint).sum() / visible.sum().clamp_min(1)

    def log_prob(self, mu: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log density of points ``x`` (..., 2) under keypoints with ``mu`` and ``scale`` (eq. 4)."""
        residual = (x - mu) / scale
        lead = residual.shape[:-1]
        return self.flow.log_prob(residual.reshape(-1, 2)).reshape(lead) - scale.log().sum(-1)

    def _standardised_pool(self, device: torch.device) -> torch.Tensor:
        key = tuple((id(p), p._version) for p in self.flow.parameters()) + (str(device),)
        if self._pool is None or self._pool_key != key:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self._pool = self.flow.sample(self.pool_size).to(device)
            self._pool_key = key
        return self._pool

    def sample(
        self, mu: torch.Tensor, scale: torch.Tensor, num_samples: int = 1000, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Keypoints drawn from the learned density: ``(..., K, 2)`` in, ``(..., M, K, 2)`` out."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        pool = self._standardised_pool(mu.device)
        lead, k = mu.shape[:-2], mu.shape[-2]
        count = int(torch.Size(lead).numel()) * num_samples * k
        index = torch.randint(len(pool), (count,), generator=generator, device="cpu").to(mu.device)
        residual = pool[index].reshape(*lead, num_samples, k, 2)
        return mu.unsqueeze(-3) + scale.unsqueeze(-3) * residual
