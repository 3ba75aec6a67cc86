"""Ensembles of several models: the mean, the spread between models (epistemic) beside the mean RLE
interval (aleatoric), in the records and tools/predict.py --weights A B."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import requires_detectron2
from xvfa_ext.ensemble import ensemble_instances
from xvfa_ext.records import vertebra_records
from xvfa_ext.uncertainty import COVERAGE_LEVELS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"


class Boxes:
    def __init__(self, tensor):
        self.tensor = tensor


class FakeInstances:
    """The parts of detectron2's ``Instances`` that the ensemble and the records use."""

    def __init__(self, image_size, **fields):
        self.image_size = image_size
        self._fields = dict(fields)

    def __len__(self):
        return len(self._fields["scores"])

    def get(self, name):
        return self._fields[name]

    def set(self, name, value):
        self._fields[name] = value

    def get_fields(self):
        return self._fields


def member(shift, grade, boxes=None):
    n = 2
    kps = torch.tensor([[[10.0 * k, 20.0 + 30 * i] for k in range(6)] for i in range(n)]) + torch.tensor(shift)
    fields = {
        "pred_boxes": Boxes(boxes if boxes is not None else torch.tensor([[0.0, 10, 60, 40], [0, 40, 60, 70]])),
        "scores": torch.tensor([0.9, 0.8]),
        "pred_classes": torch.zeros(n, dtype=torch.int64),
        "pred_keypoints": torch.cat([kps, torch.ones(n, 6, 1)], -1),
        "pred_keypoint_eps": torch.full((n, 6), 2.0 + shift[0]),
        "pred_keypoint_eps_levels": torch.linspace(1, 3, len(COVERAGE_LEVELS)).expand(n, 6, -1).clone(),
        "pred_keypoint_scale": torch.ones(n, 6, 2),
    }
    for task, probs in (("grade", torch.tensor(grade).expand(n, -1)), ("morphology", torch.tensor([0.8, 0.1, 0.1]).expand(n, -1))):
        for suffix in ("", "_kps", "_img", "_mean", "_std"):
            fields[f"{task}_probs{suffix}"] = probs.clone()
    return FakeInstances((100, 80), **fields)


def test_the_ensemble_averages_and_measures_the_spread_between_models():
    a, b = member([3.0, 4.0], [0.7, 0.1, 0.1, 0.1]), member([-3.0, -4.0], [0.3, 0.1, 0.5, 0.1])
    out = ensemble_instances([a, b])
    mean_kps = (a.get("pred_keypoints") + b.get("pred_keypoints")) / 2
    torch.testing.assert_close(out.get("pred_keypoints"), mean_kps)
    # each model's keypoints lie 5 px from their mean
    torch.testing.assert_close(out.get("pred_keypoint_epistemic"), torch.full((2, 6), 5.0))
    torch.testing.assert_close(out.get("pred_keypoint_eps"), torch.full((2, 6), 2.0))  # mean of 5 and -1
    torch.testing.assert_close(out.get("grade_probs_mean"), torch.tensor([0.5, 0.1, 0.3, 0.1]).expand(2, -1))
    torch.testing.assert_close(out.get("grade_probs_members_std"), torch.tensor([0.2, 0.0, 0.2, 0.0]).expand(2, -1))
    assert out.get("pred_classes").dtype == torch.int64 and out.get("pred_boxes") is a.get("pred_boxes")

    same = ensemble_instances([a, member([3.0, 4.0], [0.7, 0.1, 0.1, 0.1])])
    assert same.get("pred_keypoint_epistemic").abs().max() == 0

    records = vertebra_records(out)
    point = records[0]["keypoints"]["upper_posterior"]
    assert point["epistemic_px"] == pytest.approx(5.0) and point["eps_px"] == pytest.approx(2.0)
    assert records[0]["grade_probabilities"]["members_std"]["moderate"] == pytest.approx(0.2)
    assert "epistemic_px" not in vertebra_records(a)[0]["keypoints"]["upper_posterior"]

    with pytest.raises(ValueError, match="model 1 predicted other vertebrae"):
        ensemble_instances([a, member([0.0, 0.0], [0.7, 0.1, 0.1, 0.1], boxes=torch.zeros(2, 4))])


# Two smoke models with different random weights: their keypoints differ, so the spread is not zero.
@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from detectron2.config import LazyConfig, instantiate

    tmp = tmp_path_factory.mktemp("ensemble")
    cfg = LazyConfig.load(str(SMOKE))
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = instantiate(cfg.model)
        paths.append(tmp / f"model_{seed}.pth")
        torch.save({"model": model.state_dict()}, paths[-1])
    return tmp, paths


def _run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=900, cwd=ROOT)


@requires_detectron2
def test_predict_with_two_weights_reports_both_spreads_and_draws_them(two_models):
    from detectron2.data import DatasetCatalog

    import xvfa_ext.data  # noqa: F401  registers the synthetic sets

    tmp, paths = two_models
    record = DatasetCatalog.get("xvfa_synthetic_small_val")[0]
    boxes = tmp / "boxes.csv"
    rows = ["image,x,y,width,height"] + [f"{Path(record['file_name']).name},{','.join(map(str, a['bbox']))}" for a in record["annotations"]]
    boxes.write_text("\n".join(rows) + "\n")
    out = tmp / "pred"
    result = _run(ROOT / "tools" / "predict.py", "--config-file", SMOKE, "--input", record["file_name"], "--output", out,
                  "--boxes", boxes, "--weights", *paths, "model.roi_head.num_samples=50")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / f"{Path(record['file_name']).stem}.json").read_text())
    assert report["model"]["weights"] == [str(p) for p in paths] and len(report["model"]["hash"]) == 64
    assert len(report["vertebrae"]) == len(record["annotations"])
    spreads = [k["epistemic_px"] for v in report["vertebrae"] for k in v["keypoints"].values()]
    assert min(spreads) >= 0 and max(spreads) > 0
    assert all("members_std" in v["grade_probabilities"] for v in report["vertebrae"])
    assert (out / f"{Path(record['file_name']).stem}.png").is_file()


@requires_detectron2
def test_weights_are_for_eval_only(two_models):
    """train_net --eval-only --weights A B is run by tests/test_cross_validation.py (--ensemble)."""
    _, paths = two_models
    bad = _run(ROOT / "tools" / "train_net.py", "--config-file", SMOKE, "--weights", paths[0])
    assert bad.returncode != 0 and "--weights is for --eval-only" in bad.stderr
