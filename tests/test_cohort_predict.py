"""A cohort through one model file: export, 1 and 2 processes, resume after a kill, a failing film,
DICOM without an extension and in a DICOMDIR, the SR and Secondary Capture read back, Youden flags."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import requires_detectron2
from synthetic_dicom import write_dicom
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"
OPTS = ["model.score_threshold=0.0", "model.max_vertebrae=13"]
METRICS = {
    "scores": {"headline": "sampled_mean"},
    "screening": {"vertebra": {"grade": {"normal_mild_vs_moderate_severe": {"threshold": 0.5, "sensitivity": 0.8, "specificity": 0.9}}},
                  "patient": {"grade": {"normal_mild_vs_moderate_severe": {"threshold": 0.7, "sensitivity": 0.8, "specificity": 0.9}}}},
}


def _predict(*args, **kwargs):
    cmd = [sys.executable, str(ROOT / "tools" / "predict.py"), *map(str, args), *OPTS]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A model file with operating points, and a cohort: PNGs, a corrupt file, an extensionless
    DICOM in a subfolder, and two films of one study reached through a DICOMDIR only."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate
    from pydicom.fileset import FileSet

    root = tmp_path_factory.mktemp("cohort")
    model = instantiate(LazyConfig.load(str(SMOKE)).model)
    DetectionCheckpointer(model, save_dir=str(root)).save("weights")
    (root / "vfa_metrics.json").write_text(json.dumps(METRICS))
    export = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export_model.py"), "--config-file", str(SMOKE), "--weights",
         str(root / "weights.pth"), "--metrics", str(root / "vfa_metrics.json"), "--output", str(root / "model.xvfa")],
        capture_output=True, text=True, timeout=600,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    cfg = SyntheticConfig(height=192, width=144)
    films = root / "films"
    (films / "pacs" / "export").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(films / f"scan{i}.png"), generate_image(image_seed(9, i), cfg)[0])
    (films / "broken.png").write_bytes(b"\x89PNG garbage")
    write_dicom(films / "pacs" / "export" / "IM000001", generate_image(image_seed(9, 5), cfg)[0], patient_id="P7")
    # A study of two films, known only through its DICOMDIR.
    staged, media = root / "staged", root / "media"
    staged.mkdir()
    study = "1.2.826.0.1.3680043.8.498.1"
    fileset = FileSet()
    for k in range(2):
        write_dicom(staged / f"f{k}.dcm", generate_image(image_seed(9, 6 + k), cfg)[0], patient_id="P8", study_uid=study)
        fileset.add(str(staged / f"f{k}.dcm"))
    fileset.write(str(media))
    return {"model": root / "model.xvfa", "films": films, "dicomdir": media / "DICOMDIR", "study": study}


def _reports(out: Path):
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name not in ("summary.json", "studies.json")}


def test_one_and_two_processes_with_dicom_in_and_out(cohort, tmp_path):
    import highdicom as hd
    import pydicom

    runs = {}
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        result = _predict("--model", cohort["model"], "--input", cohort["films"], cohort["dicomdir"], "--output", out,
                          "--num-gpus", n, "--threads", 1, "--batch-size", 1, "--workers", 1, "--threshold", "youden",
                          "--dicom-out")
        assert result.returncode == 1, result.stderr[-3000:]
        # The corrupt film is named with its reason; the other six are predicted.
        assert "broken.png: cannot decode the image" in result.stderr
        assert "6 of 7 films predicted" in result.stderr
        runs[n] = out
    one, two = _reports(runs[1]), _reports(runs[2])
    assert len(one) == 6 and one == two
    assert (runs[1] / "vertebrae.csv").read_text() == (runs[2] / "vertebrae.csv").read_text()

    # The extensionless DICOM in a subfolder, with its UIDs.
    dicom = one["IM000001.json"]
    assert dicom["patient_id"] == "P7" and dicom["sop_uid"] and dicom["study_uid"] and dicom["series_uid"]
    # The Youden operating points set the flags, and the report says so.
    assert dicom["screening"]["rule"] == "youden" and dicom["screening"]["patient"]["threshold"] == 0.7
    scores = [v["screening_scores"]["normal_mild_vs_moderate_severe"]["sampled_mean"] for v in dicom["vertebrae"]]
    assert [v["screening_positive"] for v in dicom["vertebrae"]] == [s >= 0.5 for s in scores]
    assert dicom["patient"]["screening_positive"] == (max(scores) >= 0.7)
    # The two films of one study: one patient-level summary.
    studies = json.loads((runs[1] / "studies.json").read_text())
    joint = [s for s in studies if s["study_uid"] == cohort["study"]]
    assert len(joint) == 1 and len(joint[0]["films"]) == 2 and joint[0]["patient_id"] == "P8"
    assert len(studies) == 5  # three PNGs, the lone DICOM, the study

    # The SR: one measurement group per vertebra with the report's values, on the source image.
    source = pydicom.dcmread(dicom["image"], stop_before_pixels=True)
    sr = hd.sr.srread(runs[1] / "IM000001.sr.dcm")
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == "P7"
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(dicom["vertebrae"]) == 13
    for group, v in zip(groups, dicom["vertebrae"]):
        level = v["level"] or "unknown"  # random weights: a box may fit no level
        assert str(group.tracking_identifier) == f"vertebra {v['index']} {level}"
        values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
        for name in ("anterior", "middle", "posterior"):
            assert values[f"{name} vertebral height"] == (pytest.approx(v["heights_mm"][name]), "mm")
        assert values["Vertebral height reduction"][0] == pytest.approx(v["reduction"])
        assert values["Probability of severe grade"][0] == pytest.approx(v["grade_probabilities"]["combined"]["severe"])
        evaluations = {q.name.meaning: q.value.value for q in group.get_qualitative_evaluations()}
        assert evaluations == {"Genant semiquantitative grade": v["grade"], "Vertebral morphology": v["morphology"]}
        assert group.finding_sites[0].value.meaning == f"Vertebra {level}"
        comments = [c.TextValue for c in group[0].ContentSequence if c.ValueType == "TEXT" and c.ConceptNameCodeSequence[0].CodeMeaning == "Comment"]
        assert comments == [v["explanation"]]
        outline = np.asarray(group.roi.value).reshape(-1, 2)
        assert np.allclose(outline[0], [v["keypoints"]["upper_posterior"]["x"], v["keypoints"]["upper_posterior"]["y"]], atol=1e-3)
        assert group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    # The Secondary Capture: the drawing, in the film's study.
    sc = pydicom.dcmread(runs[1] / "IM000001.sc.dcm")
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.pixel_array.shape == (192, 144, 3)
    assert sc.pixel_array.std() > 0
    # PNG films get no DICOM output: they have no study to report into.
    assert not (runs[1] / "scan0.sr.dcm").exists()


def test_resume_after_a_kill_loses_no_finished_film(cohort, tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    cfg = SyntheticConfig(height=384, width=288)
    for i in range(8):
        cv2.imwrite(str(films / f"f{i}.png"), generate_image(image_seed(11, i), cfg)[0])
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools" / "predict.py"), "--model", str(cohort["model"]), "--input", str(films),
           "--output", str(out), *OPTS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("f*.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _reports(out)
    assert 1 <= len(finished) < 8, f"{len(finished)} films finished before the kill"
    # Every finished film's rows are in vertebrae.csv already.
    rows = list(csv.DictReader((out / "vertebrae.csv").open()))
    for report in finished.values():
        assert sum(r["image"] == report["image"] for r in rows) == len(report["vertebrae"])
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}

    result = _predict("--model", cohort["model"], "--input", films, "--output", out, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == len(finished) and summary["predicted"] == 8 - len(finished)
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == stamps  # not predicted again
    reports = _reports(out)
    rows = list(csv.DictReader((out / "vertebrae.csv").open()))
    assert len(reports) == 8 and len(rows) == sum(len(r["vertebrae"]) for r in reports.values())
    # In input order, once each.
    assert [r["image"] for r in rows] == [str(films / f"f{i}.png") for i in range(8) for _ in range(13)]


def test_a_file_that_is_not_a_model_is_refused_in_one_line(cohort, tmp_path):
    fake = tmp_path / "fake.xvfa"
    fake.write_bytes(b"nothing")
    result = _predict("--model", fake, "--input", cohort["films"] / "scan0.png", "--output", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"predict.py: {fake}: not an xvfa model")
