"""detectron2 data layer: dataset registration, augmentations and the dataset mapper."""

from .datasets import (
    DatasetError,
    ensure_synthetic,
    fully_read_dataset_dicts,
    load_vertebra_coco,
    VIEWS,
    dataset_levels,
    register_from_config,
    register_synthetic_datasets,
    register_vertebra_coco,
    training_prefix,
)
from .mapper import VertebraDatasetMapper, build_augmentations
from .transforms import RandomBlur, RandomEqualize, RandomInvert

register_synthetic_datasets()

__all__ = [
    "DatasetError",
    "RandomBlur",
    "RandomEqualize",
    "RandomInvert",
    "VertebraDatasetMapper",
    "build_augmentations",
    "ensure_synthetic",
    "fully_read_dataset_dicts",
    "load_vertebra_coco",
    "VIEWS",
    "dataset_levels",
    "register_from_config",
    "register_synthetic_datasets",
    "register_vertebra_coco",
    "training_prefix",
]
