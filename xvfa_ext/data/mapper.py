"""Dataset mapper for vertebra radiographs: reads, augments and packs boxes, keypoints and GSQ labels."""

import copy
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from ..layout import NUM_KEYPOINTS
from ..radiograph_io import read_radiograph
from ..scale import ImageScale, check_height, resize_factors
from ..synthetic import vertebra_box
from .catalog import dataset_vertebra_height
from .transforms import RandomBlur, RandomEqualize, RandomGamma, RandomInvert, RandomNoise

logger = logging.getLogger(__name__)


def build_augmentations(
    is_train: bool, rotation: float = 15.0, flip: bool = True, photometric: bool = False
) -> List[T.Augmentation]:
    """Paper suppl. Table 4: equalisation, inversion, rotation, flips and blur (none at test time).

    ``rotation`` is 15 degrees for the detector and 20 for the keypoint stage. They apply to the
    fine stage's image; :class:`VertebraDatasetMapper` then resizes the detector's input.
    ``photometric`` adds other exposures before them: gamma 0.6-1.6 and contrast 0.7-1.3 (each with
    probability 0.5) and noise of 1-6 grey levels (0.3).
    """
    if not is_train:
        return []
    augs = []
    if photometric:
        augs += [RandomGamma(0.5), T.RandomApply(T.RandomContrast(0.7, 1.3), 0.5), RandomNoise(0.3)]
    augs += [RandomEqualize(0.5), RandomInvert(0.5), RandomBlur(0.3)]
    if rotation > 0:
        augs.append(T.RandomRotation(angle=[-rotation, rotation], expand=False, sample_style="range"))
    if flip:
        augs.append(T.RandomFlip(0.5, horizontal=True, vertical=False))
    return augs


def _point_padding(annotation: Dict) -> Optional[np.ndarray]:
    """How far an annotated box reaches beyond its six points on each axis, as a fraction of their extent.

    The mean of the two sides on each axis, shape (2,); None unless all six points are read.
    """
    points = np.asarray(annotation.get("keypoints", ()), dtype=np.float64).reshape(-1, 3)
    if len(points) != NUM_KEYPOINTS or (points[:, 2] <= 0).any():
        return None
    box = np.asarray(BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS))
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    return ((lo - box[:2]) + (box[2:] - hi)) / 2 / np.maximum(hi - lo, 1e-6)


def _box_around_points(annotation: Dict, padding: np.ndarray, shape: Tuple[int, int]) -> None:
    """Set a transformed annotation's box to its points' extent padded by ``padding``, in place.

    detectron2 rotates a box's corners and takes the box around them: 15 degrees loosen a vertebra's
    box by a fifth of its height on average (mean IoU 0.80 with the box around its rotated points), and
    a detector trained on such boxes places loose ones. Vertebrae with a point outside the image after
    the transform keep detectron2's box.
    """
    points = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
    if (points[:, 2] <= 0).any():
        return
    annotation["bbox"] = vertebra_box(points[:, :2], *shape, margin=padding)
    annotation["bbox_mode"] = BoxMode.XYWH_ABS


def _resize(shape, factor: float) -> T.ResizeTransform:
    """Resizing an image of ``shape`` (H, W, ...) by ``factor``, each side at least one pixel."""
    h, w = shape[:2]
    return T.ResizeTransform(h, w, max(1, round(h * factor)), max(1, round(w * factor)))


def _gray_tensor(gray: np.ndarray, channels: int) -> torch.Tensor:
    """An (H, W) grey array as the (channels, H, W) tensor detectron2 models take."""
    return torch.as_tensor(np.ascontiguousarray(np.repeat(gray[None], channels, axis=0)))


class VertebraDatasetMapper:
    """Maps a dataset dict to model input, like detectron2's DatasetMapper, keeping GSQ labels.

    ``image`` is the detector's input and ``fine_image`` the image the fine stage crops its
    vertebrae from (absent where the two are one). Their sizes are set in vertebra units: with
    ``detector_vertebra_height``, each film is resized so that the data's median vertebra
    (``vertebra_height`` pixels tall, by default read from ``dataset_names``' annotations) is that
    many pixels tall in ``image``, and no side of ``image`` is longer than ``max_size``;
    ``fine_image`` is the film at full resolution, or reduced so that the median vertebra is at most
    ``fine_vertebra_height`` pixels tall. A fixed ``resize_factor`` may be given instead of
    ``detector_vertebra_height``; without either it is 0.5, the paper's half resolution.
    Augmentations apply to ``fine_image``. A radiograph is one grey channel: the mapper resizes and
    augments that channel alone, ``fine_image`` is ``(1, H, W)`` and ``image`` repeats it as the
    three channels the detector takes.

    Instances, in ``image`` pixels, carry ``gt_boxes``, ``gt_classes``, ``gt_keypoints`` and per
    vertebra ``gt_grade``, ``gt_morphology`` and ``gt_imputed``. With ``keep_annotations`` the
    test-time inputs keep them too, for the fine stage on ground-truth boxes.
    """

    def __init__(
        self,
        is_train: bool,
        augmentations: Optional[List[T.Augmentation]] = None,
        keep_annotations: bool = False,
        resize_factor: Optional[float] = None,
        dataset_names: Optional[Union[str, Sequence[str]]] = None,
        detector_vertebra_height: Optional[float] = None,
        fine_vertebra_height: Optional[float] = None,
        vertebra_height: Optional[float] = None,
        max_size: Optional[int] = None,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations if augmentations is not None else build_augmentations(is_train))
        self.keep_annotations = keep_annotations or is_train
        names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names or [])
        if resize_factor is not None and detector_vertebra_height is not None:
            raise ValueError("give one of resize_factor (a fixed factor) and detector_vertebra_height (vertebra units)")
        if resize_factor is None and detector_vertebra_height is None:
            resize_factor = 0.5  # the paper's half resolution
        if resize_factor is not None and resize_factor <= 0:
            raise ValueError(f"resize factor must be positive, got {resize_factor}")
        self.resize_factor = resize_factor
        self.detector_vertebra_height = detector_vertebra_height
        self.fine_vertebra_height = fine_vertebra_height
        self.max_size = max_size
        self.vertebra_height = None
        if detector_vertebra_height is not None or fine_vertebra_height is not None:
            if vertebra_height is None:
                if not names:
                    raise ValueError("vertebra_height is unknown: give it in pixels, or the dataset_names to read it from")
                vertebra_height = dataset_vertebra_height(names)
            self.vertebra_height = check_height(vertebra_height, "vertebra_height")
            logger.info(self.describe_scale())
        # How a horizontal flip relabels keypoints is the datasets' view (their keypoint_flip_map):
        # not at all for a lateral film, which is also the default without dataset names.
        if names:
            self.keypoint_hflip_indices = utils.create_keypoint_hflip_indices(names)
        else:
            self.keypoint_hflip_indices = np.arange(NUM_KEYPOINTS)

    def describe_scale(self) -> str:
        """One line saying how films are resized, for the log."""
        if self.vertebra_height is None:
            return f"Films are resized by {self.resize_factor:g} for the detector; the fine stage crops at full resolution"
        scale = self.scale((1, 1))
        detector = (
            f"by {self.resize_factor:g}" if self.detector_vertebra_height is None else
            f"by {scale.detector:.4g} (median vertebra {self.vertebra_height:g} px -> {self.vertebra_height * scale.detector:.1f} px"
            + (f", long side at most {self.max_size} px" if self.max_size else "") + ")"
        )
        return (f"Films are resized {detector} for the detector and by {scale.fine:.4g} for the fine stage's crops "
                f"(median vertebra {self.vertebra_height * scale.fine:.1f} px)")

    def scale(self, image_size: Tuple[int, int]) -> ImageScale:
        """The fine and detector resize factors of a film of ``image_size`` (height, width)."""
        if self.vertebra_height is None:
            return ImageScale(fine=1.0, detector=self.resize_factor)
        scale = resize_factors(
            image_size, self.vertebra_height, self.detector_vertebra_height or 1.0, self.fine_vertebra_height, self.max_size
        )
        if self.detector_vertebra_height is None:
            scale = ImageScale(fine=scale.fine, detector=self.resize_factor)
        return scale

    def map_image(self, image: np.ndarray) -> Tuple[Dict[str, torch.Tensor], T.TransformList]:
        """``image`` and ``fine_image`` of an (H, W) uint8 grey radiograph
        (:func:`xvfa_ext.radiograph_io.read_radiograph`), and the transforms that made ``image``."""
        if image.ndim != 2:
            raise ValueError(f"map_image takes a grey (H, W) radiograph, got an array of shape {image.shape}")
        h, w = image.shape
        scale = self.scale((h, w))
        transforms = T.TransformList([])
        if scale.fine != 1:
            transforms = transforms + _resize(image.shape, scale.fine)
            image = transforms.apply_image(image)
        aug_input = T.AugInput(image)
        transforms = transforms + self.augmentations(aug_input)
        image = aug_input.image
        inputs = {}
        detector = scale.detector / scale.fine
        if detector != 1:
            inputs["fine_image"] = _gray_tensor(image, 1)
            resize = _resize(image.shape, detector)
            image = resize.apply_image(image)
            transforms = transforms + resize
        inputs["image"] = _gray_tensor(image, 3)
        return inputs, transforms

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image, _, _ = read_radiograph(dataset_dict["file_name"])
        utils.check_image_size(dataset_dict, image)
        inputs, transforms = self.map_image(image)
        dataset_dict.update(inputs)
        shape = tuple(inputs["image"].shape[1:])
        annotations = dataset_dict.pop("annotations", None)
        if not self.keep_annotations or annotations is None:
            return dataset_dict
        annotations = [a for a in annotations if a.get("iscrowd", 0) == 0]
        rotated = any(isinstance(t, T.RotationTransform) for t in transforms.transforms)
        paddings = [_point_padding(a) if rotated else None for a in annotations]
        annos = [
            utils.transform_instance_annotations(a, transforms, shape, keypoint_hflip_indices=self.keypoint_hflip_indices)
            for a in annotations
        ]
        for anno, padding in zip(annos, paddings):
            if padding is not None:
                _box_around_points(anno, padding, shape)
        instances = utils.annotations_to_instances(annos, shape)
        instances.gt_grade = torch.tensor([a["grade"] for a in annos], dtype=torch.int64)
        instances.gt_morphology = torch.tensor([a["morphology"] for a in annos], dtype=torch.int64)
        instances.gt_imputed = torch.tensor([bool(a.get("imputed", False)) for a in annos], dtype=torch.bool)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict
