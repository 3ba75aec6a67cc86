"""detectron2 data layer: dataset registration, augmentations and the dataset mapper."""

from .catalog import VIEWS, dataset_levels, dataset_vertebra_height, fully_read_dataset_dicts, register_vertebra_coco
from .config_datasets import register_from_config, training_prefix
from .loading import load_vertebra_coco
from .synthetic_catalog import ensure_synthetic, register_synthetic_datasets
from .validation import DatasetError
from .mapper import VertebraDatasetMapper, build_augmentations
from .transforms import RandomBlur, RandomEqualize, RandomGamma, RandomInvert, RandomNoise

register_synthetic_datasets()

__all__ = [
    "DatasetError",
    "RandomBlur",
    "RandomEqualize",
    "RandomGamma",
    "RandomInvert",
    "RandomNoise",
    "VertebraDatasetMapper",
    "build_augmentations",
    "ensure_synthetic",
    "fully_read_dataset_dicts",
    "load_vertebra_coco",
    "VIEWS",
    "dataset_levels",
    "dataset_vertebra_height",
    "register_from_config",
    "register_synthetic_datasets",
    "register_vertebra_coco",
    "training_prefix",
]
