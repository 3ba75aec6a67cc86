import json

import numpy as np
import pytest

from xvfa_ext.metrics import (
    binary_screening,
    endplate_tilt,
    grade_scores,
    interval_coverage,
    keypoint_error,
    reduction_agreement,
    reading_noise_ceiling,
    reduction_scores,
    relative_keypoint_error,
    screening_metrics,
)


def test_youden_point_by_hand():
    # Thresholds 0.8 and 0.35 both reach J = 0.5; roc_curve lists 0.8 first, so it is chosen.
    r = binary_screening([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert r["auc"] == pytest.approx(0.75)
    assert r["sensitivity"] == pytest.approx(0.5) and r["specificity"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["threshold"] == pytest.approx(0.8)


def test_one_class_gives_none_not_nan():
    r = binary_screening([1, 1, 1], [0.2, 0.5, 0.9])
    assert r["auc"] is None and r["positives"] == 3 and r["negatives"] == 0


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        binary_screening([0, 1], [0.1, float("nan")])


def one_hot(labels, k, p=0.9):
    out = np.full((len(labels), k), (1 - p) / (k - 1))
    out[np.arange(len(labels)), labels] = p
    return out


def test_screening_metrics_vertebra_and_patient():
    grade = np.array([0, 0, 2, 0, 1, 3, 0, -1])
    morphology = np.array([0, 0, 1, 0, 2, 1, 0, 0])
    patients = ["a", "a", "a", "b", "b", "c", "d", "d"]
    grade_probs = one_hot(np.maximum(grade, 0), 4)
    grade_probs[4] = [0.6, 0.3, 0.05, 0.05]  # the mild one is called normal
    r = screening_metrics(grade, grade_probs, morphology, one_hot(morphology, 3), patients)
    json.dumps(r, allow_nan=False)
    v = r["vertebra"]
    assert v["count"] == 7 and v["left_out"] == 1
    assert v["grade"]["normal_mild_vs_moderate_severe"]["auc"] == pytest.approx(1.0)
    assert v["grade"]["normal_vs_fracture"]["positives"] == 3
    conf = np.array(v["confusion_grade"]["normalized"])
    assert conf[1].tolist() == [1.0, 0.0, 0.0, 0.0]  # the mild vertebra, predicted normal
    assert np.allclose(conf[[0, 2, 3]].sum(1), 1.0)
    assert v["morphology"]["concave"]["positives"] == 1
    p = r["patient"]
    # Worst grades: a moderate, b mild, c severe, d normal.
    assert p["count"] == 4
    assert p["grade"]["normal_vs_fracture"]["positives"] == 3
    assert p["grade"]["normal_mild_vs_moderate_severe"]["positives"] == 2
    assert p["confusion_grade"]["support"] == [1, 1, 1, 1]


def test_keypoint_error_and_interval_coverage():
    true = np.zeros((2, 6, 2))
    pred = true.copy()
    pred[0, :, 0] = 3.0
    pred[1, :, 1] = 4.0
    visible = np.ones((2, 6), dtype=bool)
    visible[1, 5] = False
    e = keypoint_error(pred, true, visible)
    assert e["count"] == 11 and e["mean_px"] == pytest.approx((6 * 3 + 5 * 4) / 11)
    assert e["per_keypoint_mean_px"]["lower_anterior"] == pytest.approx(3.0)
    c = interval_coverage(pred, true, np.full((2, 6), 3.5), visible)
    assert c["coverage"] == pytest.approx(6 / 11) and c["mean_eps_px"] == pytest.approx(3.5)


def test_each_score_ranks_by_its_own_values():
    grade = np.array([0, 0, 2, 3, 1, 0])
    patients = ["a", "a", "b", "c", "c", "d"]
    # Saturated probabilities tie the two normals with the moderate one; d still ranks them apart.
    probs = one_hot(np.array([0, 2, 2, 3, 1, 0]), 4)
    reduction = np.array([0.05, 0.15, 0.30, 0.45, 0.22, 0.02])
    r = screening_metrics(
        grade, probs, np.zeros(6, int), one_hot(np.zeros(6, int), 3), patients,
        other_scores={"combined": grade_scores(probs), "reduction": reduction_scores(reduction)},
    )
    task = "normal_mild_vs_moderate_severe"
    assert r["vertebra"]["grade"][task]["auc"] == pytest.approx(0.875)  # one normal scored as moderate
    assert r["scores"]["combined"]["vertebra"][task]["auc"] == pytest.approx(0.875)
    assert r["scores"]["reduction"]["vertebra"][task]["auc"] == pytest.approx(1.0)
    # Patients score their worst vertebra: a 0.15, b 0.30, c 0.45, d 0.02; b and c are positive.
    assert r["scores"]["reduction"]["patient"][task]["auc"] == pytest.approx(1.0)
    assert r["scores"]["reduction"]["patient"][task]["positives"] == 2
    with pytest.raises(ValueError, match="reduction"):
        reduction_scores([0.1, float("nan")])


def test_relative_keypoint_error_and_reduction_shrinkage():
    true = np.array([[[0, 0], [10, 0], [20, 0], [0, 20], [10, 20], [20, 20]]], dtype=float).repeat(2, 0)
    true[1] *= 2  # a vertebra twice as tall: the same pixel error is half the fraction
    pred = true + np.array([2.0, 0.0])
    r = relative_keypoint_error(pred, true)
    assert r["count"] == 12 and r["mean"] == pytest.approx((0.1 + 0.05) / 2) and r["median"] == pytest.approx(0.075)
    annotated = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    shrunk = reduction_agreement(0.05 + 0.5 * annotated, annotated)
    assert shrunk["slope"] == pytest.approx(0.5) and shrunk["intercept"] == pytest.approx(0.05)
    assert shrunk["correlation"] == pytest.approx(1.0)
    flat = reduction_agreement(np.full(5, 0.1), annotated)
    assert flat["slope"] == pytest.approx(0.0) and flat["correlation"] is None
    assert reduction_agreement([0.1], [0.2])["slope"] is None


def wedges(n=400, seed=0):
    """Vertebrae 40 px wide with the posterior height 40 and the anterior 40 (1 - d), d in [0, 0.5]."""
    d = np.random.default_rng(seed).uniform(0, 0.5, n)
    ha = 40 * (1 - d)
    zeros = np.zeros(n)
    kps = np.stack([np.stack(p, -1) for p in ((zeros, zeros), (zeros + 20, zeros), (zeros + 40, zeros),
                                              (zeros, zeros + 40), (zeros + 20, (40 + ha) / 2), (zeros + 40, ha))], 1)
    return kps, d


def test_reading_noise_ceiling_falls_with_the_readers_distance():
    kps, _ = wedges()
    exact = reading_noise_ceiling(kps, 0.0, draws=3)
    assert exact["slope"]["mean"] == pytest.approx(1.0) and exact["auc"]["mean"] == pytest.approx(1.0)
    near, far = (reading_noise_ceiling(kps, dist, draws=10) for dist in (0.04, 0.2))
    assert 0.8 < near["slope"]["mean"] < 0.99 and far["slope"]["mean"] < near["slope"]["mean"] - 0.1
    assert far["auc"]["mean"] < near["auc"]["mean"] < 1.0 and near["slope"]["std"] > 0
    assert reading_noise_ceiling(kps, 0.04, draws=10) == near  # the seed fixes the draws
    assert reading_noise_ceiling(kps, 0.04, draws=10, seed=1) != near


def test_reading_noise_ceiling_remakes_middles_from_corners_and_refuses_bad_input():
    kps, _ = wedges(50)
    concave = kps.copy()
    concave[:, 1, 1] += 6  # the upper middle lowered: a middle height the corners do not show
    assert reading_noise_ceiling(concave, 0.0, draws=1)["slope"]["mean"] == pytest.approx(1.0)
    assert reading_noise_ceiling(concave, 0.0, draws=1, middles_from_corners=True)["slope"]["mean"] < 0.99
    flat = kps.copy()
    flat[3, 3] = flat[3, 0]  # a zero posterior height
    with pytest.raises(ValueError, match="vertebra 3: no valid morphometry"):
        reading_noise_ceiling(flat, 0.04)
    with pytest.raises(ValueError, match="shaped"):
        reading_noise_ceiling(kps[:, :4], 0.04)
    with pytest.raises(ValueError, match="distance >= 0"):
        reading_noise_ceiling(kps, -0.1)
    squares = wedges(20)[0]
    squares[:, 5, 1] = squares[:, 3, 1]  # every vertebra normal: the AUC is undefined, not NaN
    squares[:, 4, 1] = squares[:, 3, 1]
    assert reading_noise_ceiling(squares, 0.0, draws=2)["auc"] == {"mean": None, "std": None}


def test_endplate_tilt_is_the_turn_from_the_horizontal_either_way():
    # A vertebra 40 px wide and 100 px tall, turned about its corner.
    points = np.array([[0, 0], [20, 0], [40, 0], [0, 100], [20, 100], [40, 100]], dtype=float)
    turns = np.array([0.0, 30.0, -30.0, 75.0, 150.0, -90.0])
    t = np.radians(turns)
    rotation = np.stack([np.stack([np.cos(t), -np.sin(t)], -1), np.stack([np.sin(t), np.cos(t)], -1)], -2)  # (N, 2, 2)
    turned = np.einsum("nij,kj->nki", rotation, points)
    assert endplate_tilt(turned) == pytest.approx([0.0, 30.0, 30.0, 75.0, 30.0, 90.0])
    # A wedge whose lower endplate slants by 27 degrees: the direction of the two endplates summed.
    wedge = points.copy()
    wedge[5] = [40, 80]
    assert endplate_tilt(wedge[None])[0] == pytest.approx(np.degrees(np.arctan2(20, 80)))
