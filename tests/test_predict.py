"""tools/predict.py on PNGs, a DICOM and a corrupt file: reports, CSV and the exit status."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import requires_detectron2
from synthetic_dicom import write_dicom
from xvfa_ext.gsq import GRADES
from xvfa_ext.layout import VERTEBRA_LEVELS
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"


def _no_nan(constant):
    raise ValueError(f"{constant} in a report")


def test_predict_reports_dicom_and_names_the_corrupt_file(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    inputs = tmp_path / "in"
    inputs.mkdir()
    cfg = SyntheticConfig(height=192, width=144)
    for i in range(2):
        cv2.imwrite(str(inputs / f"scan{i}.png"), generate_image(image_seed(9, i), cfg)[0])
    write_dicom(inputs / "scan.dcm", generate_image(image_seed(9, 5), cfg)[0])
    (inputs / "broken.png").write_bytes(b"\x89PNG garbage")
    model = instantiate(LazyConfig.load(str(SMOKE)).model)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("weights")

    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools" / "predict.py"), "--config-file", str(SMOKE), "--weights",
           str(tmp_path / "weights.pth"), "--input", str(inputs), "--output", str(out),
           "model.score_threshold=0.0", "model.max_vertebrae=13"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "broken.png: cannot decode the image" in result.stderr
    assert "3 of 4 films predicted" in result.stderr

    for stem in ("scan0", "scan1", "scan"):
        assert cv2.imread(str(out / f"{stem}.png")) is not None
        report = json.loads((out / f"{stem}.json").read_text(), parse_constant=_no_nan)
        assert len(report["vertebrae"]) == 13 and report["levels"].startswith("cranial to caudal, aligned to the dataset's levels T4-L4")
        # Random weights place the boxes anywhere: the levels given are the dataset's, each once, in order.
        named = [v["level"] for v in report["vertebrae"] if v["level"] is not None]
        assert named and named == sorted(set(named), key=VERTEBRA_LEVELS.index)
        assert all(isinstance(v["level_certain"], bool) for v in report["vertebrae"])
        assert set(report["patient"]) == {"vertebrae", "worst_grade", "moderate_or_severe", "screening_positive"}
        v = report["vertebrae"][0]
        assert set(v["keypoints"]["upper_posterior"]) == {"x", "y", "eps_px", "eps_px_by_alpha", "scale_px"}
        assert set(v["grade_probabilities"]) == {"combined", "keypoints", "image", "sampled_mean", "sampled_std"}
        scores = v["screening_scores"]["normal_mild_vs_moderate_severe"]
        assert scores["reduction"] == v["reduction"]
        # The combined grade and the crisp grade that the explanation describes, side by side.
        assert v["grade"] in GRADES and v["explanation"].startswith(v["gsq_grade"])
        p_mean = v["grade_probabilities"]["sampled_mean"]
        assert abs(scores["sampled_mean"] - (p_mean["moderate"] + p_mean["severe"])) < 1e-5
        assert v["explanation"]
    dicom = json.loads((out / "scan.json").read_text())
    assert dicom["pixel_spacing_mm"] == [0.3, 0.25] and dicom["patient_id"] == "P0042"
    assert "heights_mm" in dicom["vertebrae"][0]
    rows = list(csv.DictReader((out / "vertebrae.csv").open()))
    assert len(rows) == 39 and all("nan" not in json.dumps(r).lower() for r in rows)
    assert {r["height_anterior_mm"] != "" for r in rows} == {True, False}
    assert all(abs(float(r["score_reduction"]) - float(r["reduction"])) < 1e-4 for r in rows)


def test_predict_on_given_boxes_with_a_fine_stage_only_model(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    from xvfa_ext.synthetic import vertebra_box

    inputs = tmp_path / "in"
    inputs.mkdir()
    cfg = SyntheticConfig(height=192, width=144)
    boxes = []
    for i in range(2):
        image, vertebrae = generate_image(image_seed(4, i), cfg)
        cv2.imwrite(str(inputs / f"film{i}.png"), image)
        boxes += [(f"film{i}.png", vertebra_box(v.keypoints, 192, 144)) for v in vertebrae[:5]]
    (tmp_path / "boxes.csv").write_text(
        "image,x,y,width,height\n" + "".join(f"{name},{x},{y},{w},{h}\n" for name, (x, y, w, h) in boxes[:5])
    )
    fine = ["model.detector=null", "model.train_detector=False"]
    model = instantiate(LazyConfig.apply_overrides(LazyConfig.load(str(SMOKE)), fine).model)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("fine")
    cmd = [sys.executable, str(ROOT / "tools" / "predict.py"), "--config-file", str(SMOKE), "--weights",
           str(tmp_path / "fine.pth"), "--input", str(inputs), "--output", str(tmp_path / "out")]

    # Without boxes a fine-stage-only model cannot predict, and says what to give it.
    result = subprocess.run(cmd + fine, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        f"predict.py: {SMOKE}: the model has no detector; give the boxes with --boxes FILE")

    result = subprocess.run(cmd + ["--boxes", str(tmp_path / "boxes.csv"), *fine], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]  # film1 has no boxes in the file: named, not skipped silently
    assert f"film1.png: no boxes for it in {tmp_path / 'boxes.csv'}" in result.stderr
    report = json.loads((tmp_path / "out" / "film0.json").read_text(), parse_constant=_no_nan)
    assert sorted(v["box"][1] for v in report["vertebrae"]) == pytest.approx(sorted(b[1] for _, b in boxes[:5]), abs=1e-3)
    assert all(v["score"] == 1.0 for v in report["vertebrae"])

    (tmp_path / "bad.csv").write_text("image,x,y,width,height\nfilm0.png,1,2,-3,4\n")
    result = subprocess.run(cmd + ["--boxes", str(tmp_path / "bad.csv"), *fine], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"{tmp_path / 'bad.csv'}, line 2: box [1.0, 2.0, -3.0, 4.0] is not a box of positive size")
