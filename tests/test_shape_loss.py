"""The shape loss: a vertebra's height ratios and reduction, priced directly."""

import torch

from xvfa_ext.vertebra_head import VertebraHead, shape_loss

NORMAL = torch.tensor([[0, 0], [20, 0], [40, 0], [0, 30], [20, 30], [40, 30]], dtype=torch.float)
WEDGE = torch.tensor([[0, 0], [20, 3], [40, 6], [0, 30], [20, 27], [40, 24]], dtype=torch.float)


def test_zero_for_the_annotated_shape_and_a_pull_towards_it():
    use = torch.ones(1, dtype=torch.bool)
    assert shape_loss(WEDGE[None], WEDGE[None], use) == 0
    # The same shape moved and scaled costs nothing: the loss sees ratios, not positions.
    assert shape_loss(WEDGE[None] * 2 + 5, WEDGE[None], use).abs() < 1e-6
    pred = NORMAL[None].clone().requires_grad_(True)
    loss = shape_loss(pred, WEDGE[None], use)
    assert loss > 0
    loss.backward()
    # Shortening the anterior height (points 2 and 5) lowers it.
    step = pred.detach().clone()
    step[0, 2, 1] += 1.0
    step[0, 5, 1] -= 1.0
    assert shape_loss(step, WEDGE[None], use) < loss
    assert torch.isfinite(pred.grad).all() and pred.grad[0, [2, 5], 1].abs().sum() > 0


def test_unused_or_invalid_vertebrae_do_not_count():
    flat = NORMAL.clone()
    flat[3:, 1] = 0  # zero heights
    preds, targets = torch.stack([NORMAL, NORMAL]), torch.stack([WEDGE, flat])
    assert shape_loss(preds, targets, torch.tensor([False, True])) == 0
    assert shape_loss(preds, targets, torch.tensor([True, True])) == shape_loss(preds[:1], targets[:1], torch.tensor([True]))


def test_the_head_adds_it_only_when_weighted():
    torch.manual_seed(0)
    crops, sizes = torch.rand(2, 1, 32, 32), torch.tensor([[40.0, 30.0], [40.0, 30.0]])
    targets = {"keypoints": torch.stack([NORMAL, WEDGE]) / torch.tensor([40.0, 30.0]), "visible": torch.ones(2, 6, dtype=torch.bool),
               "grade": torch.tensor([0, 2]), "morphology": torch.tensor([0, 1]), "imputed": torch.tensor([False, False])}
    for weight in (0.0, 2.0):
        head = VertebraHead(trunk_dtype="float32", lambda_shape=weight)
        losses = head.losses(head(crops, sizes), targets)
        assert ("loss_shape" in losses) == (weight > 0)
        if weight:
            assert losses["loss_shape"] > 0 and torch.isfinite(losses["loss_shape"])
