"""A keypoint cascade: each keypoint refined from a second, smaller crop around it.

The fine stage places six points from one crop of the whole vertebra. The refiner cuts, for each
point, a square patch centred on it from the same image, a fraction of the vertebra crop's height
on a side, and reads the point's position in the patch from a small heatmap network. It sees an
endplate's corner sampled more finely than the vertebra crop, which has to hold the whole
vertebra and its context.
"""

import torch
from torch import nn

from .crops import crop_vertebrae
from .keypoint_head import conv_bn_relu, soft_argmax
from .layout import NUM_KEYPOINTS


class KeypointRefiner(nn.Module):
    """Refines keypoints ``(N, K, 2)`` in image pixels from patches ``patch_size`` px square around them.

    A patch's side is ``patch_fraction`` of its vertebra's crop height (the box the fine stage cropped,
    context included). Each patch is standardised (zero mean, unit deviation), so that exposure does
    not move the point, then goes through five 3x3 convolutions (``channels``, then twice as many
    after one stride 2; the last two dilated, so that a cell sees the whole patch) to one heatmap per
    keypoint kind at stride 2; the point's own kind's heatmap gives its soft-argmax. The heatmaps
    start flat: an untrained refiner returns the points it is given.
    """

    def __init__(
        self,
        patch_size: int = 32,
        patch_fraction: float = 0.4,
        channels: int = 16,
        num_keypoints: int = NUM_KEYPOINTS,
    ):
        super().__init__()
        if patch_size < 8 or patch_size % 2:
            raise ValueError(f"patch_size must be an even number of pixels, at least 8; got {patch_size}")
        if not 0 < patch_fraction <= 1:
            raise ValueError(f"patch_fraction must be in (0, 1], got {patch_fraction}")
        self.patch_size = patch_size
        self.patch_fraction = patch_fraction
        self.num_keypoints = num_keypoints
        wide = 2 * channels
        self.net = nn.Sequential(
            conv_bn_relu(1, channels, 3),
            conv_bn_relu(channels, channels, 3),
            conv_bn_relu(channels, wide, 3, stride=2),
            conv_bn_relu(wide, wide, 3, dilation=2),
            conv_bn_relu(wide, wide, 3, dilation=4),
        )
        self.heatmaps = nn.Conv2d(wide, num_keypoints, 1)
        nn.init.zeros_(self.heatmaps.weight)
        nn.init.zeros_(self.heatmaps.bias)

    def patches(self, images: torch.Tensor, points: torch.Tensor, batch_index: torch.Tensor, heights: torch.Tensor) -> torch.Tensor:
        """Standardised patches ``(N * K, 1, P, P)`` around ``points`` (N, K, 2) of ``images`` (B, 1, H, W)."""
        n, k, _ = points.shape
        half = (self.patch_fraction * heights / 2)[:, None, None].expand(n, k, 1)
        boxes = torch.cat([points - half, points + half], -1).reshape(n * k, 4)
        crops = crop_vertebrae(images, boxes, batch_index.repeat_interleave(k), self.patch_size)
        mean = crops.mean((1, 2, 3), keepdim=True)
        std = crops.std((1, 2, 3), keepdim=True)
        return (crops - mean) / (std + 1e-2)

    def forward(self, images: torch.Tensor, points: torch.Tensor, batch_index: torch.Tensor, heights: torch.Tensor) -> torch.Tensor:
        """Refined points.

        Args:
            images: (B, 1, H, W) grayscale in [0, 1], the image the points are in.
            points: (N, K, 2) the first stage's points in pixels of ``images``. Patches are centred on
                them as given, without a gradient; the returned points are ``points`` plus the
                refiner's offset, so a loss on them reaches both stages.
            batch_index: (N,) the image of each vertebra.
            heights: (N,) the height in pixels of each vertebra's crop box.
        Returns:
            (N, K, 2) points in pixels of ``images``.
        """
        n, k, _ = points.shape
        if k != self.num_keypoints:
            raise ValueError(f"the refiner was built for {self.num_keypoints} keypoints, got {k}")
        if n == 0:
            return points
        centre = points.detach()
        patches = self.patches(images, centre, batch_index, heights)
        heatmaps = self.heatmaps(self.net(patches))
        heatmaps = heatmaps.view(n, k, k, *heatmaps.shape[-2:])
        own = torch.arange(k, device=points.device)
        position = soft_argmax(heatmaps[:, own, own])  # (N, K, 2) in [0, 1] of each patch
        side = (self.patch_fraction * heights)[:, None, None]
        return points + (position - 0.5) * side
