"""The synthetic vertebra dataset with the augmentations of suppl. Table 4.

The detector sees the radiographs at half resolution; the fine stage crops from full resolution.
"""

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from omegaconf import OmegaConf

from xvfa_ext.data import VertebraDatasetMapper, build_augmentations
from xvfa_ext.evaluation import build_evaluators

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="xvfa_synthetic_train"),
    mapper=L(VertebraDatasetMapper)(
        is_train=True,
        augmentations=L(build_augmentations)(is_train=True, rotation=15.0, flip=True),
        resize_factor=0.5,
    ),
    total_batch_size=8,
    num_workers=2,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="xvfa_synthetic_val", filter_empty=False),
    mapper=L(VertebraDatasetMapper)(
        is_train=False,
        augmentations=L(build_augmentations)(is_train=False),
        keep_annotations=False,
        resize_factor=0.5,
    ),
    num_workers=2,
)

dataloader.evaluator = L(build_evaluators)(
    dataset_name="${..test.dataset.names}", output_dir="${...train.output_dir}", alpha="${...model.roi_head.alpha}"
)
