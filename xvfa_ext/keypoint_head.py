"""Keypoint regressor on vertebra crops: a ResNet-18 trunk, then the centre and scale of six keypoints."""

import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from .folded_trunk import FoldedTrunk
from .layout import NUM_KEYPOINTS

logger = logging.getLogger(__name__)

# A rectangular vertebra in crop coordinates, spec order: the pooled regressor starts from it, so
# that GSQ starts from a normal vertebra rather than from six coincident points.
_TEMPLATE = ((0.15, 0.15), (0.5, 0.15), (0.85, 0.15), (0.15, 0.85), (0.5, 0.85), (0.85, 0.85))

# Pretrained trunks expect ImageNet statistics; crops are grayscale in [0, 1].
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_DIM = 512
TRUNK_DTYPES = ("auto", "float32", "bfloat16")
REGRESSORS = ("heatmap", "pooled")
_HEATMAP_CHANNELS = 128
_FINE_CHANNELS = 64  # the stride-2 refinement
HEATMAP_STRIDES = (4, 2)
_LOGGED = set()  # dtype choices already logged: each once per process


def native_bfloat16(device="cpu") -> bool:
    """Whether ``device`` computes bfloat16 in hardware: CUDA with bf16 support, or a CPU with AMX
    or AVX-512 BF16. Elsewhere (AVX2 alone, say) oneDNN emulates it, many times slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_trunk_dtype(trunk_dtype: str, device=None) -> str:
    """``"auto"`` becomes ``"bfloat16"`` where ``device`` (by default CUDA if there is one, else
    the CPU) runs it natively, else ``"float32"``; the choice is logged."""
    if trunk_dtype not in TRUNK_DTYPES:
        raise ValueError(f"trunk_dtype must be one of {list(TRUNK_DTYPES)}, got {trunk_dtype!r}")
    if trunk_dtype != "auto":
        return trunk_dtype
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    chosen = "bfloat16" if native_bfloat16(device) else "float32"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {torch.backends.cpu.get_cpu_capability()}"
    message = f"Keypoint trunk computes in {chosen} ({where}; trunk_dtype='auto')"
    if message not in _LOGGED:
        _LOGGED.add(message)
        logger.info(message)
    return chosen


# ``weights="torchvision"``: torchvision's ImageNet ResNet-18, which torchvision downloads once.
TORCHVISION_WEIGHTS = "torchvision"


def _torchvision_state() -> Dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-18 state dict, from its cache or downloaded; one clear error offline."""
    w = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    try:
        return w.get_state_dict(progress=False)
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        raise ValueError(
            f"{w.url}: torchvision's ImageNet ResNet-18 cannot be downloaded ({reason}); copy that file to {cache}, "
            "or give model.roi_head.head.weights=/path/to/resnet18.pth"
        ) from None


def load_resnet18(weights: Optional[str] = None) -> nn.Module:
    """torchvision's ResNet-18 without its classifier: random, from a local state dict file, or
    torchvision's ImageNet weights (``weights="torchvision"``)."""
    trunk = torchvision.models.resnet18(weights=None)
    if weights == TORCHVISION_WEIGHTS:
        state = _torchvision_state()
    elif weights:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{weights}: cannot read ResNet-18 weights ({exc})") from exc
    if weights:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = trunk.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{weights}: not a ResNet-18 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    trunk.fc = nn.Identity()
    return trunk


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """A convolution without bias ("same" padding at stride 1), BatchNorm and ReLU."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HeatmapTrunk(nn.Module):
    """ResNet-18 with a keypoint heatmap decoder at stride 4 or 2.

    Every stage (strides 4 to 32) is reduced to 128 channels, upsampled to stride 4 and added (a
    small feature pyramid), so that each heatmap cell sees both where it is and the whole vertebra
    with its posterior arch. At ``stride=2`` the decoded pyramid is upsampled once more and added
    to the stem's stride-2 features, then refined by one 3x3 convolution of 64 channels. Returns the
    pooled stride-32 features ``(N, 512)`` and one heatmap per keypoint ``(N, K, S/stride, S/stride)``.
    """

    def __init__(self, resnet: nn.Module, num_keypoints: int, stride: int = 4):
        super().__init__()
        if stride not in HEATMAP_STRIDES:
            raise ValueError(f"heatmap stride must be one of {list(HEATMAP_STRIDES)}, got {stride!r}")
        self.stride = stride
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        self.laterals = nn.ModuleList(conv_bn_relu(c, _HEATMAP_CHANNELS, 1) for c in (64, 128, 256, 512))
        self.decoder = conv_bn_relu(_HEATMAP_CHANNELS, _HEATMAP_CHANNELS, 3)
        channels = _HEATMAP_CHANNELS
        if stride == 2:
            self.stem_lateral = conv_bn_relu(64, _HEATMAP_CHANNELS, 1)
            self.refine = conv_bn_relu(_HEATMAP_CHANNELS, _FINE_CHANNELS, 3)
            channels = _FINE_CHANNELS
        self.heatmaps = nn.Conv2d(channels, num_keypoints, 1)
        nn.init.normal_(self.heatmaps.weight, std=1e-3)
        nn.init.zeros_(self.heatmaps.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        half = self.stem[2](self.stem[1](self.stem[0](x)))
        x = self.stem[3](half)
        pyramid = None
        for stage, lateral in zip(self.stages, self.laterals):
            x = stage(x)
            if pyramid is None:
                pyramid = lateral(x)
            else:
                pyramid = pyramid + F.interpolate(lateral(x), size=pyramid.shape[-2:], mode="bilinear", align_corners=False)
        decoded = self.decoder(pyramid)
        if self.stride == 2:
            fine = self.stem_lateral(half)
            decoded = self.refine(fine + F.interpolate(decoded, size=fine.shape[-2:], mode="bilinear", align_corners=False))
        return x.mean((2, 3)), self.heatmaps(decoded)


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expected position under each heatmap's softmax, ``(N, K, h, w)`` to ``(N, K, 2)`` (x, y) in
    crop coordinates, with cell centres at ``(i + 0.5) / w``, as ROIAlign's ``aligned`` crops place them."""
    n, k, h, w = heatmaps.shape
    prob = heatmaps.float().flatten(2).softmax(-1).view(n, k, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=prob.dtype) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=prob.dtype) + 0.5) / h
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], -1)


class KeypointHead(nn.Module):
    """Encodes crops ``(N, 1 or 3, S, S)`` in [0, 1] as features ``z`` and regresses ``mu`` and ``b``.

    ``mu`` and ``b`` are ``(N, 6, 2)`` in crop coordinates (0 and 1 at the crop's edges); ``z`` is
    ``(N, 512)``, the globally pooled ResNet-18 features that the image classifier reads.

    ``regressor`` chooses how ``mu`` is made:

    - ``"heatmap"``: one heatmap per keypoint at ``heatmap_stride`` 4 or 2 (:class:`HeatmapTrunk`),
      ``mu`` its soft-argmax;
    - ``"pooled"``: a linear map of ``z`` (the paper's ResNet-18 regressor), which must learn
      position from globally pooled features.

    ``b`` is a linear map of ``z`` either way. ``trunk_dtype`` is the trunk's compute type:
    ``"auto"`` takes bfloat16 where the hardware runs it natively (:func:`resolve_trunk_dtype`),
    else float32. The regressors, and everything after them, stay in float32. In eval mode without
    autograd the trunk runs through a :class:`FoldedTrunk`, compiled with ``compile_inference``.
    """

    def __init__(
        self,
        weights: Optional[str] = None,
        num_keypoints: int = NUM_KEYPOINTS,
        min_scale: float = 1e-4,
        trunk_dtype: str = "auto",
        compile_inference: bool = False,
        regressor: str = "heatmap",
        heatmap_stride: int = 4,
    ):
        super().__init__()
        if regressor not in REGRESSORS:
            raise ValueError(f"regressor must be one of {list(REGRESSORS)}, got {regressor!r}")
        self.trunk_dtype = resolve_trunk_dtype(trunk_dtype)
        self.regressor = regressor
        self.num_keypoints = num_keypoints
        self.min_scale = min_scale
        resnet = load_resnet18(weights)
        trunk = HeatmapTrunk(resnet, num_keypoints, heatmap_stride) if regressor == "heatmap" else resnet
        # Channels-last convolutions run faster on CPU (oneDNN): 1.3 to 1.9 times here, most in bfloat16.
        self.trunk = trunk.to(memory_format=torch.channels_last)
        self.folded_trunk = FoldedTrunk(getattr(torch, self.trunk_dtype), compile=compile_inference)
        if regressor == "pooled":
            self.mu = nn.Linear(FEATURE_DIM, num_keypoints * 2)
            nn.init.normal_(self.mu.weight, std=1e-3)
            with torch.no_grad():
                self.mu.bias.copy_(torch.tensor(_TEMPLATE[:num_keypoints]).flatten())
        self.scale = nn.Linear(FEATURE_DIM, num_keypoints * 2)
        self.register_buffer("pixel_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, crops: torch.Tensor) -> Dict[str, torch.Tensor]:
        if crops.dim() != 4 or crops.shape[1] not in (1, 3):
            raise ValueError(f"crops must be shaped (N, 1 or 3, S, S), got {tuple(crops.shape)}")
        x = crops.expand(-1, 3, -1, -1) if crops.shape[1] == 1 else crops
        x = (x - self.pixel_mean) / self.pixel_std
        if self.training or torch.is_grad_enabled():
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.trunk_dtype == "bfloat16"):
                out = self.trunk(x.contiguous(memory_format=torch.channels_last))
        else:
            out = self.folded_trunk(self.trunk, x)
        shape = (len(x), self.num_keypoints, 2)
        if self.regressor == "heatmap":
            z, heatmaps = out[0].float(), out[1]
            mu = soft_argmax(heatmaps)
        else:
            z = out.float()
            mu = self.mu(z).view(shape)
        return {"features": z, "mu": mu, "scale": torch.sigmoid(self.scale(z)).view(shape) + self.min_scale}
