"""The model file: round trip, content hash, refusal of other files and versions; operating points
and the screening rule they set (torch only)."""

import pytest
import torch

from xvfa_ext import bundle as B
from xvfa_ext.reports import patient_summary, screening_rule, vertebra_positive


def _bundle(points=None):
    states = [{"roi_head.w": torch.arange(6.0).reshape(2, 3), "roi_head.n": torch.tensor(3)},
              {"roi_head.w": torch.ones(2, 3), "roi_head.n": torch.tensor(4)}]
    return B.make_bundle("model: {}\n", states, ["T4", "T5"], {"T4": 0.2, "T5": 0.3}, "frontal", 88.5, points,
                         sources={"weights": ["a.pth", "b.pth"]})


METRICS = {
    "scores": {"headline": "sampled_mean"},
    "screening": {
        "vertebra": {"grade": {
            "normal_vs_fracture": {"threshold": 0.2, "sensitivity": 0.9, "specificity": 0.7},
            "normal_mild_vs_moderate_severe": {"threshold": 0.4, "sensitivity": 0.8, "specificity": 0.85},
        }},
        "patient": {"grade": {
            "normal_vs_fracture": {"threshold": None, "sensitivity": None, "specificity": None},
            "normal_mild_vs_moderate_severe": {"threshold": 0.6, "sensitivity": 0.75, "specificity": 0.9},
        }},
        "scores": {"combined": {"vertebra": {
            "normal_mild_vs_moderate_severe": {"threshold": 0.5, "sensitivity": 0.7, "specificity": 0.8}}}},
    },
}


def test_round_trip_keeps_every_part_and_the_hash(tmp_path):
    bundle = _bundle(B.operating_points(METRICS))
    B.write_bundle(tmp_path / "m.xvfa", bundle)
    back = B.read_bundle(tmp_path / "m.xvfa")
    assert back["hash"] == bundle["hash"] and len(back["hash"]) == 64
    assert back["levels"] == ["T4", "T5"] and back["level_positions"] == {"T4": 0.2, "T5": 0.3}
    assert back["view"] == "frontal" and back["vertebra_height"] == 88.5 and back["config"] == "model: {}\n"
    assert torch.equal(back["weights"][1]["roi_head.w"], torch.ones(2, 3)) and len(back["weights"]) == 2
    assert back["versions"]["torch"] == str(torch.__version__)
    # Other weights, another hash.
    assert _bundle()["hash"] != bundle["hash"]


def test_operating_points_per_level_and_score():
    points = B.operating_points(METRICS)
    assert points["headline"] == "sampled_mean"
    assert points["vertebra"]["sampled_mean"]["normal_mild_vs_moderate_severe"]["threshold"] == 0.4
    assert points["vertebra"]["combined"]["normal_mild_vs_moderate_severe"]["sensitivity"] == 0.7
    assert "normal_vs_fracture" not in points["patient"]["sampled_mean"]  # one class only: no threshold
    with pytest.raises(B.BundleError, match="m.json: no screening metrics"):
        B.operating_points({"keypoint_error": {}}, "m.json")


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"not a model"), "not an xvfa model"),
    (lambda p: torch.save({"model": {}}, p), "no 'xvfa-model' format mark"),
    (lambda p: torch.save(dict(_bundle(), format_version=99), p), "of format 99"),
    (lambda p: torch.save(dict(_bundle(), view="lateral"), p), "does not match its hash"),
])
def test_other_files_are_refused_in_one_line(tmp_path, damage, message):
    path = tmp_path / "m.xvfa"
    damage(path)
    with pytest.raises(B.BundleError, match=message) as info:
        B.read_bundle(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _vertebra(grade, score):
    return {"grade": grade, "screening_scores": {"normal_mild_vs_moderate_severe": {"sampled_mean": score}}}


def test_screening_rules():
    points = B.operating_points(METRICS)
    vertebrae = [_vertebra("normal", 0.45), _vertebra("mild", 0.55)]
    # Most likely grade: no moderate vertebra, not flagged.
    assert patient_summary(vertebrae)["screening_positive"] is False
    youden = screening_rule("youden", points)
    assert youden["vertebra"]["threshold"] == 0.4 and youden["patient"]["threshold"] == 0.6
    assert [vertebra_positive(v, youden) for v in vertebrae] == [True, True]
    assert patient_summary(vertebrae, youden)["screening_positive"] is False  # worst 0.55 < patient 0.6
    assert patient_summary(vertebrae, screening_rule("0.5", points))["screening_positive"] is True
    with pytest.raises(ValueError, match="needs a model exported with"):
        screening_rule("youden", None)
    with pytest.raises(ValueError, match="probability in"):
        screening_rule("1.5", points)
