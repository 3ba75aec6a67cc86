"""The fine stage on vertebra crops: keypoints with their density, GSQ and image classification.

Any detector can feed it crops; the detectron2 layer wraps it as an ROI head (paper Fig. 2).
"""

from dataclasses import replace
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from torch.nn import functional as F

from .classification import GSQLoss, ImageClassifier, combine_probabilities
from .gsq import FuzzyGSQ, morphometry
from .keypoint_head import FEATURE_DIM, KeypointHead
from .rle import DEFAULT_IMPUTED_WEIGHT, ResidualLogLikelihood
from .uncertainty import DEFAULT_ALPHA, DEFAULT_NUM_SAMPLES, Uncertainty, estimate_uncertainty


def shape_loss(
    keypoints: torch.Tensor, targets: torch.Tensor, use: torch.Tensor, beta: float = 0.05
) -> torch.Tensor:
    """Smooth-L1 loss on a vertebra's shape: its log height ratios (APR, MPR) and its height reduction d.

    Args:
        keypoints: predicted (N, 6, 2) in pixels (or any frame with equal units on both axes).
        targets: annotated (N, 6, 2) in the same frame.
        use: (N,) bool, the vertebrae to count (read, all six points visible).
    Returns:
        the mean over the used vertebrae and the three terms (0 where none is used).

    The keypoint density (RLE) weighs each point alone, and the shape of a vertebra is a small
    difference of its points: with points a few pixels off, the prediction regresses to an average
    vertebra. This loss prices the shape itself.
    """
    pred, true = morphometry(keypoints), morphometry(targets.to(keypoints.dtype))
    use = use & pred["valid"] & true["valid"]
    if not bool(use.any()):
        return keypoints.sum() * 0
    terms = [
        torch.log(pred[k][use].clamp_min(1e-3)) - torch.log(true[k][use].clamp_min(1e-3)) for k in ("apr", "mpr")
    ] + [pred["reduction"][use] - true["reduction"][use]]
    error = torch.stack(terms, -1)
    return F.smooth_l1_loss(error, torch.zeros_like(error), beta=beta)


class VertebraHead(nn.Module):
    """ResNet-18 keypoints with an RLE density, fuzzy GSQ and an image classifier (eq. 4-8).

    ``lambda_kps`` and ``lambda_img`` choose the paper's ablations; the combined probability uses
    the classifiers whose lambda is positive, and GSQ alone when both are zero. ``lambda_shape``
    weighs :func:`shape_loss` (0: off, the paper's losses alone). ``regressor`` is how the keypoint
    means are made (with ``heatmap_stride`` 4 or 2 for heatmaps), ``trunk_dtype`` the ResNet-18
    trunk's compute type ("auto": bfloat16 where the hardware runs it natively),
    ``compile_inference`` compiles the trunk for inference (:class:`KeypointHead`).
    """

    def __init__(
        self,
        weights: Optional[str] = None,
        base: str = "laplace",
        gsq: Optional[FuzzyGSQ] = None,
        lambda_rle: float = 1.0,
        lambda_kps: float = 1.0,
        lambda_img: float = 1.0,
        grade_weights: Optional[Sequence[float]] = None,
        morphology_weights: Optional[Sequence[float]] = None,
        imputed_weight: float = DEFAULT_IMPUTED_WEIGHT,
        trunk_dtype: str = "auto",
        compile_inference: bool = False,
        regressor: str = "heatmap",
        lambda_shape: float = 0.0,
        heatmap_stride: int = 4,
    ):
        super().__init__()
        if lambda_rle < 0:
            raise ValueError(f"lambda_rle must be non-negative, got {lambda_rle}")
        if lambda_shape < 0:
            raise ValueError(f"lambda_shape must be non-negative, got {lambda_shape}")
        self.lambda_shape = lambda_shape
        self.keypoint_head = KeypointHead(
            weights,
            trunk_dtype=trunk_dtype,
            compile_inference=compile_inference,
            regressor=regressor,
            heatmap_stride=heatmap_stride,
        )
        self.density = ResidualLogLikelihood(base=base, imputed_weight=imputed_weight)
        self.gsq = gsq if gsq is not None else FuzzyGSQ()
        self.image_classifier = ImageClassifier(FEATURE_DIM)
        self.lambda_rle = lambda_rle
        self.classification_loss = GSQLoss(lambda_kps, lambda_img, grade_weights, morphology_weights, imputed_weight)

    def forward(
        self,
        crops: torch.Tensor,
        box_sizes: torch.Tensor,
        flip: Optional[Sequence[int]] = None,
        refine: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> Dict[str, torch.Tensor]:
        """``crops`` (N, C, S, S) of boxes whose (width, height) in pixels are ``box_sizes`` (N, 2).

        With ``flip`` (per keypoint the index it becomes in a mirrored crop,
        :func:`xvfa_ext.layout.flip_indices`), the mirrored crops run too, and the keypoint means,
        scales and image features are the average of the two passes (test-time flip averaging).
        ``refine`` maps the keypoint means (N, 6, 2, crop coordinates) to refined ones (a cascade,
        :class:`xvfa_ext.refine.KeypointRefiner`); GSQ and the density then read the refined points.
        """
        out = self.keypoint_head(crops)
        if flip is not None:
            mirrored = self.keypoint_head(crops.flip(-1))
            mu = mirrored["mu"][:, list(flip)]
            mu = torch.stack([1 - mu[..., 0], mu[..., 1]], -1)
            out = dict(
                out,
                mu=(out["mu"] + mu) / 2,
                scale=(out["scale"] + mirrored["scale"][:, list(flip)]) / 2,
                features=(out["features"] + mirrored["features"]) / 2,
            )
        if refine is not None:
            out = dict(out, mu=refine(out["mu"]))
        # Heights are compared in pixels: a crop's axes are stretched by its box's aspect ratio.
        kps_grade, kps_morphology = self.gsq(out["mu"] * box_sizes[:, None, :])
        img_grade, img_morphology = self.image_classifier(out["features"])
        out.update(
            box_sizes=box_sizes,
            grade_kps=kps_grade,
            morphology_kps=kps_morphology,
            grade_img=img_grade,
            morphology_img=img_morphology,
            grade=self._combine(kps_grade, img_grade),
            morphology=self._combine(kps_morphology, img_morphology),
        )
        return out

    def _combine(self, keypoint_probs: torch.Tensor, image_probs: torch.Tensor) -> torch.Tensor:
        use_kps = self.classification_loss.lambda_kps > 0
        use_img = self.classification_loss.lambda_img > 0
        if use_img and use_kps:
            return combine_probabilities(keypoint_probs, image_probs)
        return image_probs if use_img else keypoint_probs

    def losses(
        self, outputs: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor], classification_weight: float = 1.0
    ) -> Dict[str, torch.Tensor]:
        """``targets``: keypoints (N, 6, 2) in crop coordinates, visible (N, 6), grade, morphology and
        imputed (N,). Returns ``loss_rle``, ``loss_gsq_kps`` and ``loss_gsq_img``, each weighted; the
        two classification terms also by ``classification_weight`` (a warm-up schedule's); and
        ``loss_shape`` where ``lambda_shape`` is positive."""
        imputed = targets.get("imputed")
        loss_rle = self.density(outputs["mu"], outputs["scale"], targets["keypoints"], targets.get("visible"), imputed)
        losses = self.classification_loss(
            (outputs["grade_kps"], outputs["morphology_kps"]),
            (outputs["grade_img"], outputs["morphology_img"]),
            targets["grade"],
            targets["morphology"],
            imputed,
        )
        losses = {name: classification_weight * value for name, value in losses.items()}
        losses["loss_rle"] = self.lambda_rle * loss_rle
        if self.lambda_shape > 0:
            sizes = outputs["box_sizes"][:, None, :]
            visible = targets.get("visible")
            use = visible.all(-1) if visible is not None else torch.ones(len(sizes), dtype=torch.bool, device=sizes.device)
            if imputed is not None:
                use = use & ~imputed
            losses["loss_shape"] = self.lambda_shape * shape_loss(outputs["mu"] * sizes, targets["keypoints"] * sizes, use)
        return losses

    def uncertainty(
        self,
        outputs: Dict[str, torch.Tensor],
        boxes: torch.Tensor,
        alpha: float = DEFAULT_ALPHA,
        num_samples: int = DEFAULT_NUM_SAMPLES,
        seed: int = 0,
    ) -> Uncertainty:
        """Keypoint intervals in pixels and class probabilities under sampling, for ``boxes`` (N, 4)."""
        use_kps = self.classification_loss.lambda_kps > 0
        use_img = self.classification_loss.lambda_img > 0
        image_probs = (outputs["grade_img"], outputs["morphology_img"])
        result = estimate_uncertainty(
            self.density,
            self.gsq,
            outputs["mu"],
            outputs["scale"],
            boxes,
            image_probs if use_kps and use_img else None,
            alpha,
            num_samples,
            seed,
        )
        if use_img and not use_kps:
            # Image-only models: keypoint sampling leaves the combined probability unchanged.
            grade, morphology = image_probs
            result = replace(
                result,
                combined_grade_mean=grade,
                combined_grade_std=torch.zeros_like(grade),
                combined_morphology_mean=morphology,
                combined_morphology_std=torch.zeros_like(morphology),
            )
        return result
