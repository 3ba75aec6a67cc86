"""Table 2's learned baselines (paper section 3.4): DINO detecting grades, and an image-level CNN.

- :class:`DINOGrade`: DINO-R50 whose four categories are the grades, without keypoints. Each box's
  class probabilities, normalised over the grades, are its grade probabilities; the evaluator scores
  them as the ``box`` score (:data:`~xvfa_ext.metrics.BOX_SCORES`).
- :class:`ImageGradeCNN`: a torchvision classifier of an image's worst grade. The paper used an
  ImageNet-pretrained Inception-ResNet-v2, which torchvision does not have; its closest model is
  Inception-v3 (``torchvision.models.inception_v3``), random-initialised here, as every weight is.
  :class:`~xvfa_ext.evaluation.ImageGradeEvaluator` aggregates it per patient.
"""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.logger import log_first_n
from detrex.layers import box_cxcywh_to_xyxy
from torch import nn
from torchvision.models import inception_v3

from ..gsq import GRADES, INVALID
from ..metrics import worst_read_grade
from .dino import DINO
from .meta_arch import select_detections


def _graded(instances: Instances) -> Instances:
    """A vertebra without a valid grade is no target: its box would teach the detector background."""
    keep = instances.gt_grade != INVALID
    if not keep.all():
        log_first_n(
            30, f"{int((~keep).sum())} vertebra(e) without a grade left out of a grade detector's targets (logged once)", n=1
        )
    return instances[keep]


class GradeDINO(DINO):
    """DINO whose results keep every class's probability per query, not the top query-class pairs.

    Each query scores its most probable class; ``grade_probs`` ``(N, K)`` are its class
    probabilities (sigmoid, as DINO's focal loss trains them) normalised to sum to one.
    """

    def inference(self, box_cls: torch.Tensor, box_pred: torch.Tensor, image_sizes) -> List[Instances]:
        """
        Args:
            box_cls: ``(B, Q, K)`` class logits.
            box_pred: ``(B, Q, 4)`` boxes, normalised cx, cy, w, h.
            image_sizes: B (height, width) of the padded inputs' images.

        Returns:
            B ``Instances`` of ``select_box_nums_for_evaluation`` queries, best first: ``pred_boxes``
            (XYXY in input pixels), ``scores``, ``pred_classes`` (0: a vertebra) and ``grade_probs``.
        """
        prob = box_cls.sigmoid()
        scores, _ = prob.max(-1)
        count = min(self.select_box_nums_for_evaluation, scores.shape[1])
        results = []
        for s, p, boxes, size in zip(scores, prob, box_pred, image_sizes):
            top = s.topk(count).indices
            result = Instances(size)
            result.pred_boxes = Boxes(box_cxcywh_to_xyxy(boxes[top]))
            result.pred_boxes.scale(scale_x=size[1], scale_y=size[0])
            result.scores = s[top]
            result.pred_classes = torch.zeros_like(top)
            result.grade_probs = p[top] / p[top].sum(-1, keepdim=True).clamp_min(1e-12)
            results.append(result)
        return results


@META_ARCH_REGISTRY.register()
class DINOGrade(nn.Module):
    """Table 2's "DINO": a detector of the four grades, trained with the detector's settings.

    Training replaces each vertebra's class by its grade (vertebrae without one are left out, and
    logged). Inference keeps the boxes scoring at least ``score_threshold`` after class-agnostic nms,
    as :class:`~xvfa_ext.modeling.XVFA` does, with their ``grade_probs`` ``(N, 4)``.
    """

    def __init__(self, detector: GradeDINO, score_threshold: float = 0.2, nms_threshold: float = 0.5, max_vertebrae: int = 20):
        super().__init__()
        if detector.num_classes != len(GRADES):
            raise ValueError(f"a grade detector has {len(GRADES)} classes (the grades), got num_classes={detector.num_classes}")
        self.detector = detector
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_vertebrae = max_vertebrae

    def forward(self, batched_inputs: List[Dict]):
        if self.training:
            graded = []
            for x in batched_inputs:
                instances = _graded(x["instances"])
                instances.gt_classes = instances.gt_grade
                graded.append(dict(x, instances=instances))
            return self.detector(graded)
        return [
            {"instances": select_detections(d["instances"], self.score_threshold, self.nms_threshold, self.max_vertebrae)}
            for d in self.detector(batched_inputs)
        ]


@META_ARCH_REGISTRY.register()
class ImageGradeCNN(nn.Module):
    """Table 2's image-level CNN: an image's worst grade from the whole image (paper refs. 17, 18).

    Inception-v3 from torchvision, random-initialised (``weights``: a local state dict file to load),
    on the detector's input ``image`` scaled to [-1, 1]. Trained by cross-entropy on the worst grade
    of the image's read vertebrae (an image without a graded, read vertebra adds no loss, and is
    logged); inference gives ``{"image_grade_probs": (4,)}`` per image.
    """

    def __init__(self, weights: Optional[str] = None):
        super().__init__()
        self.net = inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=len(GRADES))
        if weights:
            self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _logits(self, batched_inputs: List[Dict]) -> torch.Tensor:
        images = [x["image"].to(self.device, torch.float32) / 127.5 - 1 for x in batched_inputs]
        images = [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in images]
        return self.net(ImageList.from_tensors(images, pad_value=-1.0).tensor)

    def forward(self, batched_inputs: List[Dict]):
        logits = self._logits(batched_inputs)
        if not self.training:
            return [{"image_grade_probs": p} for p in logits.softmax(-1)]
        targets = torch.tensor(
            [worst_read_grade(x["instances"].gt_grade.tolist(), x["instances"].gt_imputed.tolist()) for x in batched_inputs],
            device=self.device,
        )
        graded = targets != INVALID
        if not graded.all():
            log_first_n(30, f"{int((~graded).sum())} image(s) without a graded, read vertebra add no loss (logged once)", n=1)
        if not graded.any():
            return {"loss_image_grade": logits.sum() * 0.0}
        return {"loss_image_grade": F.cross_entropy(logits[graded], targets[graded])}
