"""Dataset registration and the mapper (detectron2 layer)."""

import json
import logging

import numpy as np
import pytest

from conftest import requires_detectron2
from xvfa_ext.layout import KEYPOINT_NAMES
from xvfa_ext.synthetic import SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset

pytestmark = requires_detectron2


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("vertebrae")
    paths = write_synthetic_dataset(root, 6, seed=2, config=SyntheticConfig(height=160, width=128), progress=False)
    return root, paths


def test_registration_metadata_and_extra_fields(small):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from xvfa_ext.data import register_vertebra_coco

    root, paths = small
    register_vertebra_coco("xvfa_test_small", str(paths["trainval"]), str(root / "images"))
    meta = MetadataCatalog.get("xvfa_test_small")
    assert meta.thing_classes == ["vertebra"] and meta.keypoint_names == list(KEYPOINT_NAMES)
    assert meta.keypoint_flip_map == [] and len(meta.keypoint_connection_rules) == 7
    records = DatasetCatalog.get("xvfa_test_small")
    assert records and all(r["patient_id"].startswith("P") for r in records)
    ann = records[0]["annotations"][0]
    assert {"grade", "morphology", "level", "imputed"} <= set(ann) and len(ann["keypoints"]) == 18


def load(json_file, image_root):
    from xvfa_ext.data import load_vertebra_coco

    return load_vertebra_coco(str(json_file), str(image_root))


def test_malformed_json_names_the_file(tmp_path):
    from xvfa_ext.data import DatasetError

    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"bad\.json: malformed JSON"):
        load(bad, tmp_path)


def test_wrong_keypoint_count_and_missing_image_are_named(small, tmp_path):
    from xvfa_ext.data import DatasetError

    root, paths = small
    data = json.loads(paths["train"].read_text())
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:15]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    ann = data["annotations"][1]
    with pytest.raises(DatasetError, match=rf"short\.json: annotation {ann['id']} of image {ann['image_id']}: 5 keypoints"):
        load(short, root / "images")
    with pytest.raises(DatasetError, match=r"refers to a missing file .*000"):
        load(paths["train"], tmp_path)


def test_synthetic_splits_are_written_on_first_use(caplog, monkeypatch, tmp_path):
    from detectron2.data import DatasetCatalog

    import xvfa_ext.data  # noqa: F401  (registers the synthetic splits)

    monkeypatch.setenv("XVFA_DATASETS", str(tmp_path))  # not yet written, whatever ran before
    with caplog.at_level(logging.INFO, logger="xvfa_ext.data.datasets"):
        records = DatasetCatalog.get("xvfa_synthetic_small_fold1_val")
    assert records
    assert any("on first use" in message for message in caplog.messages)
    train = {r["patient_id"] for r in DatasetCatalog.get("xvfa_synthetic_small_fold1_train")}
    assert not train & {r["patient_id"] for r in records}


def test_rotation_and_flip_round_trip():
    from detectron2.data import detection_utils as utils
    from detectron2.data import transforms as T

    from xvfa_ext.data.transforms import BlurTransform, EqualizeTransform, InvertTransform

    h, w = 200, 160
    kps = np.array([[50, 60], [70, 62], [90, 64], [50, 100], [70, 98], [90, 102]], dtype=float)
    ann = {"bbox": [45.0, 55.0, 50.0, 52.0], "bbox_mode": 1, "keypoints": np.c_[kps, np.full(6, 2)].ravel().tolist()}
    transforms = T.TransformList(
        [EqualizeTransform(), InvertTransform(), BlurTransform(1.0), T.RotationTransform(h, w, 20, expand=False),
         T.HFlipTransform(w)]
    )
    # detectron2's RotationTransform.inverse() assumes expand=True; the mapper rotates without expanding.
    undo = T.TransformList([T.HFlipTransform(w), T.RotationTransform(h, w, -20, expand=False)])
    identity = np.arange(6)
    moved = utils.transform_instance_annotations(dict(ann), transforms, (h, w), keypoint_hflip_indices=identity)
    assert not np.allclose(moved["keypoints"][:, :2], kps)
    back = utils.transform_instance_annotations(moved, undo, (h, w), keypoint_hflip_indices=identity)
    np.testing.assert_allclose(back["keypoints"][:, :2], kps, atol=1e-6)
    # The box follows too: it still holds every keypoint after the round trip.
    x0, y0, x1, y1 = back["bbox"]
    assert x0 <= kps[:, 0].min() and kps[:, 0].max() <= x1 and y0 <= kps[:, 1].min() and kps[:, 1].max() <= y1
    # A flip keeps the labels: anterior stays anterior although it moves to the other side.
    flipped = utils.transform_instance_annotations(dict(ann), T.TransformList([T.HFlipTransform(w)]), (h, w),
                                                   keypoint_hflip_indices=identity)
    np.testing.assert_allclose(flipped["keypoints"][:, 0], w - kps[:, 0])


def test_mapper_packs_labels_and_names_a_corrupt_image(small, tmp_path):
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import VertebraDatasetMapper, build_augmentations

    records = DatasetCatalog.get("xvfa_test_small")
    mapper = VertebraDatasetMapper(True, build_augmentations(True, rotation=15), resize_factor=0.5)
    out = mapper(records[0])
    inst = out["instances"]
    # The detector's input at half resolution, the fine stage's image at full resolution.
    assert out["image"].shape == (3, 80, 64) and out["fine_image"].shape == (3, 160, 128)
    assert len(inst) == len(records[0]["annotations"])
    assert inst.gt_keypoints.tensor.shape[1:] == (6, 3)
    assert {"gt_grade", "gt_morphology", "gt_imputed"} <= set(inst.get_fields())
    test_out = VertebraDatasetMapper(False, build_augmentations(False))(records[0])
    assert "instances" not in test_out and test_out["image"].shape[1:] == (80, 64)

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"corrupt\.png: cannot read the image"):
        mapper(dict(records[0], file_name=str(corrupt)))
