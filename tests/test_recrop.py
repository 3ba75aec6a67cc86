"""The second look: the fine stage again on the box around its own first keypoints."""

import pytest
import torch

from conftest import requires_detectron2

pytestmark = requires_detectron2


def _roi_head(**kwargs):
    from xvfa_ext.modeling import VertebraROIHead
    from xvfa_ext.vertebra_head import VertebraHead

    torch.manual_seed(0)
    head = VertebraHead(trunk_dtype="float32")
    for name, module in head.named_modules():
        if name.endswith("heatmaps"):  # initialised near zero: make the untrained heatmaps peaked
            torch.nn.init.normal_(module.weight, std=1.0)
    return VertebraROIHead(head, crop_size=32, num_samples=8, **kwargs).eval()


def _run(roi, images, boxes):
    torch.manual_seed(3)  # the same density samples in every run
    with torch.no_grad():
        return roi(images, boxes)[0]


def test_the_second_look_is_the_fine_stage_on_the_box_around_the_first_keypoints():
    from detectron2.structures import ImageList

    from xvfa_ext.crops import boxes_around_points

    torch.manual_seed(1)
    images = ImageList.from_tensors([torch.rand(1, 120, 100)])
    boxes = [torch.tensor([[20.0, 30.0, 60.0, 62.0], [35.0, 10.0, 80.0, 50.0]])]
    once = _roi_head()
    twice = _roi_head(recrop_padding=0.1)
    twice.load_state_dict(once.state_dict())

    first = _run(once, images, boxes)
    around = boxes_around_points(first.pred_keypoints[..., :2], 0.1)
    expected = _run(once, images, [around])
    looked_twice = _run(twice, images, boxes)

    assert (around - boxes[0]).abs().max() > 1  # the second look is at another box
    torch.testing.assert_close(looked_twice.pred_keypoints, expected.pred_keypoints)
    torch.testing.assert_close(looked_twice.grade_probs_mean, expected.grade_probs_mean)
    torch.testing.assert_close(looked_twice.pred_keypoint_eps, expected.pred_keypoint_eps)
    # The output boxes and scores stay the given ones.
    torch.testing.assert_close(looked_twice.pred_boxes.tensor, boxes[0])


def test_keypoints_that_span_no_box_keep_the_given_box():
    roi = _roi_head(recrop_padding=0.1)
    given = [torch.tensor([[0.0, 0.0, 40.0, 40.0]]), torch.tensor([[10.0, 10.0, 50.0, 30.0]])]
    flat = torch.cat(given)
    mu = torch.rand(2, 6, 2)
    mu[1] = 0.5  # the second vertebra's six points at one place
    chosen = roi._keypoint_boxes(given, {"mu": mu}, flat)
    assert [len(b) for b in chosen] == [1, 1]
    torch.testing.assert_close(chosen[1], given[1])
    assert (chosen[0] - given[0]).abs().max() > 1


def test_a_negative_padding_is_refused():
    with pytest.raises(ValueError, match="recrop_padding must be non-negative"):
        _roi_head(recrop_padding=-0.1)
