"""Vertebra data with the augmentations of suppl. Table 4: the bundled synthetic set, or your own COCO files.

Sizes are in vertebra units: the detector sees each film resized so that the training data's median
vertebra is 13.2 px tall (half resolution for the synthetic films, whose median is 26.3 px); the
fine stage crops from the film at full resolution, or reduced so that the median vertebra is at most
``crop_size`` pixels tall (real films of any size then give the same crops).
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
        # The training data's median posterior height in pixels: None reads it from the training
        # files (their info's vertebra_height_px, else their annotations); the config saved with a
        # model records it, so that new films are seen at the training scale.
        vertebra_height=None,
    )
)

# The detector's input: films resized so that the median vertebra is this tall (half of the
# synthetic films' 26.3 px, the paper's half resolution), the long side at most max_size.
DETECTOR_VERTEBRA_HEIGHT = 13.17
MAX_SIZE = 1333

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="xvfa_synthetic_train"),
    mapper=L(VertebraDatasetMapper)(
        is_train=True,
        augmentations=L(build_augmentations)(is_train=True, rotation=15.0, flip=True, photometric=False),
        detector_vertebra_height=DETECTOR_VERTEBRA_HEIGHT,
        fine_vertebra_height="${....model.roi_head.crop_size}",
        vertebra_height="${....dataset.vertebra_height}",
        max_size=MAX_SIZE,
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
        detector_vertebra_height=DETECTOR_VERTEBRA_HEIGHT,
        fine_vertebra_height="${....model.roi_head.crop_size}",
        vertebra_height="${....dataset.vertebra_height}",
        max_size=MAX_SIZE,
        dataset_names="${...train.dataset.names}",  # the training data's scale
    ),
    num_workers=2,
)

dataloader.evaluator = L(build_evaluators)(
    dataset_name="${..test.dataset.names}",
    output_dir="${...train.output_dir}",
    alpha="${...model.roi_head.alpha}",
    level_dataset="${..train.dataset.names}",  # found vertebrae get the training data's levels
)
