"""One record per predicted vertebra: its fields, its morphometry computed once, and what reads it."""

import json

import numpy as np
import pytest
import torch

import xvfa_ext.gsq as gsq
from conftest import requires_detectron2
from xvfa_ext.layout import KEYPOINT_NAMES
from xvfa_ext.records import keypoint_array, probability_array, screening_score_arrays, vertebra_records
from xvfa_ext.reports import CSV_FIELDS, csv_row, patient_summary
from xvfa_ext.uncertainty import COVERAGE_LEVELS


def vertebra(anterior, middle, posterior, x=0.0, y=0.0):
    return [[x, y], [x + 20, y], [x + 40, y], [x, y + posterior], [x + 20, y + middle], [x + 40, y + anterior]]


class Boxes:
    def __init__(self, tensor):
        self.tensor = tensor


class FakeInstances:
    """What ``XVFA.inference`` returns, through ``len`` and ``get`` as the records read it."""

    def __init__(self, **fields):
        self._fields = fields

    def __len__(self):
        return len(self._fields["scores"])

    def get(self, name):
        return self._fields[name]


def instances():
    # A moderate wedge (by its points) whose combined probabilities say mild, and a normal vertebra.
    kps = torch.tensor([vertebra(68, 90, 100), vertebra(97, 99, 100, y=120)], dtype=torch.float32)
    n = len(kps)
    grade = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.9, 0.05, 0.03, 0.02]])
    morphology = torch.tensor([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05]])
    fields = {
        "pred_boxes": Boxes(torch.tensor([[-5.0, -5, 45, 105], [-5, 115, 45, 225]])),
        "scores": torch.tensor([0.9, 0.8]),
        "pred_keypoints": torch.cat([kps, torch.ones(n, 6, 1)], -1),
        "pred_keypoint_eps": torch.full((n, 6), 2.0),
        "pred_keypoint_eps_levels": torch.linspace(1, 3, len(COVERAGE_LEVELS)).expand(n, 6, -1),
        "pred_keypoint_scale": torch.full((n, 6, 2), 0.5),
    }
    for task, probs in (("grade", grade), ("morphology", morphology)):
        for suffix in ("", "_kps", "_img", "_mean"):
            fields[f"{task}_probs{suffix}"] = probs
        fields[f"{task}_probs_std"] = torch.full_like(probs, 0.01)
    return FakeInstances(**fields)


def test_a_record_holds_every_quantity_of_its_vertebra():
    first, second = vertebra_records(instances(), ["L1", "L2"], [True, False], pixel_spacing=(0.2, 0.1))
    assert (first["index"], first["level"], first["level_certain"]) == (0, "L1", True)
    assert second["level_certain"] is False
    assert first["box"] == [-5.0, -5.0, 45.0, 105.0] and first["score"] == pytest.approx(0.9)
    np.testing.assert_allclose(keypoint_array(first), vertebra(68, 90, 100))
    upper = first["keypoints"]["upper_posterior"]
    assert upper["eps_px"] == 2.0 and upper["scale_px"] == [0.5, 0.5]
    assert list(upper["eps_px_by_alpha"]) == [str(a) for a in COVERAGE_LEVELS]
    # Morphometry and crisp GSQ of the points, with heights in mm from the row and column spacing.
    assert first["heights_px"] == pytest.approx({"anterior": 68, "middle": 90, "posterior": 100})
    assert first["heights_mm"]["anterior"] == pytest.approx(68 * 0.2)
    assert first["ratios"]["APR"] == pytest.approx(0.68) and first["reduction"] == pytest.approx(0.32)
    assert (first["gsq_grade"], first["gsq_morphology"], first["gsq_shape"]) == ("moderate", "wedge-like", "wedge")
    assert first["explanation"].startswith("moderate wedge: anterior height 0.68 of posterior")
    # The combined probabilities give the grade; the report keeps both, so they cannot disagree silently.
    assert (first["grade"], first["morphology"], first["shape"]) == ("mild", "wedge-like", "wedge")
    assert (second["grade"], second["shape"], second["gsq_grade"]) == ("normal", "", "normal")
    np.testing.assert_allclose(probability_array(first, "grade", "sampled_mean"), [0.1, 0.6, 0.2, 0.1], rtol=1e-6)
    assert first["grade_probabilities"]["sampled_std"]["severe"] == pytest.approx(0.01)
    scores = first["screening_scores"]
    assert scores["normal_vs_fracture"]["sampled_mean"] == pytest.approx(0.9)
    assert scores["normal_mild_vs_moderate_severe"]["combined"] == pytest.approx(0.3)
    assert scores["normal_mild_vs_moderate_severe"]["reduction"] == pytest.approx(0.32)
    json.dumps([first, second], allow_nan=False)


def test_morphometry_runs_once_per_image_and_once_more_for_mm(monkeypatch):
    calls = []
    measure = gsq.morphometry

    def counted(keypoints):
        calls.append(tuple(torch.as_tensor(keypoints).shape))
        return measure(keypoints)

    monkeypatch.setattr(gsq, "morphometry", counted)
    monkeypatch.setattr("xvfa_ext.records.morphometry", counted)
    vertebra_records(instances())
    assert calls == [(2, 6, 2)]
    calls.clear()
    vertebra_records(instances(), pixel_spacing=(0.2, 0.2))
    assert calls == [(2, 6, 2), (2, 6, 2)]  # pixels, then mm


def test_reports_read_the_records():
    records = vertebra_records(instances(), ["L1", "L2"], [True, True])
    row = csv_row("a.png", records[0])
    assert set(row) == set(CSV_FIELDS)
    assert (row["grade"], row["gsq_grade"], row["shape"]) == ("mild", "moderate", "wedge")
    assert row["height_anterior_mm"] == "" and row["mean_eps_px"] == 2.0
    assert row["score_reduction"] == pytest.approx(0.32)
    summary = patient_summary(records)
    assert summary == {"vertebrae": 2, "worst_grade": "mild", "moderate_or_severe": 0, "screening_positive": False}
    arrays = screening_score_arrays([records[0], None])
    np.testing.assert_allclose(arrays["sampled_mean"]["normal_vs_fracture"], [0.9, 0.0], rtol=1e-6)
    np.testing.assert_allclose(arrays["reduction"]["normal_vs_fracture"], [0.32, 0.0], rtol=1e-6)


def test_an_invalid_vertebra_has_a_record_without_nan():
    inst = instances()
    inst.get("pred_keypoints")[1, :, :2] = 5.0  # every point on one spot: zero heights
    record = vertebra_records(inst)[1]
    assert record["valid"] is False and record["gsq_grade"] == "invalid"
    assert record["explanation"].startswith("invalid: anterior height 0")
    assert record["screening_scores"]["normal_vs_fracture"]["reduction"] == 0.0
    json.dumps(record, allow_nan=False)


def test_levels_must_match_the_vertebrae():
    with pytest.raises(ValueError, match="1 levels for 2 vertebrae"):
        vertebra_records(instances(), ["L1"])
    assert KEYPOINT_NAMES[0] in vertebra_records(instances())[0]["keypoints"]


@requires_detectron2
def test_the_evaluator_reports_how_matched_boxes_sit():
    from xvfa_ext.evaluation.vfa_evaluator import _box_placement

    def row(true, predicted, iou):
        return {"matched": predicted is not None, "box": true, "box_iou": iou,
                "prediction": None if predicted is None else {"box": predicted}}

    rows = [row([0, 0, 10, 20], [0, 2, 10, 22], 0.82), row([0, 30, 10, 50], [0, 30, 10, 60], 0.67),
            row([0, 60, 10, 80], [0, 58, 10, 78], 0.82), row([0, 90, 10, 110], None, None)]
    placement = _box_placement(rows)
    assert placement["median_iou"] == pytest.approx(0.82)
    assert placement["median_height_ratio"] == pytest.approx(1.0)
    # Centre offsets 2, 5 and 2 px of a 20 px height.
    assert placement["median_centre_offset_of_height"] == pytest.approx(0.1)
    assert placement["p90_centre_offset_of_height"] == pytest.approx(np.percentile([0.1, 0.25, 0.1], 90))
    assert _box_placement(rows[3:]) == {}


@requires_detectron2
def test_the_keypoint_error_is_reported_by_the_box_iou_of_the_match():
    from xvfa_ext.evaluation.vfa_evaluator import _error_by_box_iou

    true = np.array([vertebra(100, 100, 100, y=150 * i) for i in range(4)], dtype=float)
    pred = true.copy()
    pred[0, :, 1] += 10  # 0.1 of the 100 px posterior height, at IoU 0.55
    pred[1, :, 1] += 30  # 0.3, at IoU 0.65
    pred[2, :, 1] += 20  # 0.2, at IoU 0.68
    matched = [{"box_iou": iou} for iou in (0.55, 0.65, 0.68, 1.0)]  # the last exact, in the top band
    bands = _error_by_box_iou(matched, pred, true, np.ones((4, 6), dtype=bool))
    assert list(bands) == ["0.0-0.6", "0.6-0.7", "0.9-1.0"]
    assert bands["0.0-0.6"]["vertebrae"] == 1 and bands["0.0-0.6"]["mean"] == pytest.approx(0.1)
    assert bands["0.6-0.7"]["vertebrae"] == 2 and bands["0.6-0.7"]["mean"] == pytest.approx(0.25)
    assert bands["0.9-1.0"]["mean"] == pytest.approx(0.0)


@requires_detectron2
def test_the_recall_is_reported_by_the_tilt_of_the_vertebra():
    from xvfa_ext.evaluation.vfa_evaluator import _recall_by_tilt

    def turned(degrees):
        t = np.radians(degrees)
        rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        return (np.array(vertebra(100, 100, 100)) @ rotation.T).tolist()

    rows = [{"keypoints": turned(t), "visible": [True] * 6, "matched": m}
            for t, m in ((0, True), (5, False), (-25, True), (25, False), (35, True), (-40, True))]
    rows.append({"keypoints": turned(50), "visible": [False] + [True] * 5, "matched": False})  # no tilt: left out
    bands = _recall_by_tilt(rows)["recall_by_tilt"]
    assert list(bands) == ["0-10", "20-30", "30-90"]
    assert bands["0-10"] == {"vertebrae": 2, "recall": 0.5}
    assert bands["20-30"] == {"vertebrae": 2, "recall": 0.5}
    assert bands["30-90"] == {"vertebrae": 2, "recall": 1.0}
    assert _recall_by_tilt(rows[-1:]) == {}
