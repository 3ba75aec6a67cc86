"""The XVFA meta-architecture: a box detector, then the fine stage on each vertebra (paper Fig. 2)."""

from typing import Dict, List, Optional

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances, Keypoints
from torch import nn
from torchvision.ops import nms

from ..crops import boxes_around_points
from ..ensemble import ensemble_instances
from ..prediction_fields import BY_NAME, rescale_field
from .roi_head import VertebraROIHead, grayscale_images


@META_ARCH_REGISTRY.register()
class XVFA(nn.Module):
    """Detector (detrex's DINO, one class) plus :class:`VertebraROIHead`.

    ``train_detector`` and ``train_fine`` choose what trains: both, the detector alone, or the fine
    stage alone on ground-truth boxes with the detector frozen (or ``detector=None``). At inference
    the fine stage runs on the detector's boxes scoring at least ``score_threshold`` (at most
    ``max_vertebrae`` per image, none overlapping another by more than ``nms_threshold`` IoU: a
    vertebra found twice is kept once), or on the ground-truth boxes when there is no detector. The
    detector sees the half-resolution ``image``; the fine stage crops from the full-resolution
    ``fine_image`` where the mapper gives one (:class:`~xvfa_ext.data.VertebraDatasetMapper`).

    With ``keypoint_box_padding`` set, each detected vertebra's output box is the box around its
    predicted keypoints, padded by that fraction of their extent as the annotations pad theirs (0.1
    for ``datasets/convert_points.py`` and the synthetic data): the fine stage places a vertebra more
    precisely than the detector's box does. Given boxes (no detector) are kept as given.
    """

    def __init__(
        self,
        detector: Optional[nn.Module],
        roi_head: VertebraROIHead,
        train_detector: bool = True,
        train_fine: bool = True,
        score_threshold: float = 0.2,
        max_vertebrae: int = 20,
        nms_threshold: float = 0.5,
        keypoint_box_padding: Optional[float] = None,
    ):
        super().__init__()
        if detector is None and train_detector:
            raise ValueError("train_detector=True needs a detector")
        if not (train_detector or train_fine):
            raise ValueError("nothing to train: set train_detector or train_fine")
        self.detector = detector
        self.roi_head = roi_head
        self.train_detector = train_detector
        self.train_fine = train_fine
        self.score_threshold = score_threshold
        self.max_vertebrae = max_vertebrae
        if not 0 < nms_threshold <= 1:
            raise ValueError(f"nms_threshold must lie in (0, 1], got {nms_threshold}")
        self.nms_threshold = nms_threshold
        if keypoint_box_padding is not None and keypoint_box_padding < 0:
            raise ValueError(f"keypoint_box_padding must be non-negative or None, got {keypoint_box_padding}")
        self.keypoint_box_padding = keypoint_box_padding
        if detector is not None and not train_detector:
            detector.requires_grad_(False)
        if not train_fine:
            roi_head.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.roi_head.parameters()).device

    def train(self, mode: bool = True):
        super().train(mode)
        if self.detector is not None and not self.train_detector:
            self.detector.eval()  # frozen: its batch statistics and dropout stay as trained
        return self

    def forward(self, batched_inputs: List[Dict]):
        if self.training:
            return self.losses(batched_inputs)
        return self.inference(batched_inputs)

    def losses(self, batched_inputs: List[Dict]) -> Dict[str, torch.Tensor]:
        losses = {}
        if self.train_detector:
            losses.update(self.detector(batched_inputs))
        if self.train_fine:
            images = grayscale_images(batched_inputs, self.device)
            instances = [
                _to_fine_image(x["instances"].to(self.device), _fine_image_factor(x, size), size)
                for x, size in zip(batched_inputs, images.image_sizes)
            ]
            losses.update(self.roi_head.losses(images, instances))
        return losses

    def vertebra_boxes(self, batched_inputs: List[Dict], image_sizes):
        """Per image, the vertebrae's boxes in the pixels of the image the crops come from, and their
        scores: the detector's, thresholded and nms'ed, or the ground truth's where there is no detector.

        Returns:
            boxes: per image a ``(N_i, 4)`` XYXY tensor; scores: per image ``(N_i,)``.
        """
        if self.detector is None:
            boxes = [
                x["instances"].gt_boxes.tensor.to(self.device) * _box_factor(_fine_image_factor(x, size), self.device)
                for x, size in zip(batched_inputs, image_sizes)
            ]
            return boxes, [torch.ones(len(b), device=self.device) for b in boxes]
        boxes, scores = [], []
        for x, detections, size in zip(batched_inputs, self.detector(batched_inputs), image_sizes):
            inst = select_detections(detections["instances"], self.score_threshold, self.nms_threshold, self.max_vertebrae)
            # DINO answers in the original image's pixels.
            h, w = _original_size(x)
            boxes.append(inst.pred_boxes.tensor * _box_factor((size[1] / w, size[0] / h), self.device))
            scores.append(inst.scores)
        return boxes, scores

    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        images = grayscale_images(batched_inputs, self.device)
        boxes, scores = self.vertebra_boxes(batched_inputs, images.image_sizes)
        return self.outputs(batched_inputs, self.roi_head(images, boxes, scores))

    def outputs(self, batched_inputs: List[Dict], results: List[Instances]) -> List[Dict]:
        """The fine stage's results as outputs, ``[{"instances": Instances}]`` in the radiograph's pixels,
        with boxes from keypoints where ``keypoint_box_padding`` is set."""
        if self.keypoint_box_padding is not None and self.detector is not None:
            for result in results:
                refined = Boxes(boxes_around_points(result.pred_keypoints[..., :2], self.keypoint_box_padding))
                refined.clip(result.image_size)
                result.pred_boxes = refined
        return [
            {"instances": _rescale(result, *_original_size(x))} for x, result in zip(batched_inputs, results)
        ]


class XVFAEnsemble(nn.Module):
    """Several trained XVFA models (for example the five fold models) as one, for inference.

    The first model's detector finds the vertebrae (or the ground-truth boxes are used, as by one
    model); every model's fine stage places keypoints on those boxes, and
    :func:`~xvfa_ext.ensemble.ensemble_instances` combines them: the mean keypoints and
    probabilities, the mean within-model interval (aleatoric) and the spread between the models
    (epistemic). The first model's settings (thresholds, box padding) apply.
    """

    def __init__(self, models: List[XVFA]):
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(models)}")
        self.models = nn.ModuleList(models)

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        if self.training:
            raise RuntimeError("XVFAEnsemble is for inference: train its models one by one")
        lead = self.models[0]
        images = grayscale_images(batched_inputs, lead.device)
        boxes, scores = lead.vertebra_boxes(batched_inputs, images.image_sizes)
        per_model = [model.roi_head(images, boxes, scores) for model in self.models]
        return lead.outputs(batched_inputs, [ensemble_instances(list(r)) for r in zip(*per_model)])


def as_one_model(models: List[nn.Module]) -> nn.Module:
    """One model for inference from trained ones: the model itself, or several as an :class:`XVFAEnsemble`."""
    if not models:
        raise ValueError("no model to predict with")
    return models[0] if len(models) == 1 else XVFAEnsemble(models)


def load_trained_models(build, weights) -> List[nn.Module]:
    """``build()`` once per checkpoint file of ``weights``, each loaded by :class:`XVFACheckpointer`
    (one line naming a file that is not an XVFA checkpoint)."""
    from .checkpointer import XVFACheckpointer

    models = []
    for path in weights:
        models.append(build())
        XVFACheckpointer(models[-1]).load(str(path))
    return models


def select_detections(instances: Instances, score_threshold: float, nms_threshold: float, max_count: int) -> Instances:
    """The detections scoring at least ``score_threshold``, best first, none overlapping a better one
    by more than ``nms_threshold`` IoU (one vertebra found twice is kept once), at most ``max_count``."""
    instances = instances[instances.scores >= score_threshold]
    return instances[nms(instances.pred_boxes.tensor, instances.scores, nms_threshold)[:max_count]]


def _original_size(x: Dict):
    """(height, width) of the radiograph before the mapper's resize: what outputs are given in."""
    return x.get("height", x["image"].shape[-2]), x.get("width", x["image"].shape[-1])


def _fine_image_factor(x: Dict, crop_image_size):
    """(x, y) factors from the detector's input pixels to those of the image the crops come from
    (``fine_image``, or ``image`` itself)."""
    return crop_image_size[1] / x["image"].shape[-1], crop_image_size[0] / x["image"].shape[-2]


def _box_factor(factor, device: torch.device) -> torch.Tensor:
    return torch.tensor([factor[0], factor[1]] * 2, device=device)


def _to_fine_image(instances: Instances, factor, size) -> Instances:
    """Ground truth moved from the detector's input pixels to those of the image the crops come from."""
    moved = Instances(size, **instances.get_fields())
    moved.gt_boxes = Boxes(instances.gt_boxes.tensor * _box_factor(factor, instances.gt_boxes.device))
    keypoints = instances.gt_keypoints.tensor
    moved.gt_keypoints = Keypoints(keypoints * keypoints.new_tensor([factor[0], factor[1], 1.0]))
    return moved


def _rescale(result, height: int, width: int):
    """Every field of :mod:`xvfa_ext.prediction_fields` from the pixels the crops came from to the
    original image's: boxes and keypoints by detectron2's ``detector_postprocess``, the rest by frame."""
    h, w = result.image_size
    sx, sy = width / w, height / h
    for name, value in list(result.get_fields().items()):
        if name in BY_NAME:
            result.set(name, rescale_field(name, value, sx, sy))
    return detector_postprocess(result, height, width)
