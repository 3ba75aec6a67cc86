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
    with caplog.at_level(logging.INFO, logger="xvfa_ext.data.synthetic_catalog"):
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


def test_photometric_augmentations_change_exposure_not_geometry():
    from detectron2.data import transforms as T

    from xvfa_ext.data import build_augmentations
    from xvfa_ext.data.transforms import GammaTransform, NoiseTransform, RandomGamma, RandomNoise

    ramp = np.repeat(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))[..., None], 3, axis=2)
    darker = GammaTransform(2.0).apply_image(ramp)
    assert darker[0, 32, 0] == 64 and darker[0, 0, 0] == 0 and darker[0, -1, 0] == 252 * 252 // 255
    noisy = NoiseTransform(4.0, seed=3).apply_image(ramp)
    np.testing.assert_array_equal(noisy, NoiseTransform(4.0, seed=3).apply_image(ramp))  # repeatable
    assert (noisy[..., 0] == noisy[..., 2]).all()  # a grey film stays grey
    assert 2.5 < np.std(noisy[:, 1:-1].astype(float) - ramp[:, 1:-1]) < 5.5
    coords = np.array([[3.5, 7.25]])
    for t in (GammaTransform(0.7), NoiseTransform(2.0, 0)):
        np.testing.assert_array_equal(t.apply_coords(coords.copy()), coords)
    with pytest.raises(ValueError, match="gamma needs uint8 images, got uint16"):
        GammaTransform(0.7).apply_image(ramp.astype(np.uint16))
    # Always applied at probability 1, never at 0; in the training list only when asked for.
    assert isinstance(RandomGamma(1.0).get_transform(ramp), GammaTransform)
    assert not isinstance(RandomNoise(0.0).get_transform(ramp), NoiseTransform)
    kinds = lambda augs: {type(a).__name__ for a in augs}  # noqa: E731
    assert {"RandomGamma", "RandomNoise", "RandomApply"} <= kinds(build_augmentations(True, photometric=True))
    assert not {"RandomGamma", "RandomNoise"} & kinds(build_augmentations(True))
    assert build_augmentations(False, photometric=True) == []
    assert isinstance(build_augmentations(True, photometric=True)[1].aug, T.RandomContrast)


def test_mapper_packs_labels_and_names_a_corrupt_image(small, tmp_path):
    import torch
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import VertebraDatasetMapper, build_augmentations

    records = DatasetCatalog.get("xvfa_test_small")
    mapper = VertebraDatasetMapper(True, build_augmentations(True, rotation=15), resize_factor=0.5)
    out = mapper(records[0])
    inst = out["instances"]
    # The detector's input at half resolution (three equal channels), the fine stage's grey image at full resolution.
    assert out["image"].shape == (3, 80, 64) and out["fine_image"].shape == (1, 160, 128)
    assert torch.equal(out["image"][0], out["image"][1]) and torch.equal(out["image"][0], out["image"][2])
    with pytest.raises(ValueError, match=r"grey \(H, W\) radiograph.*\(160, 128, 3\)"):
        mapper.map_image(np.zeros((160, 128, 3), np.uint8))
    assert len(inst) == len(records[0]["annotations"])
    assert inst.gt_keypoints.tensor.shape[1:] == (6, 3)
    assert {"gt_grade", "gt_morphology", "gt_imputed"} <= set(inst.get_fields())
    test_out = VertebraDatasetMapper(False, build_augmentations(False))(records[0])
    assert "instances" not in test_out and test_out["image"].shape[1:] == (80, 64)

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"corrupt\.png: cannot decode the image"):
        mapper(dict(records[0], file_name=str(corrupt)))


@pytest.mark.parametrize("angle", [15.0, -15.0])
def test_a_rotated_vertebra_keeps_a_box_as_tight_as_annotated(small, angle):
    from detectron2.data import DatasetCatalog
    from detectron2.data import transforms as T
    from detectron2.structures import Boxes, pairwise_iou

    from xvfa_ext.data import VertebraDatasetMapper
    from xvfa_ext.synthetic import vertebra_box

    records = DatasetCatalog.get("xvfa_test_small")
    rotate = T.RandomRotation(angle=[angle, angle], expand=False, sample_style="range")
    inst = VertebraDatasetMapper(True, [rotate], resize_factor=0.5)(records[0])["instances"]
    assert len(inst) == len(records[0]["annotations"])
    height, width = inst.image_size
    tight = [vertebra_box(k, height, width) for k in inst.gt_keypoints.tensor[:, :, :2].numpy()]
    tight = Boxes(np.array([[x, y, x + w, y + h] for x, y, w, h in tight], dtype=np.float32))
    iou = pairwise_iou(inst.gt_boxes, tight).diagonal()
    # The synthetic boxes pad the points by a tenth; rotating the box's corners instead gives IoU ~0.8.
    assert iou.min() > 0.98, iou


def test_registering_again_is_harmless_and_other_files_under_the_name_are_an_error(small, tmp_path):
    from xvfa_ext.data import DatasetError, register_vertebra_coco

    root, paths = small
    register_vertebra_coco("xvfa_test_twice", str(paths["train"]), str(root / "images"))
    register_vertebra_coco("xvfa_test_twice", str(paths["train"]), str(root / "images"))  # a config loaded again
    with pytest.raises(DatasetError, match=r"'xvfa_test_twice' is already registered with .*train\.json.*val\.json"):
        register_vertebra_coco("xvfa_test_twice", str(paths["val"]), str(root / "images"))


def test_dataset_config_registers_own_files_and_points_the_loaders_at_them(small):
    from detectron2.config import LazyConfig
    from detectron2.data import MetadataCatalog

    from xvfa_ext.data import DatasetError, register_from_config

    root, paths = small
    cfg = LazyConfig.load("configs/xvfa_dino_r50_smoke.py")
    register_from_config(cfg)  # nothing named: the synthetic splits stay
    assert cfg.dataloader.train.dataset.names == "xvfa_synthetic_small_train"
    own = ["dataset.name=own_cfg", f"dataset.image_root={root / 'images'}", f"dataset.train_json={paths['train']}",
           f"dataset.val_json={paths['val']}", "dataset.view=frontal"]
    cfg = LazyConfig.apply_overrides(LazyConfig.load("configs/xvfa_dino_r50_smoke.py"), own)
    register_from_config(cfg)
    register_from_config(cfg)
    assert cfg.dataloader.train.dataset.names == "own_cfg_train" and cfg.dataloader.test.dataset.names == "own_cfg_val"
    assert MetadataCatalog.get("own_cfg_val").view == "frontal"
    cfg = LazyConfig.apply_overrides(LazyConfig.load("configs/xvfa_dino_r50_smoke.py"), own[:3] + ["dataset.name=own2"])
    with pytest.raises(DatasetError, match="dataset.val_json is not set"):
        register_from_config(cfg)


def test_view_sets_how_a_flip_relabels_keypoints(small):
    from detectron2.data import DatasetCatalog
    from detectron2.data import transforms as T

    from xvfa_ext.data import VertebraDatasetMapper, register_vertebra_coco

    root, paths = small
    register_vertebra_coco("xvfa_test_frontal", str(paths["train"]), str(root / "images"), view="frontal")
    register_vertebra_coco("xvfa_test_lateral", str(paths["train"]), str(root / "images"))
    record = DatasetCatalog.get("xvfa_test_lateral")[0]
    flip = [T.RandomFlip(1.0, horizontal=True, vertical=False)]
    out = {}
    for view in ("lateral", "frontal"):
        mapper = VertebraDatasetMapper(True, flip, resize_factor=1, dataset_names=f"xvfa_test_{view}")
        out[view] = mapper(record)["instances"].gt_keypoints.tensor[..., :2]
    width = record["width"]
    original = np.asarray(record["annotations"][0]["keypoints"], dtype=np.float32).reshape(6, 3)[:, :2]
    mirrored = np.stack([width - original[:, 0], original[:, 1]], axis=1)
    np.testing.assert_allclose(out["lateral"][0].numpy(), mirrored, atol=1e-3)  # labels kept
    np.testing.assert_allclose(out["frontal"][0].numpy(), mirrored[[2, 1, 0, 5, 4, 3]], atol=1e-3)  # sides swapped


@pytest.mark.parametrize("kind", ["rgb_jpeg", "gray16_tiff"])
def test_mapper_reads_16_bit_and_colour_images(small, tmp_path, kind):
    import cv2
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import VertebraDatasetMapper

    record = DatasetCatalog.get("xvfa_test_small")[0]
    gray = cv2.imread(record["file_name"], cv2.IMREAD_GRAYSCALE)
    if kind == "rgb_jpeg":
        path = tmp_path / "film.jpg"
        cv2.imwrite(str(path), cv2.merge([gray, gray, gray]), [cv2.IMWRITE_JPEG_QUALITY, 100])
    else:
        path = tmp_path / "film.tif"
        cv2.imwrite(str(path), gray.astype(np.uint16) * 257)  # the full 16-bit range
    out = VertebraDatasetMapper(False, [], resize_factor=1)(dict(record, file_name=str(path)))
    image = out["image"].numpy()
    assert image.shape == (3, *gray.shape) and (image[0] == image[1]).all()
    # The same picture, scaled to 8 bits (JPEG loses a little).
    expected = (gray.astype(float) - gray.min()) / (gray.max() - gray.min()) * 255 if kind == "gray16_tiff" else gray
    assert np.abs(image[0].astype(float) - expected).mean() < 1.5


def test_the_detector_fine_tuning_config_reads_only_fully_read_images(small, tmp_path):
    """Paper section 3.2: after training on imputed levels, the detector is fine-tuned on images
    whose every vertebra was read."""
    from pathlib import Path

    from detectron2.config import LazyConfig, instantiate

    from xvfa_ext.data import DatasetError, register_vertebra_coco

    root, paths = small
    cfg = LazyConfig.load(str(Path(__file__).resolve().parents[1] / "configs" / "xvfa_dino_r50_detector_finetune.py"))
    assert cfg.train.init_checkpoint.endswith("xvfa_dino_r50_detector/model_final.pth")
    data = json.loads(paths["trainval"].read_text())
    ids = [img["id"] for img in data["images"]]
    for a in data["annotations"]:
        a["imputed"] = a["image_id"] != ids[1] and a["level"] == "T4"  # image ids[1] alone is fully read
    for name, fully_read in (("finetune_one", True), ("finetune_none", False)):
        if not fully_read:
            for a in data["annotations"]:
                a["imputed"] = a["level"] == "T4"
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        register_vertebra_coco(name, str(tmp_path / f"{name}.json"), str(root / "images"))
        cfg.dataloader.train.dataset.names = name
        if fully_read:
            assert [r["image_id"] for r in instantiate(cfg.dataloader.train.dataset)] == [ids[1]]
        else:
            with pytest.raises(DatasetError, match="no image has every vertebra read"):
                instantiate(cfg.dataloader.train.dataset)


@pytest.mark.parametrize("config, detector, fine", [
    ("xvfa_dino_r50.py", (256, 192), (512, 384)),  # the paper's half resolution
    ("xvfa_dino_r50_cpu.py", (384, 288), (512, 384)),  # three quarters
    ("xvfa_dino_r50_detector.py", (384, 288), (512, 384)),
    ("xvfa_dino_r50_smoke.py", (128, 96), (256, 192)),
])
def test_the_synthetic_films_keep_their_sizes_in_vertebra_units(config, detector, fine):
    """Sizes in vertebra units give the synthetic films the sizes the fixed factors gave them, so
    that what was measured on them holds; and the configs record the training data's scale."""
    from pathlib import Path

    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import register_from_config

    cfg = LazyConfig.load(str(Path(__file__).resolve().parents[1] / "configs" / config))
    register_from_config(cfg)
    assert cfg.dataset.vertebra_height > 0
    for part in ("train", "test"):
        record = DatasetCatalog.get(cfg.dataloader[part].dataset.names)[0]
        out = instantiate(cfg.dataloader[part].mapper)(record)
        assert tuple(out["image"].shape[1:]) == detector and tuple(out["fine_image"].shape[1:]) == fine


def test_vertebra_height_is_read_from_the_files_or_computed_and_logged(small, tmp_path, caplog):
    from detectron2.data import MetadataCatalog

    from xvfa_ext.data import register_vertebra_coco
    from xvfa_ext.data import dataset_vertebra_height
    from xvfa_ext.scale import median_vertebra_height

    root, paths = small
    coco = json.loads(paths["trainval"].read_text())
    recorded = coco["info"]["vertebra_height_px"]
    register_vertebra_coco("xvfa_test_height", str(paths["trainval"]), str(root / "images"))
    assert dataset_vertebra_height("xvfa_test_height") == recorded
    del coco["info"]["vertebra_height_px"]
    coco["annotations"] = coco["annotations"][:5]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(coco))
    register_vertebra_coco("xvfa_test_height_bare", str(bare), str(root / "images"))
    with caplog.at_level(logging.INFO):
        height = dataset_vertebra_height("xvfa_test_height_bare")
    assert height == median_vertebra_height(coco["annotations"]) and height != recorded
    assert "records no vertebra_height_px" in caplog.text and MetadataCatalog.get("xvfa_test_height_bare").vertebra_height == height


def test_long_films_are_bounded_and_scaled_by_their_vertebrae(small, tmp_path):
    import cv2

    from xvfa_ext.data import VertebraDatasetMapper

    path = tmp_path / "long.png"
    cv2.imwrite(str(path), (np.random.default_rng(0).integers(0, 65535, (3000, 1200))).astype(np.uint16))
    record = {"file_name": str(path), "height": 3000, "width": 1200, "image_id": 1}
    out = VertebraDatasetMapper(False, [], detector_vertebra_height=20, fine_vertebra_height=64, vertebra_height=150)(record)
    assert tuple(out["image"].shape[1:]) == (422, 169)  # 20 / 150 = 0.133, on the 1/64 grid 9 / 64
    assert tuple(out["fine_image"].shape[1:]) == (1280, 512)  # 64 / 150
    bounded = VertebraDatasetMapper(False, [], detector_vertebra_height=20, vertebra_height=20, max_size=1000)(record)
    assert max(bounded["image"].shape[1:]) == 1000
    with pytest.raises(ValueError, match="one of resize_factor"):
        VertebraDatasetMapper(False, [], resize_factor=0.5, detector_vertebra_height=20, vertebra_height=20)
