"""Keypoint regressor on vertebra crops: a ResNet-18 trunk, then the centre and scale of six keypoints."""

from typing import Dict, Optional

import torch
import torchvision
from torch import nn

from .folded_trunk import FoldedTrunk
from .layout import NUM_KEYPOINTS

# A rectangular vertebra in crop coordinates, spec order: the regressor starts from it, so that GSQ
# starts from a normal vertebra rather than from six coincident points.
_TEMPLATE = ((0.15, 0.15), (0.5, 0.15), (0.85, 0.15), (0.15, 0.85), (0.5, 0.85), (0.85, 0.85))

# Pretrained trunks expect ImageNet statistics; crops are grayscale in [0, 1].
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_DIM = 512
_TRUNK_DTYPES = {"float32", "bfloat16"}


def load_resnet18(weights: Optional[str] = None) -> nn.Module:
    """torchvision's ResNet-18 without its classifier: random, or from a local state dict file."""
    trunk = torchvision.models.resnet18(weights=None)
    if weights:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{weights}: cannot read ResNet-18 weights ({exc})") from exc
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = trunk.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{weights}: not a ResNet-18 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    trunk.fc = nn.Identity()
    return trunk


class KeypointHead(nn.Module):
    """Encodes crops ``(N, 1 or 3, S, S)`` in [0, 1] as features ``z`` and regresses ``mu`` and ``b``.

    ``mu`` and ``b`` are ``(N, 6, 2)`` in crop coordinates (0 and 1 at the crop's edges).
    With ``trunk_dtype="bfloat16"`` the trunk computes in bfloat16 (autocast), in training and at
    inference: two to four times faster on CPUs with AMX. The regressors, and
    everything after them, stay in float32. In eval mode without autograd the trunk runs through a
    :class:`FoldedTrunk`, compiled with ``compile_inference``.
    """

    def __init__(
        self,
        weights: Optional[str] = None,
        num_keypoints: int = NUM_KEYPOINTS,
        min_scale: float = 1e-4,
        trunk_dtype: str = "float32",
        compile_inference: bool = False,
    ):
        super().__init__()
        if trunk_dtype not in _TRUNK_DTYPES:
            raise ValueError(f"trunk_dtype must be one of {sorted(_TRUNK_DTYPES)}, got {trunk_dtype!r}")
        self.trunk_dtype = trunk_dtype
        self.num_keypoints = num_keypoints
        self.min_scale = min_scale
        # Channels-last convolutions run faster on CPU (oneDNN): 1.3 to 1.9 times here, most in bfloat16.
        self.trunk = load_resnet18(weights).to(memory_format=torch.channels_last)
        self.folded_trunk = FoldedTrunk(getattr(torch, trunk_dtype), compile=compile_inference)
        self.mu = nn.Linear(FEATURE_DIM, num_keypoints * 2)
        self.scale = nn.Linear(FEATURE_DIM, num_keypoints * 2)
        nn.init.normal_(self.mu.weight, std=1e-3)
        with torch.no_grad():
            self.mu.bias.copy_(torch.tensor(_TEMPLATE[:num_keypoints]).flatten())
        self.register_buffer("pixel_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, crops: torch.Tensor) -> Dict[str, torch.Tensor]:
        if crops.dim() != 4 or crops.shape[1] not in (1, 3):
            raise ValueError(f"crops must be shaped (N, 1 or 3, S, S), got {tuple(crops.shape)}")
        x = crops.expand(-1, 3, -1, -1) if crops.shape[1] == 1 else crops
        x = (x - self.pixel_mean) / self.pixel_std
        if self.training or torch.is_grad_enabled():
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.trunk_dtype == "bfloat16"):
                z = self.trunk(x.contiguous(memory_format=torch.channels_last)).float()
        else:
            z = self.folded_trunk(self.trunk, x)
        shape = (len(z), self.num_keypoints, 2)
        return {
            "features": z,
            "mu": self.mu(z).view(shape),
            "scale": torch.sigmoid(self.scale(z)).view(shape) + self.min_scale,
        }
