"""Vertebra classification: the image classifier, its product with GSQ (eq. 7) and the loss (eq. 8)."""

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .gsq import GRADES, MORPHOLOGIES, INVALID

# Fuzzy GSQ probabilities can be exactly zero in float32; the log-likelihood floors them here.
_MIN_PROB = 1e-6


class ImageClassifier(nn.Module):
    """One linear layer per task on the crop features ``z``: ``p_img(grade | z)``, ``p_img(morph | z)``."""

    def __init__(self, feature_dim: int = 512):
        super().__init__()
        self.grade = nn.Linear(feature_dim, len(GRADES))
        self.morphology = nn.Linear(feature_dim, len(MORPHOLOGIES))

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.grade(features).softmax(-1), self.morphology(features).softmax(-1)


def combine_probabilities(keypoint_probs: torch.Tensor, image_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 7: ``p(c | I, x)`` proportional to ``p_kps(c | x) * p_img(c | z)``, normalised over classes."""
    product = keypoint_probs * image_probs
    return product / product.sum(-1, keepdim=True).clamp_min(1e-30)


def inverse_frequency_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Class weights ``w_c`` proportional to 1 / count, averaging one over the labelled vertebrae."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    labels = labels[labels != INVALID]
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    return weights


class GSQLoss(nn.Module):
    """Eq. 8: class-weighted cross-entropy of the keypoint (GSQ) and image probabilities.

    Grade and morphology are summed. Targets of -1 (invalid or unlabelled) are skipped; imputed
    vertebrae count ``imputed_weight`` times. A zero lambda removes its term (the paper's ablations).
    """

    def __init__(
        self,
        lambda_kps: float = 1.0,
        lambda_img: float = 1.0,
        grade_weights: Optional[Sequence[float]] = None,
        morphology_weights: Optional[Sequence[float]] = None,
        imputed_weight: float = 1e-3,
    ):
        super().__init__()
        if lambda_kps < 0 or lambda_img < 0:
            raise ValueError(f"lambdas must be non-negative, got lambda_kps={lambda_kps}, lambda_img={lambda_img}")
        self.lambda_kps = lambda_kps
        self.lambda_img = lambda_img
        self.imputed_weight = imputed_weight
        self.register_buffer("grade_weights", _class_weights(grade_weights, len(GRADES)))
        self.register_buffer("morphology_weights", _class_weights(morphology_weights, len(MORPHOLOGIES)))

    def _nll(self, probs: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor, vertebra_weight) -> torch.Tensor:
        labelled = target != INVALID
        safe_target = torch.where(labelled, target, torch.zeros_like(target))
        w = class_weights[safe_target] * labelled.to(probs.dtype)
        nll = F.nll_loss(probs.clamp_min(_MIN_PROB).log(), safe_target, reduction="none")
        return (w * vertebra_weight * nll).sum() / w.sum().clamp_min(1e-12)

    def _term(self, probs: Tuple[torch.Tensor, torch.Tensor], grade, morphology, vertebra_weight) -> torch.Tensor:
        return self._nll(probs[0], grade, self.grade_weights, vertebra_weight) + self._nll(
            probs[1], morphology, self.morphology_weights, vertebra_weight
        )

    def forward(
        self,
        keypoint_probs: Tuple[torch.Tensor, torch.Tensor],
        image_probs: Tuple[torch.Tensor, torch.Tensor],
        grade: torch.Tensor,
        morphology: torch.Tensor,
        imputed: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        vertebra_weight = torch.ones_like(keypoint_probs[0][:, 0])
        if imputed is not None:
            vertebra_weight = torch.where(imputed.bool(), self.imputed_weight, 1.0).to(vertebra_weight)
        return {
            "loss_gsq_kps": self.lambda_kps * self._term(keypoint_probs, grade, morphology, vertebra_weight),
            "loss_gsq_img": self.lambda_img * self._term(image_probs, grade, morphology, vertebra_weight),
        }


def _class_weights(weights: Optional[Sequence[float]], num_classes: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(num_classes)
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (num_classes,) or (w < 0).any():
        raise ValueError(f"class weights must be {num_classes} non-negative numbers, got {list(weights)}")
    return w
