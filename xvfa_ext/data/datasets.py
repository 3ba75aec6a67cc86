"""Vertebra COCO keypoint files in detectron2's DatasetCatalog and MetadataCatalog.

The synthetic splits are registered by default and written into ``$XVFA_DATASETS`` (default
``datasets/``) on first use.
"""

import json
import logging
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..gsq import morphometry
from ..scale import INFO_KEY, median_vertebra_height
from ..layout import ENDPLATES, HEIGHTS, KEYPOINT_NAMES, level_positions, order_levels
from ..synthetic import SyntheticConfig
from ..coco_splits import NUM_FOLDS, SPLITS
from ..synthetic_dataset import write_synthetic_dataset

logger = logging.getLogger(__name__)

EXTRA_ANNOTATION_KEYS = ("grade", "morphology", "level", "imputed", "graded_by")
# Endplates in blue, heights in orange, as the Visualizer draws keypoint connections.
KEYPOINT_CONNECTION_RULES = [(KEYPOINT_NAMES[i], KEYPOINT_NAMES[j], (0, 114, 255)) for i, j in ENDPLATES] + [
    (KEYPOINT_NAMES[i], KEYPOINT_NAMES[j], (255, 140, 0)) for i, j in HEIGHTS
]


class DatasetError(ValueError):
    """A dataset file that cannot be used, with the file and the problem named."""


def _read_json(json_file: str) -> Dict:
    try:
        with open(json_file) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{json_file}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{json_file}: malformed JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{json_file}: no '{key}' list; not a COCO file")
    return data


def _check_annotations(json_file: str, data: Dict) -> None:
    """Every annotation usable, or a DatasetError naming the file, the annotation id and the problem."""
    categories = [c for c in data["categories"] if c.get("name") == "vertebra"]
    if len(data["categories"]) != 1 or not categories:
        raise DatasetError(f"{json_file}: expected the single category 'vertebra', got {data['categories']!r:.200}")
    if list(categories[0].get("keypoints", [])) != list(KEYPOINT_NAMES):
        raise DatasetError(f"{json_file}: category keypoints must be {list(KEYPOINT_NAMES)}")
    sizes = {}
    for img in data["images"]:
        if img.get("id") in sizes:
            raise DatasetError(f"{json_file}: image id {img.get('id')} appears twice")
        sizes[img.get("id")] = (img.get("width"), img.get("height"))
    seen = set()
    for ann in data["annotations"]:
        where = f"{json_file}: annotation {ann.get('id')} of image {ann.get('image_id')}"
        if ann.get("id") in seen:
            raise DatasetError(f"{where}: annotation id {ann.get('id')} appears twice")
        seen.add(ann.get("id"))
        if ann.get("image_id") not in sizes:
            raise DatasetError(f"{where}: no image with id {ann.get('image_id')} in the file")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * len(KEYPOINT_NAMES):
            count = len(kps) / 3 if isinstance(kps, list) else 0
            raise DatasetError(f"{where}: {count:g} keypoints, expected {len(KEYPOINT_NAMES)}")
        for key in ("bbox", "grade", "morphology"):
            if key not in ann:
                raise DatasetError(f"{where}: no '{key}'")
        values = np.asarray(kps + list(ann["bbox"]), dtype=float) if _numbers(kps + list(ann["bbox"])) else None
        if values is None or not np.isfinite(values).all():
            raise DatasetError(f"{where}: a keypoint or box value is not a finite number")
        x, y, w, h = ann["bbox"][:4]
        if w <= 0 or h <= 0:
            raise DatasetError(f"{where}: empty box {ann['bbox']}")
        width, height = sizes[ann["image_id"]]
        if width and height and (x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1):  # 1 px of rounding
            raise DatasetError(f"{where}: box {ann['bbox']} lies outside the {width}x{height} image")
        points = np.asarray(kps, dtype=float).reshape(-1, 3)
        if (points[:, 2] > 0).all() and not bool(morphometry(points[:, :2])["valid"]):
            raise DatasetError(f"{where}: a vertebra of zero height (an upper keypoint on its lower one)")
        if not (isinstance(ann["grade"], int) and 0 <= ann["grade"] <= 3):
            raise DatasetError(f"{where}: grade {ann['grade']!r} is not 0-3")
        if not (isinstance(ann["morphology"], int) and 0 <= ann["morphology"] <= 2):
            raise DatasetError(f"{where}: morphology {ann['morphology']!r} is not 0-2")


def _numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def load_vertebra_coco(json_file: str, image_root: str, dataset_name: Optional[str] = None, image_ids=None) -> List[Dict]:
    """detectron2 dataset dicts with ``grade``, ``morphology``, ``level``, ``imputed`` per vertebra
    and ``patient_id`` per image; errors name the file and the problem."""
    data = _read_json(json_file)
    _check_annotations(json_file, data)
    if dataset_name is not None:  # what the file records of its vertebrae's size, read once here
        MetadataCatalog.get(dataset_name).set(recorded_vertebra_height=data.get("info", {}).get(INFO_KEY))
    records = load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys=list(EXTRA_ANNOTATION_KEYS))
    patients = {img["id"]: str(img.get("patient_id", img["id"])) for img in data["images"]}
    keep = set(image_ids) if image_ids is not None else None
    out = []
    for record in records:
        if keep is not None and record["image_id"] not in keep:
            continue
        if not os.path.isfile(record["file_name"]):
            raise DatasetError(f"{json_file}: image {record['image_id']} refers to a missing file {record['file_name']}")
        record["patient_id"] = patients[record["image_id"]]
        out.append(record)
    return out


# A horizontal flip of a lateral film is the view from the patient's other side: anterior stays
# anterior, so no label changes. On a frontal (AP) film the two sides are a left/right convention of
# the image, so a flip swaps them.
VIEWS = {
    "lateral": [],
    "frontal": [("upper_posterior", "upper_anterior"), ("lower_posterior", "lower_anterior")],
}


def _set_metadata(name: str, json_file: str, image_root: str, view: str = "lateral") -> None:
    if view not in VIEWS:
        raise DatasetError(f"dataset '{name}': view must be one of {sorted(VIEWS)}, got {view!r}")
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="xvfa",
        thing_classes=["vertebra"],
        keypoint_names=list(KEYPOINT_NAMES),
        view=view,
        keypoint_flip_map=VIEWS[view],
        keypoint_connection_rules=KEYPOINT_CONNECTION_RULES,
    )


def register_vertebra_coco(
    name: str, json_file: str, image_root: str, image_ids: Optional[Iterable[int]] = None, view: str = "lateral"
) -> None:
    """Register a COCO vertebra keypoint file (optionally a subset of its images) under ``name``.

    Registering the same files under the same name again does nothing (a config may be loaded
    twice, for example by ``launch``); other files under a registered name are an error.
    """
    ids = sorted(image_ids) if image_ids is not None else None
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        same = (
            meta.get("json_file") == json_file
            and meta.get("image_root") == image_root
            and meta.get("view") == view
            and meta.get("image_ids") == ids
        )
        if not same:
            raise DatasetError(
                f"dataset '{name}' is already registered with {meta.get('json_file')} (images {meta.get('image_root')}, "
                f"view {meta.get('view')}); cannot register {json_file} (images {image_root}, view {view}) under the same name"
            )
        return
    DatasetCatalog.register(name, lambda: load_vertebra_coco(json_file, image_root, name, ids))
    _set_metadata(name, json_file, image_root, view)
    MetadataCatalog.get(name).set(image_ids=ids)


def dataset_levels(name: str):
    """The levels of a registered dataset, cranial to caudal, and each one's usual vertical position
    (fraction of the image height); read from its annotations once and kept in its metadata, where
    the Visualizer and ``predict.py`` anchor detected vertebrae to them."""
    meta = MetadataCatalog.get(name)
    if meta.get("level_positions", None) is None:
        positions = level_positions(DatasetCatalog.get(name))
        meta.set(levels=order_levels(positions, positions) if positions else [], level_positions=positions)
    return meta.levels, meta.level_positions


def dataset_vertebra_height(names) -> float:
    """The median posterior height in pixels of the vertebrae of the registered datasets ``names``
    (one name or several, pooled), kept in their metadata: the ``vertebra_height_px`` of their COCO
    files' ``info``, or computed from their annotations (and logged) where a file does not record it."""
    names = [names] if isinstance(names, str) else list(names)
    heights = []
    for name in names:
        meta = MetadataCatalog.get(name)
        if meta.get("vertebra_height", None) is None:
            records = DatasetCatalog.get(name)  # load_vertebra_coco keeps the file's recorded height
            json_file = meta.get("json_file", None)
            height = meta.get("recorded_vertebra_height", None)
            if height is None:
                height = median_vertebra_height(a for r in records for a in r.get("annotations", []))
                if height is None:
                    raise DatasetError(f"dataset '{name}': no vertebra with both posterior points read, "
                                       "so its vertebra size is unknown; set dataset.vertebra_height")
                logger.info(f"dataset '{name}': {json_file or 'its annotations'} records no {INFO_KEY}; "
                            f"its median posterior height is {height:g} px")
            meta.set(vertebra_height=float(height))
        heights.append(MetadataCatalog.get(name).vertebra_height)
    return float(np.median(heights))


def fully_read_dataset_dicts(names, **kwargs) -> List[Dict]:
    """``get_detection_dataset_dicts(names, **kwargs)`` less every image with an imputed vertebra.

    The detector's fine-tuning reads these (paper section 3.2): after training on every level, the
    imputed ones included, it learns from the images whose readers read every level.
    """
    from detectron2.data import get_detection_dataset_dicts

    records = get_detection_dataset_dicts(names, **kwargs)
    kept = [r for r in records if r["annotations"] and not any(a.get("imputed", False) for a in r["annotations"])]
    if not kept:
        raise DatasetError(f"{names}: no image has every vertebra read (each has an imputed one, or none)")
    logger.info(f"{names}: {len(kept)} of {len(records)} images have every vertebra read")
    return kept


def register_from_config(cfg) -> None:
    """Register the COCO files named by ``cfg.dataset`` and point the dataloaders at them.

    ``cfg.dataset`` holds ``name``, ``image_root``, ``train_json``, ``val_json``, ``test_json``,
    ``folds_json``, ``fold``, ``eval_split``, ``view`` and ``vertebra_height`` (see
    ``configs/data/vertebra_synthetic.py``). An unset ``vertebra_height`` becomes the training
    data's median vertebra height (:func:`dataset_vertebra_height`), so that the config saved with a
    model carries the scale its films were seen at, and prediction on new films uses it.
    With no JSON file named, the config's own dataset names stay (the bundled synthetic data).
    Otherwise each named file is registered as ``<name>_<split>``; training reads ``<name>_train``
    and evaluation ``<name>_<eval_split>``. ``folds_json`` (``datasets/convert_points.py``'s
    ``folds.json``) registers ``<name>_fold{k}_train`` and ``<name>_fold{k}_val``. With ``fold`` set
    to ``k``, training reads ``<prefix>_fold{k}_train``, where ``<prefix>_train`` is the training set
    (the synthetic datasets have their folds registered already).
    """
    ds = cfg.get("dataset")
    if ds is None:
        return
    files = {split: ds.get(f"{split}_json") for split in ("train", "val", "test")}
    if any(files.values()) or ds.get("folds_json"):
        _register_files(cfg, ds, files)
    if ds.get("fold") is not None:
        _train_on_fold(cfg, int(ds.fold))
    if "vertebra_height" in ds and ds.vertebra_height is None:
        ds.vertebra_height = dataset_vertebra_height(cfg.dataloader.train.dataset.names)


def training_prefix(cfg) -> str:
    """``<prefix>`` of the config's one training set ``<prefix>_train``: its folds are
    ``<prefix>_fold{k}_train`` and its test split ``<prefix>_test``."""
    train = cfg.dataloader.train.dataset.names
    if not isinstance(train, str) or not train.endswith("_train"):
        raise DatasetError(f"folds need one training set named <prefix>_train, got {train!r}")
    return train[: -len("_train")]


def _train_on_fold(cfg, fold: int) -> None:
    name = f"{training_prefix(cfg)}_fold{fold}_train"
    if name not in DatasetCatalog.list():
        raise DatasetError(f"dataset.fold={fold}: no dataset {name!r} is registered (set dataset.folds_json)")
    cfg.dataloader.train.dataset.names = name


def _register_folds(name: str, folds_json: str, image_root: str, view: str) -> None:
    path = Path(folds_json)
    try:
        folds = json.loads(path.read_text())
        source = path.parent / folds["source"]
        for fold in folds["folds"]:
            for part in ("train", "val"):
                register_vertebra_coco(
                    f"{name}_fold{int(fold['fold'])}_{part}", str(source), image_root, fold[f"{part}_image_ids"], view=view
                )
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such folds file") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a folds file as datasets/convert_points.py writes it ({exc!r})") from None


def _register_files(cfg, ds, files) -> None:
    if not ds.get("image_root"):
        raise DatasetError("dataset.image_root is not set: the folder that the JSON files' file_name entries are under")
    for split, json_file in files.items():
        if json_file:
            register_vertebra_coco(f"{ds.name}_{split}", str(json_file), str(ds.image_root), view=ds.get("view", "lateral"))
    if ds.get("folds_json"):
        _register_folds(ds.name, str(ds.folds_json), str(ds.image_root), ds.get("view", "lateral"))
    if files["train"]:
        cfg.dataloader.train.dataset.names = f"{ds.name}_train"
    split = ds.get("eval_split", "val")
    if split not in files:
        raise DatasetError(f"dataset.eval_split must be one of {sorted(files)}, got {split!r}")
    if not files[split]:
        raise DatasetError(
            f"dataset.{split}_json is not set, and evaluation reads dataset.eval_split={split!r}: "
            "name that file or choose another split"
        )
    cfg.dataloader.test.dataset.names = f"{ds.name}_{split}"


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
            _set_metadata(name, str(root / "annotations" / f"{split}.json"), str(root / "images"))
