"""The keypoint cascade: patches around each point, an identity start, and a refiner that learns."""

import pytest
import torch

from conftest import requires_detectron2
from xvfa_ext.refine import KeypointRefiner


def _spots(n: int, size: int = 96, generator=None, centres=None):
    """Images (n, 1, size, size) of six bright spots on a random background, and the spots' centres
    (random, or the ``(n, 6, 2)`` given)."""
    if centres is None:
        centres = 20 + torch.rand(n, 6, 2, generator=generator) * (size - 40)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    images = 0.3 * torch.rand(n, 1, size, size, generator=generator)
    for i in range(n):
        for k in range(6):
            cx, cy = centres[i, k]
            images[i, 0] += 0.7 * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8)
    return images, centres


def test_an_untrained_refiner_returns_the_points_it_is_given():
    refiner = KeypointRefiner(patch_size=16, patch_fraction=0.5)
    images, centres = _spots(2)
    points = centres + 3
    refined = refiner(images, points, torch.arange(2), torch.full((2,), 40.0))
    torch.testing.assert_close(refined, points)
    empty = torch.zeros(0, 6, 2)
    assert refiner(images, empty, torch.zeros(0, dtype=torch.long), torch.zeros(0)).shape == (0, 6, 2)


def test_patches_are_centred_and_standardised():
    refiner = KeypointRefiner(patch_size=16, patch_fraction=0.5)
    # Spots 28-50 px apart, each patch 20 px on a side: no spot reaches another's patch.
    centres = torch.tensor([[[20.3, 20.7], [48.6, 21.2], [76.1, 19.8], [21.4, 70.5], [49.2, 71.9], [75.7, 70.1]]])
    images, centres = _spots(1, centres=centres)
    patches = refiner.patches(images, centres, torch.zeros(1, dtype=torch.long), torch.tensor([40.0]))
    assert patches.shape == (6, 1, 16, 16)
    torch.testing.assert_close(patches.mean((1, 2, 3)), torch.zeros(6), atol=1e-5, rtol=0)
    # Each spot is at the centre of its own patch: the four middle pixels are the brightest.
    middle = patches[:, 0, 7:9, 7:9].mean((1, 2))
    assert (middle > patches[:, 0].amax((1, 2)) * 0.8).all()


def test_exposure_does_not_move_the_points():
    torch.manual_seed(0)
    refiner = KeypointRefiner(patch_size=16, patch_fraction=0.5).eval()
    torch.nn.init.normal_(refiner.heatmaps.weight, std=1.0)  # a refiner with an opinion
    images, centres = _spots(2)
    args = (centres + 2, torch.arange(2), torch.full((2,), 40.0))
    with torch.no_grad():
        plain, darker = refiner(images, *args), refiner(0.5 * images + 0.1, *args)
    assert (plain - (centres + 2)).abs().max() > 0.1
    torch.testing.assert_close(darker, plain, atol=0.05, rtol=0)


def test_the_refiner_learns_to_find_the_point_in_its_patch():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    refiner = KeypointRefiner(patch_size=16, patch_fraction=0.5, channels=8)
    optimizer = torch.optim.Adam(refiner.parameters(), lr=3e-3)
    heights = torch.full((8,), 40.0)

    def offsets(n):  # the first stage's error: up to 6 px, within the 20 px patch
        return (torch.rand(n, 6, 2, generator=generator) * 2 - 1) * 6

    for _ in range(150):
        images, centres = _spots(8, generator=generator)
        refined = refiner(images, centres + offsets(8), torch.arange(8), heights)
        loss = (refined - centres).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    refiner.eval()
    images, centres = _spots(8, generator=generator)
    given = centres + offsets(8)
    with torch.no_grad():
        refined = refiner(images, given, torch.arange(8), heights)
    before = (given - centres).norm(dim=-1).mean()
    after = (refined - centres).norm(dim=-1).mean()
    assert after < 0.5 * before, (float(before), float(after))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="patch_size"):
        KeypointRefiner(patch_size=7)
    with pytest.raises(ValueError, match="patch_fraction"):
        KeypointRefiner(patch_fraction=0)
    with pytest.raises(ValueError, match="built for 6 keypoints"):
        KeypointRefiner()(torch.zeros(1, 1, 32, 32), torch.zeros(1, 4, 2), torch.zeros(1, dtype=torch.long), torch.ones(1))


@requires_detectron2
def test_the_fine_stage_with_a_cascade_trains_both_stages_and_outputs_the_refined_points():
    from test_d2_model import batch, build

    model, _ = build(
        "xvfa_dino_r50_fine.py",
        **{"model.roi_head.crop_size": 64, "model.roi_head.num_samples": 50, "model.roi_head.refine_patch": 16},
    )
    refiner = model.roi_head.refiner
    assert refiner is not None and refiner.patch_size == 16
    model.train()
    losses = model(batch(True))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert refiner.heatmaps.weight.grad.abs().sum() > 0
    assert model.roi_head.head.keypoint_head.trunk.heatmaps.weight.grad.abs().sum() > 0

    torch.nn.init.normal_(refiner.heatmaps.weight, std=10.0)  # refined points differ from the first ones
    model.eval()
    inputs = batch(False, keep_annotations=True)
    with torch.no_grad():
        inst = model(inputs)[0]["instances"]
        model.roi_head.refiner = None
        coarse = model(inputs)[0]["instances"]
    assert inst.pred_keypoints.shape == coarse.pred_keypoints.shape
    moved = (inst.pred_keypoints[..., :2] - coarse.pred_keypoints[..., :2]).norm(dim=-1)
    assert moved.max() > 0.1
    assert torch.isfinite(inst.pred_keypoint_eps).all() and torch.isfinite(inst.grade_probs).all()
