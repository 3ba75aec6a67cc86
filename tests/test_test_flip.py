"""Test-time flip averaging: the flip maps of the views, and a prediction that mirrors with its crop."""

import pytest
import torch

from xvfa_ext.layout import KEYPOINT_NAMES, flip_indices
from xvfa_ext.vertebra_head import VertebraHead


def test_flip_maps_of_the_views():
    assert flip_indices("lateral") == list(range(6))
    frontal = flip_indices("frontal")
    assert [KEYPOINT_NAMES[i] for i in frontal] == [
        "upper_anterior", "upper_middle", "upper_posterior", "lower_anterior", "lower_middle", "lower_posterior"]
    with pytest.raises(ValueError, match="view must be one of"):
        flip_indices("oblique")


def _mirror(mu, flip):
    mu = mu[:, flip]
    return torch.stack([1 - mu[..., 0], mu[..., 1]], -1)


@pytest.mark.parametrize("view", ["lateral", "frontal"])
def test_flip_averaged_keypoints_mirror_with_the_crop(view):
    torch.manual_seed(0)
    head = VertebraHead(trunk_dtype="float32").eval()
    for name, module in head.named_modules():
        if name.endswith("heatmaps"):  # initialised near zero: make the untrained heatmaps peaked
            torch.nn.init.normal_(module.weight, std=1.0)
    crops = torch.rand(5, 1, 64, 64)
    sizes = torch.full((5, 2), 40.0)
    flip = flip_indices(view)
    with torch.no_grad():
        plain, mirrored = head(crops, sizes), head(crops.flip(-1), sizes)
        averaged, averaged_mirrored = head(crops, sizes, flip), head(crops.flip(-1), sizes, flip)
    # One pass alone does not mirror with its crop (a random network is not symmetric) ...
    assert (mirrored["mu"] - _mirror(plain["mu"], flip)).abs().max() > 1e-2
    # ... the average of the two passes does, relabelled by the view's flip map.
    torch.testing.assert_close(averaged_mirrored["mu"], _mirror(averaged["mu"], flip), atol=1e-5, rtol=0)
    torch.testing.assert_close(averaged_mirrored["grade_img"], averaged["grade_img"], atol=1e-5, rtol=0)
    assert averaged["grade"].shape == (5, 4) and torch.isfinite(averaged["grade"]).all()
