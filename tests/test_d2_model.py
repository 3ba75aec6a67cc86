"""The XVFA meta-architecture on CPU: DINO with denoising, the fine stage, and their outputs."""

from pathlib import Path

import pytest
import torch

from conftest import requires_detectron2

pytestmark = requires_detectron2
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_cuda_calls_are_redirected_only_inside_the_block():
    from xvfa_ext.modeling import cuda_calls_on

    x = torch.zeros(2)
    with cuda_calls_on(torch.device("cpu")):
        assert x.cuda().device.type == "cpu"
        assert x.to("cuda").device.type == "cpu"
        assert x.to(device="cuda:0", dtype=torch.float64).dtype == torch.float64
    if not torch.cuda.is_available():
        with pytest.raises((AssertionError, RuntimeError)):
            x.cuda()


def build(config, **overrides):
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(CONFIGS / config))
    cfg = LazyConfig.apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    torch.manual_seed(0)
    return instantiate(cfg.model), cfg


def batch(is_train, keep_annotations=False):
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import VertebraDatasetMapper, build_augmentations

    records = DatasetCatalog.get("xvfa_synthetic_small_train")[:2]
    mapper = VertebraDatasetMapper(is_train, build_augmentations(is_train), keep_annotations=keep_annotations)
    return [mapper(r) for r in records]


def test_joint_training_step_on_cpu_with_denoising():
    model, _ = build("xvfa_dino_r50_smoke.py")
    model.train()
    losses = model(batch(True))
    assert {"loss_rle", "loss_gsq_kps", "loss_gsq_img", "loss_class", "loss_class_dn", "loss_bbox_dn"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_head.head.keypoint_head.trunk.heatmaps.weight.grad.abs().sum() > 0
    assert model.detector.class_embed[0].weight.grad.abs().sum() > 0


def test_channels_last_detector_keeps_its_weights_and_answers_as_the_default_layout(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    model, _ = build("xvfa_dino_r50_smoke.py", **{"model.detector.channels_last": True})
    default, _ = build("xvfa_dino_r50_smoke.py")
    conv = model.detector.backbone.stem.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert default.detector.backbone.stem.conv1.weight.is_contiguous()
    # The same values whichever layout holds them, through a checkpoint as the trainer writes it.
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("channels_last")
    DetectionCheckpointer(default).load(str(tmp_path / "channels_last.pth"))
    for (name, a), b in zip(model.state_dict().items(), default.state_dict().values()):
        assert torch.equal(a, b), name
    assert conv.is_contiguous(memory_format=torch.channels_last)
    inputs = batch(False)
    with torch.no_grad():
        ours, theirs = (m.eval().detector(inputs)[0]["instances"] for m in (model, default))
    torch.testing.assert_close(ours.scores, theirs.scores, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(ours.pred_boxes.tensor, theirs.pred_boxes.tensor, atol=1e-2, rtol=1e-3)


def test_inference_outputs_every_field_without_nan():
    model, _ = build("xvfa_dino_r50_smoke.py")
    model.eval()
    inputs = batch(False)
    with torch.no_grad():
        outputs = model(inputs)
    inst = outputs[0]["instances"]
    assert inst.image_size == (inputs[0]["height"], inputs[0]["width"])
    assert len(inst) > 0 and inst.pred_keypoints.shape[1:] == (6, 3)
    for name in ("pred_keypoint_eps", "pred_keypoint_scale", "grade_probs", "grade_probs_kps", "grade_probs_img",
                 "grade_probs_mean", "grade_probs_std", "morphology_probs", "morphology_probs_mean",
                 "morphology_probs_std", "pred_keypoint_eps_levels"):
        value = inst.get(name)
        assert torch.isfinite(value).all(), name
    torch.testing.assert_close(inst.grade_probs.sum(-1), torch.ones(len(inst)))
    # Each found vertebra's box is the box around its keypoints padded by a tenth (clipped to the image).
    kps = inst.pred_keypoints[..., :2]
    lo, hi = kps.min(1).values, kps.max(1).values
    expected = torch.cat([lo - (hi - lo) * 0.1, hi + (hi - lo) * 0.1], 1)
    expected[:, 0::2] = expected[:, 0::2].clamp(0, inst.image_size[1])
    expected[:, 1::2] = expected[:, 1::2].clamp(0, inst.image_size[0])
    torch.testing.assert_close(inst.pred_boxes.tensor, expected, atol=1e-3, rtol=1e-4)


def test_fine_stage_alone_uses_ground_truth_boxes():
    model, cfg = build("xvfa_dino_r50_fine.py", **{"model.roi_head.crop_size": 64, "model.roi_head.num_samples": 50})
    assert model.detector is None
    model.train()
    losses = model(batch(True))
    assert set(losses) == {"loss_rle", "loss_gsq_kps", "loss_gsq_img"}
    model.eval()
    inputs = batch(False, keep_annotations=True)
    with torch.no_grad():
        inst = model(inputs)[0]["instances"]
    scale = inputs[0]["width"] / inputs[0]["image"].shape[-1]
    torch.testing.assert_close(inst.pred_boxes.tensor, inputs[0]["instances"].gt_boxes.tensor * scale)
    with pytest.raises(ValueError, match="needs a detector"):
        from xvfa_ext.modeling import XVFA

        XVFA(None, model.roi_head, train_detector=True)


def test_fine_stage_crops_from_full_resolution():
    """The same radiographs with the detector's input halved or not: the fine stage sees the same crops."""
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import VertebraDatasetMapper

    model, _ = build("xvfa_dino_r50_fine.py", **{"model.roi_head.crop_size": 64, "model.roi_head.num_samples": 50})
    records = DatasetCatalog.get("xvfa_synthetic_small_train")[:2]
    inputs = {factor: [VertebraDatasetMapper(True, [], resize_factor=factor)(r) for r in records] for factor in (0.5, 1.0)}
    assert "fine_image" in inputs[0.5][0] and "fine_image" not in inputs[1.0][0]
    model.eval()
    with torch.no_grad():
        half, full = (model(inputs[factor])[0]["instances"] for factor in (0.5, 1.0))
    model.train()  # after inference: training forwards move the BatchNorm statistics
    losses = {}
    for factor in (0.5, 1.0):
        torch.manual_seed(0)  # the same box jitter and vertebra choice
        losses[factor] = model(inputs[factor])
    half_losses, full_losses = losses[0.5], losses[1.0]
    for name, value in full_losses.items():
        torch.testing.assert_close(half_losses[name], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(half.pred_keypoints, full.pred_keypoints, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(half.pred_keypoint_eps, full.pred_keypoint_eps, rtol=1e-4, atol=1e-3)


def test_a_vertebra_found_twice_is_kept_once():
    from detectron2.config import instantiate
    from detectron2.structures import Boxes, Instances

    from xvfa_ext.modeling import XVFA

    class Detections(torch.nn.Module):
        """A detector's answer: two vertebrae, the first found twice, and a low-scoring box."""

        def forward(self, batched_inputs):
            inst = Instances((96, 64))
            inst.pred_boxes = Boxes(torch.tensor([[10.0, 10, 50, 30], [11, 11, 51, 31], [10, 32, 50, 52], [0, 0, 20, 20]]))
            inst.scores = torch.tensor([0.8, 0.9, 0.7, 0.1])
            return [{"instances": inst}]

    _, cfg = build("xvfa_dino_r50_smoke.py", **{"model.roi_head.num_samples": 50})
    model = XVFA(Detections(), instantiate(cfg.model.roi_head), train_detector=False, score_threshold=0.2).eval()
    inputs = {"image": torch.zeros(3, 48, 32, dtype=torch.uint8), "fine_image": torch.zeros(3, 96, 64, dtype=torch.uint8),
              "height": 96, "width": 64}
    with torch.no_grad():
        inst = model([inputs])[0]["instances"]
    torch.testing.assert_close(inst.scores, torch.tensor([0.9, 0.7]))
    torch.testing.assert_close(inst.pred_boxes.tensor, torch.tensor([[11.0, 11, 51, 31], [10, 32, 50, 52]]))
    with pytest.raises(ValueError, match="nms_threshold"):
        XVFA(Detections(), model.roi_head, train_detector=False, nms_threshold=0.0)


@pytest.mark.parametrize("config, kps, img", [("xvfa_fine_kps_regression.py", 0, 0), ("xvfa_fine_gsq.py", 1, 0),
                                              ("xvfa_fine_image.py", 0, 1), ("xvfa_fine_gsq_image.py", 1, 1)])
def test_ablation_configs(config, kps, img):
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(str(CONFIGS / "ablations" / config))
    assert (cfg.model.roi_head.head.lambda_kps, cfg.model.roi_head.head.lambda_img) == (kps, img)
    assert cfg.model.detector is None


def test_training_crops_per_image_prefer_labelled_vertebrae():
    from detectron2.structures import Boxes, Instances

    from xvfa_ext.modeling import VertebraROIHead
    from xvfa_ext.vertebra_head import VertebraHead

    head = VertebraROIHead(VertebraHead(), crop_size=32, crops_per_image=3)
    inst = Instances((100, 100))
    inst.gt_boxes = Boxes(torch.arange(8.0)[:, None].repeat(1, 4) + torch.tensor([0.0, 0.0, 10.0, 10.0]))
    inst.gt_imputed = torch.tensor([True, False, True, True, False, True, True, True])
    picked = head._subsample(inst)
    assert len(picked) == 3 and int((~picked.gt_imputed).sum()) == 2


def test_classification_losses_wait_for_the_keypoints():
    from detectron2.utils.events import EventStorage

    model, _ = build("xvfa_dino_r50_fine.py", **{"model.roi_head.crop_size": 64,
                                                 "model.roi_head.classification_warmup_iters": 4})
    model.train()
    inputs = batch(True)

    def losses_at(iteration):
        torch.manual_seed(1)  # the same crops and jitter at every iteration
        with EventStorage(start_iter=iteration):
            return {k: float(v.detach()) for k, v in model(inputs).items()}

    full = losses_at(10)
    assert full["loss_gsq_kps"] > 0 and full["loss_gsq_img"] > 0
    for iteration, factor in ((0, 0.0), (3, 0.0), (5, 0.5), (7, 1.0)):
        losses = losses_at(iteration)
        assert losses["loss_rle"] == pytest.approx(full["loss_rle"], rel=1e-4)
        for name in ("loss_gsq_kps", "loss_gsq_img"):
            assert losses[name] == pytest.approx(factor * full[name], rel=1e-4, abs=1e-7), (iteration, name)
    torch.manual_seed(1)
    outside_trainer = model(inputs)  # no event storage: full weight
    assert float(outside_trainer["loss_gsq_img"]) == pytest.approx(full["loss_gsq_img"], rel=1e-4)


def test_a_film_and_its_double_size_copy_give_the_same_keypoints(tmp_path):
    """Sizes in vertebra units: a film twice as large (vertebrae twice as tall) is seen at the same
    scale by the detector and the fine stage, so its keypoints in original pixels are the film's."""
    from detectron2.data import DatasetCatalog

    from xvfa_ext.crops import crop_vertebrae
    from xvfa_ext.data import VertebraDatasetMapper
    from xvfa_ext.scale import write_scaled_film

    model, _ = build("xvfa_dino_r50_fine.py", **{"model.roi_head.crop_size": 32, "model.roi_head.num_samples": 50,
                                                 "model.roi_head.head.compile_inference": False})
    record = DatasetCatalog.get("xvfa_synthetic_small_train")[0]
    double = write_scaled_film(record, 2, tmp_path / "double.png")
    # The small films' vertebrae are about 13 px tall: the fine stage sees them at 10 px, the detector at 6.5.
    mapper = VertebraDatasetMapper(False, [], keep_annotations=True, detector_vertebra_height=6.5,
                                   fine_vertebra_height=10, vertebra_height=13.0)
    twice = VertebraDatasetMapper(False, [], keep_annotations=True, detector_vertebra_height=6.5,
                                  fine_vertebra_height=10, vertebra_height=26.0)
    inputs = [mapper(record), twice(double)]
    for key in ("image", "fine_image"):
        assert abs(inputs[0][key].shape[-1] - inputs[1][key].shape[-1]) <= 1
        assert abs(inputs[0][key].shape[-2] - inputs[1][key].shape[-2]) <= 1
    # The crops of each vertebra agree: the fine stage sees the same pixels.
    fine = [x["fine_image"][None].float().mean(1, keepdim=True) / 255 for x in inputs]
    factor = [x["fine_image"].shape[-1] / x["image"].shape[-1] for x in inputs]
    boxes = [x["instances"].gt_boxes.tensor * f for x, f in zip(inputs, factor)]
    crops = [crop_vertebrae(f, b, torch.zeros(len(b)), 32) for f, b in zip(fine, boxes)]
    assert (crops[0] - crops[1]).abs().mean() < 0.02
    model.eval()
    with torch.no_grad():
        small, large = (model([x])[0]["instances"] for x in inputs)
    difference = (small.pred_keypoints[..., :2] - large.pred_keypoints[..., :2] / 2).norm(dim=-1)
    assert difference.max() < 0.5, f"keypoints differ by up to {difference.max():.2f} px of the film"
