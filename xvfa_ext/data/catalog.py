"""Vertebra datasets in detectron2's DatasetCatalog and MetadataCatalog: registration, their
metadata (view, keypoints, levels, vertebra size) and the images every vertebra of which was read."""

import logging
from typing import Dict, Iterable, List, Optional

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..layout import ENDPLATES, FLIP_PAIRS, HEIGHTS, KEYPOINT_NAMES, level_positions, order_levels
from ..scale import INFO_KEY, median_vertebra_height
from .loading import load_vertebra_coco
from .validation import DatasetError

logger = logging.getLogger(__name__)

# Endplates in blue, heights in orange, as the Visualizer draws keypoint connections.
KEYPOINT_CONNECTION_RULES = [(KEYPOINT_NAMES[i], KEYPOINT_NAMES[j], (0, 114, 255)) for i, j in ENDPLATES] + [
    (KEYPOINT_NAMES[i], KEYPOINT_NAMES[j], (255, 140, 0)) for i, j in HEIGHTS
]


# The keypoint flip map of each view (pairs of names), as detectron2's metadata gives it.
VIEWS = {view: [tuple(pair) for pair in pairs] for view, pairs in FLIP_PAIRS.items()}


def vertebra_metadata(view: str) -> Dict:
    """What detectron2's metadata says of vertebrae seen in ``view``: the class, the keypoints, how a
    flip relabels them and how the Visualizer connects them (a dataset's, and a model file's)."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}, got {view!r}")
    return dict(
        thing_classes=["vertebra"],
        keypoint_names=list(KEYPOINT_NAMES),
        view=view,
        keypoint_flip_map=VIEWS[view],
        keypoint_connection_rules=KEYPOINT_CONNECTION_RULES,
    )


def set_metadata(name: str, json_file: str, image_root: str, view: str = "lateral") -> None:
    try:
        vertebrae = vertebra_metadata(view)
    except ValueError as exc:
        raise DatasetError(f"dataset '{name}': {exc}") from None
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="xvfa", **vertebrae)


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
    set_metadata(name, json_file, image_root, view)
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
