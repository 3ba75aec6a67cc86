"""The bundled synthetic datasets, registered by default and written into ``$XVFA_DATASETS``
(default ``datasets/``) on first use."""

import json
import logging
import os
from pathlib import Path
from typing import Optional

from detectron2.data import DatasetCatalog

from ..coco_splits import NUM_FOLDS, SPLITS
from ..synthetic import SyntheticConfig
from ..synthetic_dataset import write_synthetic_dataset
from .catalog import set_metadata
from .loading import load_vertebra_coco

logger = logging.getLogger(__name__)


# name prefix -> (folder under the datasets root, images, config)
SYNTHETIC_DATASETS = {
    "xvfa_synthetic": ("synthetic", 200, SyntheticConfig(prevalence="enriched")),
    "xvfa_synthetic_small": ("synthetic_small", 40, SyntheticConfig(height=256, width=192, prevalence="enriched")),
    # Fresh images (another seed) with every vertebra read: training data for the fine stage.
    "xvfa_synthetic_large": ("synthetic_large", 1000, SyntheticConfig(prevalence="enriched", labelled_fraction=1.0)),
}
# The seed each synthetic dataset is drawn with; no image of one is an image of another.
SYNTHETIC_SEEDS = {"xvfa_synthetic": 0, "xvfa_synthetic_small": 0, "xvfa_synthetic_large": 1}


def datasets_root() -> Path:
    return Path(os.environ.get("XVFA_DATASETS", "datasets"))


def ensure_synthetic(prefix: str) -> Path:
    """The synthetic dataset's folder, written first if its annotations are missing."""
    folder, num_images, config = SYNTHETIC_DATASETS[prefix]
    root = datasets_root() / folder
    if not (root / "annotations" / "folds.json").is_file():
        logger.info(f"Writing the synthetic dataset '{prefix}' ({num_images} images) into {root}, on first use")
        write_synthetic_dataset(root, num_images, seed=SYNTHETIC_SEEDS[prefix], config=config, progress=False)
    return root


def _lazy_loader(prefix: str, split: str, name: str, fold: Optional[int] = None, part: Optional[str] = None):
    def load():
        root = ensure_synthetic(prefix)
        json_file = root / "annotations" / f"{split}.json"
        ids = None
        if fold is not None:
            folds = json.loads((root / "annotations" / "folds.json").read_text())["folds"]
            ids = folds[fold][f"{part}_image_ids"]
        return load_vertebra_coco(str(json_file), str(root / "images"), name, ids)

    return load


def register_synthetic_datasets() -> None:
    """Register every synthetic split and fold; nothing is written until a dataset is loaded."""
    for prefix, (folder, _, _) in SYNTHETIC_DATASETS.items():
        root = datasets_root() / folder
        names = [(f"{prefix}_{split}", split, None, None) for split in SPLITS]
        names += [
            (f"{prefix}_fold{k}_{part}", "trainval", k, part) for k in range(NUM_FOLDS) for part in ("train", "val")
        ]
        for name, split, fold, part in names:
            if name in DatasetCatalog.list():
                continue
            DatasetCatalog.register(name, _lazy_loader(prefix, split, name, fold, part))
            set_metadata(name, str(root / "annotations" / f"{split}.json"), str(root / "images"))
