"""Scale in vertebra units (xvfa_ext.scale) and folds stratified by each patient's worst grade."""

import json
import warnings

import numpy as np
import pytest

from xvfa_ext.coco_splits import split_files, stratified_folds
from xvfa_ext.scale import median_vertebra_height, resize_factors
from xvfa_ext.synthetic import SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset


def _annotation(up, lp, visible=2):
    kps = [*up, visible, 0, 0, 2, 0, 0, 2, *lp, visible, 0, 0, 2, 0, 0, 2]
    return {"keypoints": kps}


def test_median_posterior_height_skips_unread_points():
    anns = [_annotation((0, 0), (0, 10)), _annotation((5, 5), (5, 35)), _annotation((0, 0), (0, 90), visible=0),
            _annotation((1, 1), (4, 5))]
    assert median_vertebra_height(anns) == pytest.approx(10.0)
    assert median_vertebra_height([_annotation((0, 0), (0, 9), visible=0)]) is None


def test_resize_factors_bring_the_median_vertebra_to_the_detector_height():
    scale = resize_factors((2500, 1000), vertebra_height=89.7, detector_height=19.75, fine_height=64)
    assert scale.detector * 89.7 == pytest.approx(19.75, rel=0.04) and (scale.detector * 64) % 1 == 0
    assert scale.fine == pytest.approx(64 / 89.7)
    # Twice the film, twice the vertebra: the same input size.
    double = resize_factors((5000, 2000), vertebra_height=179.4, detector_height=19.75, fine_height=64)
    assert 5000 * double.detector == pytest.approx(2500 * scale.detector, rel=0.01)
    assert 5000 * double.fine == pytest.approx(2500 * scale.fine)
    # The long side is bounded; small vertebrae are never enlarged for the fine stage.
    bounded = resize_factors((2500, 1000), vertebra_height=20, detector_height=19.75, max_size=800)
    assert 2500 * bounded.detector == pytest.approx(800) and bounded.fine == 1.0
    with pytest.raises(ValueError, match="vertebra height"):
        resize_factors((10, 10), vertebra_height=0, detector_height=20)


def test_synthetic_files_record_their_vertebra_height(tmp_path):
    paths = write_synthetic_dataset(tmp_path, 6, seed=3, config=SyntheticConfig(height=256, width=192), progress=False)
    coco = json.loads(paths["train"].read_text())
    everything = json.loads(paths["trainval"].read_text())["annotations"] + json.loads(paths["test"].read_text())["annotations"]
    assert coco["info"]["vertebra_height_px"] == median_vertebra_height(everything) > 0


def test_folds_keep_the_share_of_moderate_and_severe_patients(tmp_path):
    rng = np.random.default_rng(0)
    patients = [f"P{i:03d}" for i in range(200)]
    worst = {p: int(rng.choice(4, p=[0.6, 0.15, 0.15, 0.1])) for p in patients}
    folds = stratified_folds(patients, worst, seed=0)
    assert sorted(p for f in folds for p in f) == sorted(patients)
    share = np.mean([worst[p] >= 2 for p in patients])
    for fold in folds:
        assert abs(np.mean([worst[p] >= 2 for p in fold]) - share) <= 0.05
    # Folds of the written files, from 200 synthetic patients: the same bound.
    images = [{"id": i + 1, "file_name": f"{p}.png", "patient_id": p, "height": 10, "width": 10} for i, p in enumerate(patients)]
    annotations = [{"id": i + 1, "image_id": i + 1, "grade": worst[p], "keypoints": []} for i, p in enumerate(patients)]
    files = split_files(images, annotations, {}, seed=1)
    folds = json.loads(files["folds.json"])["folds"]
    trainval = {img["patient_id"] for img in json.loads(files["trainval.json"])["images"]}
    whole = np.mean([worst[p] >= 2 for p in trainval])
    for fold in folds:
        assert abs(np.mean([worst[p] >= 2 for p in fold["val_patients"]]) - whole) <= 0.05
        assert not set(fold["val_patients"]) & set(fold["train_patients"])


def test_a_grade_too_rare_for_every_fold_is_pooled():
    worst = {f"P{i}": (3 if i < 2 else 0) for i in range(20)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns of a class smaller than the folds
        folds = stratified_folds(list(worst), worst, seed=0)
    assert sorted(p for f in folds for p in f) == sorted(worst)
