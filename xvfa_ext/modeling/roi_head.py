"""The fine stage as an ROI head: vertebra crops from the full-resolution image through :class:`VertebraHead`."""

from typing import Dict, List, Optional

import torch
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from ..crops import boxes_around_points, crop_vertebrae, enlarge_boxes, from_crop, jitter_boxes, to_crop
from ..layout import flip_indices
from ..prediction_fields import HEAD_FIELDS
from ..refine import KeypointRefiner
from ..uncertainty import COVERAGE_LEVELS, DEFAULT_ALPHA, DEFAULT_NUM_SAMPLES, interval_radii
from ..vertebra_head import VertebraHead


def _clipped(boxes: torch.Tensor, image_size) -> torch.Tensor:
    clipped = Boxes(boxes)
    clipped.clip(image_size)
    return clipped.tensor


def grayscale_images(batched_inputs: List[Dict], device: torch.device) -> ImageList:
    """What the crops are cut from, as one padded batch of grayscale in [0, 1]: each input's
    full-resolution ``fine_image``, or its ``image`` where the mapper gives no other."""
    images = [
        x.get("fine_image", x["image"]).to(device=device, dtype=torch.float32).mean(0, keepdim=True) / 255
        for x in batched_inputs
    ]
    return ImageList.from_tensors(images)


class VertebraROIHead(nn.Module):
    """Crops ``crop_size`` squares around vertebra boxes and runs the fine stage on them.

    Training uses ground-truth boxes enlarged by up to ``box_scale`` and shifted by up to
    ``box_shift`` pixels (paper suppl. Table 4), at most ``crops_per_image`` vertebrae of each image
    (labelled before imputed, in random order). Inference crops the boxes it is given enlarged by
    half of ``box_scale``, the training crops' mean: the context around a vertebra (its posterior
    arch, which tells posterior from anterior after a flip) is then what training showed on average.

    ``test_flip`` (a view, ``lateral`` or ``frontal``) averages each vertebra's keypoints over its
    crop and the crop mirrored, relabelled by that view's flip map; off (None) by default.

    ``refine_patch`` (pixels; None, off, by default) adds a cascade: each keypoint is refined from
    a ``refine_patch`` px patch around it, ``refine_fraction`` of its crop box's height on a side,
    cut from the same image (:class:`xvfa_ext.refine.KeypointRefiner`). The refined points are the
    head's keypoints: the density, GSQ and every output read them.

    ``recrop_padding`` (a fraction; None, off, by default) looks at each vertebra twice at
    inference: the fine stage runs on the given box, then once more on the box around its keypoints
    padded by that fraction of their extent, as the annotations pad their boxes (0.1 for
    ``datasets/convert_points.py`` and the synthetic data): a loose or shifted box from a detector
    is replaced by one like the annotated boxes the fine stage trained on. Every output comes from
    the second look; the output boxes stay the given ones. What it measured: README, "A second look".

    The classification terms of eq. 8 (GSQ-guided and image) are off for the first
    ``classification_warmup_iters`` iterations and ramp up linearly over as many again: from random
    initialisation they would otherwise shape the shared ResNet-18 before it has learned to tell
    posterior from anterior, and the keypoints settle between the two.
    """

    def __init__(
        self,
        head: VertebraHead,
        crop_size: int = 224,
        box_scale: float = 0.35,
        box_shift: float = 10.0,
        alpha: float = DEFAULT_ALPHA,
        num_samples: int = DEFAULT_NUM_SAMPLES,
        crops_per_image: Optional[int] = None,
        classification_warmup_iters: int = 0,
        test_flip: Optional[str] = None,
        refine_patch: Optional[int] = None,
        refine_fraction: float = 0.4,
        recrop_padding: Optional[float] = None,
    ):
        super().__init__()
        if recrop_padding is not None and recrop_padding < 0:
            raise ValueError(f"recrop_padding must be non-negative or None, got {recrop_padding}")
        self.recrop_padding = recrop_padding
        self.refiner = KeypointRefiner(refine_patch, refine_fraction) if refine_patch is not None else None
        self.test_flip = flip_indices(test_flip) if test_flip is not None else None
        self.head = head
        self.crops_per_image = crops_per_image
        self.crop_size = crop_size
        self.box_scale = box_scale
        self.box_shift = box_shift
        self.alpha = alpha
        self.num_samples = num_samples
        if classification_warmup_iters < 0:
            raise ValueError(f"classification_warmup_iters must be non-negative, got {classification_warmup_iters}")
        self.classification_warmup_iters = classification_warmup_iters

    def _crops(self, images: ImageList, boxes: List[torch.Tensor]):
        batch_index = torch.cat([torch.full((len(b),), i, device=images.tensor.device) for i, b in enumerate(boxes)])
        flat = torch.cat(boxes)
        crops = crop_vertebrae(images.tensor, flat, batch_index, self.crop_size)
        return crops, flat, batch_index

    def _refine(self, images: ImageList, flat: torch.Tensor, batch_index: torch.Tensor):
        """The cascade's step for :class:`VertebraHead`: crop-coordinate points in, refined ones out."""
        if self.refiner is None:
            return None
        heights = flat[:, 3] - flat[:, 1]

        def refine(mu: torch.Tensor) -> torch.Tensor:
            points = self.refiner(images.tensor, from_crop(mu, flat), batch_index, heights)
            return to_crop(points, flat)

        return refine

    def _context_boxes(self, images: ImageList, boxes: List[torch.Tensor]) -> List[torch.Tensor]:
        factor = 1 + self.box_scale / 2
        return [_clipped(enlarge_boxes(b, factor), size) for b, size in zip(boxes, images.image_sizes)]

    def _subsample(self, inst: Instances) -> Instances:
        if self.crops_per_image is None or len(inst) <= self.crops_per_image:
            return inst
        order = torch.randperm(len(inst), device=inst.gt_imputed.device)
        order = order[torch.argsort(inst.gt_imputed[order].int(), stable=True)]
        return inst[order[: self.crops_per_image]]

    def losses(self, images: ImageList, instances: List[Instances]) -> Dict[str, torch.Tensor]:
        device = images.tensor.device
        instances = [self._subsample(inst) for inst in instances]
        boxes = [
            _clipped(jitter_boxes(inst.gt_boxes.tensor.to(device), self.box_scale, self.box_shift), size)
            for inst, size in zip(instances, images.image_sizes)
        ]
        crops, flat, batch_index = self._crops(images, boxes)
        keypoints = torch.cat([inst.gt_keypoints.tensor for inst in instances]).to(device)
        outputs = self.head(crops, flat[:, 2:] - flat[:, :2], refine=self._refine(images, flat, batch_index))
        targets = {
            "keypoints": to_crop(keypoints[..., :2], flat),
            "visible": keypoints[..., 2] > 0,
            "grade": torch.cat([inst.gt_grade for inst in instances]).to(device),
            "morphology": torch.cat([inst.gt_morphology for inst in instances]).to(device),
            "imputed": torch.cat([inst.gt_imputed for inst in instances]).to(device),
        }
        return self.head.losses(outputs, targets, self._classification_factor())

    def _classification_factor(self) -> float:
        warmup = self.classification_warmup_iters
        if warmup == 0:
            return 1.0
        try:
            iteration = get_event_storage().iter
        except AssertionError:  # outside a trainer: no schedule to follow
            return 1.0
        return min(1.0, max(0.0, (iteration + 1 - warmup) / warmup))

    def _look(self, images: ImageList, boxes: List[torch.Tensor]):
        """The head's outputs on crops of ``boxes`` enlarged to the training crops' mean context, and
        those crops' boxes ``(N, 4)`` in image pixels."""
        crops, flat, batch_index = self._crops(images, self._context_boxes(images, boxes))
        outputs = self.head(crops, flat[:, 2:] - flat[:, :2], self.test_flip, self._refine(images, flat, batch_index))
        return outputs, flat

    def _keypoint_boxes(self, boxes: List[torch.Tensor], outputs, flat: torch.Tensor) -> List[torch.Tensor]:
        """Per image, the box around each vertebra's first-look keypoints, padded by ``recrop_padding``;
        the given box where the keypoints span under a pixel on an axis."""
        given = torch.cat(boxes)
        around = boxes_around_points(from_crop(outputs["mu"], flat), self.recrop_padding)
        wide = ((around[:, 2:] - around[:, :2]) >= 1).all(dim=1, keepdim=True)
        chosen = torch.where(wide, around, given)
        return list(chosen.split([len(b) for b in boxes]))

    def forward(self, images: ImageList, boxes: List[torch.Tensor], scores: Optional[List[torch.Tensor]] = None) -> List[Instances]:
        """Per image, ``Instances`` in the pixels of ``images`` with keypoints, intervals and GSQ results."""
        if scores is None:
            scores = [torch.ones(len(b), device=b.device) for b in boxes]
        results = [Instances(size) for size in images.image_sizes]
        counts = [len(b) for b in boxes]
        outputs, flat = self._look(images, boxes)
        if self.recrop_padding is not None:
            outputs, flat = self._look(images, self._keypoint_boxes(boxes, outputs, flat))
        u = self.head.uncertainty(outputs, flat, self.alpha, self.num_samples)
        keypoints = from_crop(outputs["mu"], flat)
        eps_levels = interval_radii(u.samples, keypoints, COVERAGE_LEVELS)
        scale_px = outputs["scale"] * (flat[:, 2:] - flat[:, :2])[:, None, :]
        values = {
            "pred_keypoint_scale": scale_px,
            "pred_keypoint_eps": u.eps,
            "pred_keypoint_eps_levels": eps_levels,
            "grade_probs": outputs["grade"],
            "grade_probs_kps": outputs["grade_kps"],
            "grade_probs_img": outputs["grade_img"],
            "grade_probs_mean": u.combined_grade_mean,
            "grade_probs_std": u.combined_grade_std,
            "morphology_probs": outputs["morphology"],
            "morphology_probs_kps": outputs["morphology_kps"],
            "morphology_probs_img": outputs["morphology_img"],
            "morphology_probs_mean": u.combined_morphology_mean,
            "morphology_probs_std": u.combined_morphology_std,
        }
        score = torch.cat(scores)
        given = torch.cat(boxes)
        values["pred_keypoints"] = torch.cat([keypoints, score[:, None, None].expand(-1, keypoints.shape[1], 1)], -1)
        fields = {name: values[name] for name in HEAD_FIELDS}  # xvfa_ext.prediction_fields: one list
        start = 0
        for result, count in zip(results, counts):
            part = slice(start, start + count)
            result.pred_boxes = Boxes(given[part])
            result.scores = score[part]
            result.pred_classes = torch.zeros(count, dtype=torch.int64, device=flat.device)
            for name, value in fields.items():
                result.set(name, value[part])
            start += count
        return results
