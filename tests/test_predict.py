"""tools/predict.py on PNGs, a DICOM and a corrupt file: reports, CSV and the exit status."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2

from conftest import requires_detectron2
from synthetic_dicom import write_dicom
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
    assert "3 of 4 inputs predicted" in result.stderr

    for stem in ("scan0", "scan1", "scan"):
        assert cv2.imread(str(out / f"{stem}.png")) is not None
        report = json.loads((out / f"{stem}.json").read_text(), parse_constant=_no_nan)
        assert len(report["vertebrae"]) == 13 and report["levels"].startswith("cranial to caudal, anchored to the dataset's levels T4-L4")
        assert [v["level"] for v in report["vertebrae"]][:2] == ["T4", "T5"]
        assert all(isinstance(v["level_certain"], bool) for v in report["vertebrae"])
        assert set(report["patient"]) == {"vertebrae", "worst_grade", "moderate_or_severe", "screening_positive"}
        v = report["vertebrae"][0]
        assert set(v["keypoints"]["upper_posterior"]) == {"x", "y", "eps_px"}
        assert set(v["grade_probabilities"]) == {"combined", "keypoints", "image", "sampled_mean", "sampled_std"}
        scores = v["screening_scores"]["normal_mild_vs_moderate_severe"]
        assert scores["reduction"] == round(v["reduction"], 6)
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
