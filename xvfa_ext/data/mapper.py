"""Dataset mapper for vertebra radiographs: reads, augments and packs boxes, keypoints and GSQ labels."""

import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from ..layout import NUM_KEYPOINTS
from ..radiograph_io import read_radiograph
from ..synthetic import vertebra_box
from .transforms import RandomBlur, RandomEqualize, RandomInvert, ResizeByFactor


def build_augmentations(is_train: bool, rotation: float = 15.0, flip: bool = True) -> List[T.Augmentation]:
    """Paper suppl. Table 4: equalisation, inversion, rotation, flips and blur (none at test time).

    ``rotation`` is 15 degrees for the detector and 20 for the keypoint stage. They apply at full
    resolution; :class:`VertebraDatasetMapper` then halves the detector's input.
    """
    if not is_train:
        return []
    augs = [RandomEqualize(0.5), RandomInvert(0.5), RandomBlur(0.3)]
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


def _chw_tensor(image: np.ndarray) -> torch.Tensor:
    """An (H, W, C) array as the (C, H, W) tensor detectron2 models take."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class VertebraDatasetMapper:
    """Maps a dataset dict to model input, like detectron2's DatasetMapper, keeping GSQ labels.

    ``image`` is the detector's input, the augmented radiograph resized by ``resize_factor`` (the
    paper's half resolution); ``fine_image`` is the same radiograph at full resolution, which the
    fine stage crops its vertebrae from (absent when ``resize_factor`` is 1). Instances, in
    ``image`` pixels, carry ``gt_boxes``, ``gt_classes``, ``gt_keypoints`` and per vertebra
    ``gt_grade``, ``gt_morphology`` and ``gt_imputed``. With ``keep_annotations`` the test-time
    inputs keep them too, for the fine stage on ground-truth boxes.
    """

    def __init__(
        self,
        is_train: bool,
        augmentations: Optional[List[T.Augmentation]] = None,
        keep_annotations: bool = False,
        resize_factor: float = 0.5,
        dataset_names: Optional[Union[str, Sequence[str]]] = None,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations if augmentations is not None else build_augmentations(is_train))
        self.resize = ResizeByFactor(resize_factor) if resize_factor != 1 else None
        self.keep_annotations = keep_annotations or is_train
        # How a horizontal flip relabels keypoints is the datasets' view (their keypoint_flip_map):
        # not at all for a lateral film, which is also the default without dataset names.
        if dataset_names:
            names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
            self.keypoint_hflip_indices = utils.create_keypoint_hflip_indices(names)
        else:
            self.keypoint_hflip_indices = np.arange(NUM_KEYPOINTS)

    def _read(self, file_name: str) -> np.ndarray:
        """The radiograph as (H, W, 3) uint8: 8 or 16 bit, grayscale or colour, PNG/JPEG/TIFF/DICOM."""
        gray, _, _ = read_radiograph(file_name)
        return np.repeat(gray[:, :, None], 3, axis=2)

    def map_image(self, image: np.ndarray) -> Tuple[Dict[str, torch.Tensor], T.TransformList]:
        """``image`` and ``fine_image`` of an (H, W, 3) radiograph, and the transforms that made ``image``."""
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        inputs = {}
        image = aug_input.image
        if self.resize is not None:
            inputs["fine_image"] = _chw_tensor(image)
            resize = self.resize.get_transform(image)
            image = resize.apply_image(image)
            transforms = transforms + resize
        inputs["image"] = _chw_tensor(image)
        return inputs, transforms

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = self._read(dataset_dict["file_name"])
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
