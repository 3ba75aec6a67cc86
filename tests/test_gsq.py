import numpy as np
import pytest
import torch

import xvfa_ext
from xvfa_ext import gsq
from gsq_reference import reference_gsq

def vertebra(ha, hm, hp, depth=40.0):
    """Axis-aligned vertebra with the given heights; the upper endplate lies on y = 0."""
    return torch.tensor(
        [[0, 0], [depth / 2, 0], [depth, 0], [0, hp], [depth / 2, hm], [depth, ha]], dtype=torch.float64
    )


def random_vertebrae(n, seed):
    """Rotated, translated vertebrae whose three heights span every grade, shape and quadrant."""
    rng = np.random.default_rng(seed)
    heights = rng.uniform(20, 40, size=(n, 1)) * rng.uniform(0.45, 1.1, size=(n, 3))
    depth = rng.uniform(25, 50, size=n)
    ha, hm, hp = heights.T
    local = np.stack(
        [
            np.stack([np.zeros(n), np.zeros(n)], 1),
            np.stack([depth / 2, rng.normal(0, 1.5, n)], 1),
            np.stack([depth, rng.normal(0, 1.5, n)], 1),
            np.stack([np.zeros(n), hp], 1),
            np.stack([depth / 2, hm], 1),
            np.stack([depth, ha], 1),
        ],
        axis=1,
    )
    # Middle and anterior upper points moved off y = 0 change the heights; measure them as placed.
    angle = rng.uniform(-np.pi, np.pi, n)
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], 1), np.stack([np.sin(angle), np.cos(angle)], 1)], 1)
    return np.einsum("nij,nkj->nki", rot, local) + rng.uniform(0, 500, size=(n, 1, 2))


def test_public_names():
    assert xvfa_ext.KEYPOINT_NAMES == (
        "upper_posterior",
        "upper_middle",
        "upper_anterior",
        "lower_posterior",
        "lower_middle",
        "lower_anterior",
    )
    assert xvfa_ext.GRADES == ("normal", "mild", "moderate", "severe")
    assert xvfa_ext.MORPHOLOGIES == ("normal", "wedge-like", "concave")


@pytest.mark.parametrize(
    "ha, hm, hp, grade, morphology",
    [
        # Reduction just below, on and just above every threshold (wedges: ha < hp).
        (80.1, 100, 100, 0, 0),
        (80, 100, 100, 1, 1),
        (79.9, 100, 100, 1, 1),
        (75.1, 100, 100, 1, 1),
        (75, 100, 100, 2, 1),
        (74.9, 100, 100, 2, 1),
        (60.1, 100, 100, 2, 1),
        (60, 100, 100, 3, 1),
        (59.9, 100, 100, 3, 1),
        # Crush (ha >= hp) and concave (hm the smallest) on the thresholds.
        (100, 100, 80, 1, 1),
        (100, 100, 75, 2, 1),
        (100, 100, 60, 3, 1),
        (100, 80, 100, 1, 2),
        (100, 75, 100, 2, 2),
        (100, 60, 100, 3, 2),
        (100, 80.1, 100, 0, 0),
        # Middle height equal to the anterior one: MAR = 1 is not concave, so a wedge.
        (70, 70, 100, 2, 1),
        # Convex endplates are normal; the fourth quadrant is a fracture when ha and hp differ > t1.
        (100, 130, 100, 0, 0),
        (70, 130, 100, 2, 1),
        (100, 130, 70, 2, 1),
    ],
)
def test_truth_table(ha, hm, hp, grade, morphology):
    g, m = gsq.classify(vertebra(ha, hm, hp))
    assert (int(g), int(m)) == (grade, morphology)


def test_thresholds_are_configurable():
    g, _ = gsq.classify(vertebra(85, 100, 100), thresholds=(0.1, 0.2, 0.3))
    assert int(g) == 1
    with pytest.raises(ValueError, match="increasing"):
        gsq.classify(vertebra(85, 100, 100), thresholds=(0.3, 0.2, 0.1))


def test_morphometry_values():
    m = gsq.morphometry(vertebra(60, 90, 100))
    assert float(m["ha"]) == pytest.approx(60)
    assert float(m["hm"]) == pytest.approx(90)
    assert float(m["hp"]) == pytest.approx(100)
    assert float(m["apr"]) == pytest.approx(0.6)
    assert float(m["mpr"]) == pytest.approx(0.9)
    assert float(m["mar"]) == pytest.approx(1.5)
    assert float(m["reduction"]) == pytest.approx(0.4)
    assert bool(m["valid"])


def test_agrees_with_independent_reading_of_the_spec():
    points = random_vertebrae(40000, seed=0)
    grade, morphology = gsq.classify(torch.from_numpy(points))
    expected = np.array([reference_gsq(p.tolist()) for p in points])
    reduction = gsq.morphometry(torch.from_numpy(points))["reduction"].numpy()
    # Only a reduction within float rounding of a threshold may be read differently.
    clear = np.min(np.abs(reduction[:, None] - np.array(gsq.DEFAULT_THRESHOLDS)), axis=1) > 1e-9
    assert clear.mean() > 0.999
    assert np.array_equal(grade.numpy()[clear], expected[clear, 0])
    assert np.array_equal(morphology.numpy()[clear], expected[clear, 1])
    # The random set covers every class, or the comparison would prove little.
    assert set(expected[:, 0]) == {0, 1, 2, 3} and set(expected[:, 1]) == {0, 1, 2}


def test_default_temperature_is_the_model_configs():
    from pathlib import Path

    config = (Path(__file__).resolve().parents[1] / "configs" / "models" / "xvfa_dino_r50.py").read_text()
    assert "temperature=DEFAULT_TEMPERATURE" in config and gsq.DEFAULT_TEMPERATURE == 0.05
    assert float(gsq.FuzzyGSQ().temperature) == pytest.approx(0.05)


def test_fuzzy_argmax_equals_crisp_away_from_thresholds():
    fuzzy = gsq.FuzzyGSQ(temperature=0.01)
    tau = float(fuzzy.temperature)
    points = torch.from_numpy(random_vertebrae(20000, seed=1)).float()
    grade_probs, morphology_probs = fuzzy(points)
    grade, morphology = gsq.classify(points)
    m = gsq.morphometry(points)
    ratio_margin = torch.stack([(m[k] - 1).abs() for k in ("apr", "mpr", "mar")], -1).min(-1).values
    reduction_margin = (m["reduction"][:, None] - torch.tensor(gsq.DEFAULT_THRESHOLDS)).abs().min(-1).values
    away = (reduction_margin > 4 * tau) & (ratio_margin > 4 * tau)
    assert away.sum() > 5000
    assert torch.equal(grade_probs.argmax(-1)[away], grade[away])
    assert torch.equal(morphology_probs.argmax(-1)[away], morphology[away])
    torch.testing.assert_close(grade_probs.sum(-1), torch.ones(len(points)))
    torch.testing.assert_close(morphology_probs.sum(-1), torch.ones(len(points)))


def test_fuzzy_gradients_are_finite_and_non_zero():
    fuzzy = gsq.FuzzyGSQ(temperature=0.05)
    points = torch.from_numpy(random_vertebrae(64, seed=2)).float().requires_grad_(True)
    grade_probs, morphology_probs = fuzzy(points)
    (grade_probs[:, 2].sum() + morphology_probs[:, 1].sum()).backward()
    assert torch.isfinite(points.grad).all()
    assert points.grad.abs().sum(dim=(1, 2)).gt(0).float().mean() > 0.5


def test_trainable_thresholds_and_temperature_get_gradients():
    fuzzy = gsq.FuzzyGSQ(temperature=0.05, trainable=True)
    assert {name for name, _ in fuzzy.named_parameters()} == {"thresholds", "log_temperature"}
    points = torch.from_numpy(random_vertebrae(256, seed=3)).float()
    grade_probs, morphology_probs = fuzzy(points)
    (grade_probs[:, 1:].sum() + morphology_probs[:, 2].sum()).backward()
    for p in fuzzy.parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert len(list(gsq.FuzzyGSQ().parameters())) == 0


def test_invalid_vertebrae_are_flagged_not_raised():
    good = vertebra(70, 90, 100)
    zero = vertebra(0, 90, 100)
    nan = good.clone()
    nan[4, 1] = float("nan")
    inf = good.clone()
    inf[0, 0] = float("inf")
    collapsed = vertebra(70, 90, 100)
    collapsed[3] = collapsed[0]
    batch = torch.stack([good, zero, nan, inf, collapsed])
    grade, morphology = gsq.classify(batch)
    assert grade.tolist() == [2, -1, -1, -1, -1]
    assert morphology.tolist() == [1, -1, -1, -1, -1]
    m = gsq.morphometry(batch)
    assert m["valid"].tolist() == [True, False, False, False, False]
    for key in ("ha", "hm", "hp", "apr", "mpr", "mar", "reduction"):
        assert torch.isfinite(m[key]).all(), key

    batch = batch.float().requires_grad_(True)
    grade_probs, morphology_probs = gsq.FuzzyGSQ()(batch)
    assert torch.isfinite(grade_probs).all() and torch.isfinite(morphology_probs).all()
    torch.testing.assert_close(grade_probs[1:], torch.full((4, 4), 0.25))
    (grade_probs.sum() + morphology_probs[:, 1].sum()).backward()
    assert torch.isfinite(batch.grad).all()
    assert batch.grad[1:].abs().sum() == 0


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(\.\.\., 6, 2\)"):
        gsq.classify(torch.zeros(5, 2))


def explain(keypoints):
    """The explanation of one vertebra, as the records give it."""
    return gsq.assess(keypoints.reshape(1, 6, 2))["explanation"][0]


def test_explanations():
    assert explain(vertebra(68, 90, 100)).startswith(
        "moderate wedge: anterior height 0.68 of posterior (32.0% reduction; 25-40% is moderate)"
    )
    assert explain(vertebra(100, 90, 78)).startswith(
        "mild crush: posterior height 0.78 of anterior (22.0% reduction; 20-25% is mild)"
    )
    assert explain(vertebra(100, 50, 95)).startswith(
        "severe concave: middle height 0.50 of anterior (50.0% reduction; 40% or more is severe)"
    )
    normal = explain(vertebra(95, 100, 100))
    assert normal.startswith("normal: anterior height 0.95 of posterior (5.0% reduction; below 20% is normal)")
    assert "APR 0.95, MPR 1.00, MAR 1.05" in normal and "posterior 100.0" in normal
    assert explain(vertebra(0, 90, 100)) == "invalid: anterior height 0; no morphometry"
    several = gsq.assess(torch.stack([vertebra(68, 90, 100)] * 3))["explanation"]
    assert len(several) == 3 and all(s.startswith("moderate wedge") for s in several)


@pytest.mark.parametrize("anterior, band", [(80.05, "below 20% is normal"), (80.43, "below 20% is normal"),
                                           (79.99, "20-25% is mild"), (75.0001, "20-25% is mild"),
                                           (75.0, "25-40% is moderate"), (60.0, "40% or more is severe")])
def test_the_printed_reduction_never_contradicts_its_band(anterior, band):
    sentence = explain(vertebra(anterior, 100, 100))
    printed = float(sentence.split("(")[1].split("%")[0])
    words = band.split(" is ")[0]
    if words.startswith("below"):
        assert printed < 20
    elif words.endswith("or more"):
        assert printed >= 40
    else:
        lo, hi = (float(v) for v in words.rstrip("%").split("-"))
        assert lo <= printed < hi
    assert band in sentence and "heights anterior" in sentence and " px, middle" in sentence
