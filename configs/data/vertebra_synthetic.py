"""Vertebra data with the augmentations of suppl. Table 4: the bundled synthetic set, or your own COCO files.

The detector sees the radiographs at half resolution; the fine stage crops from full resolution.
Your own files need no Python: name them in ``dataset`` on the command line, for example

    python tools/train_net.py --config-file configs/xvfa_dino_r50.py dataset.image_root=my/images \
        dataset.train_json=my/annotations/train.json dataset.val_json=my/annotations/val.json

and the tools register them and point the dataloaders at them (``xvfa_ext.data.register_from_config``).
"""

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from omegaconf import OmegaConf

from xvfa_ext.data import VertebraDatasetMapper, build_augmentations
from xvfa_ext.evaluation import build_evaluators

# Your own COCO files (datasets/convert_points.py writes them from a spreadsheet of points). With no
# JSON file named, the dataloaders read the synthetic splits they name below.
dataset = OmegaConf.create(
    dict(
        name="vertebra_coco",  # registered as <name>_train, <name>_val, <name>_test
        image_root=None,  # the folder the files' file_name entries are under
        train_json=None,
        val_json=None,
        test_json=None,
        folds_json=None,  # datasets/convert_points.py's folds.json: registers <name>_fold{k}_{train,val}
        fold=None,  # k: train on <prefix>_fold{k}_train (tools/cross_validate.py sets it)
        eval_split="val",  # what evaluation reads: val or test
        view="lateral",  # or "frontal" (AP): sets how a horizontal flip relabels keypoints
    )
)

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="xvfa_synthetic_train"),
    mapper=L(VertebraDatasetMapper)(
        is_train=True,
        augmentations=L(build_augmentations)(is_train=True, rotation=15.0, flip=True),
        resize_factor=0.5,
        dataset_names="${..dataset.names}",  # their view sets the keypoint flip map
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
