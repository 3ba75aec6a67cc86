"""A config's ``dataset.*`` values: register the files they name and point the dataloaders at them."""

import json
from pathlib import Path

from detectron2.data import DatasetCatalog

from .catalog import dataset_vertebra_height, register_vertebra_coco
from .validation import DatasetError


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
