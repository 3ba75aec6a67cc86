"""Table 2's learned baselines: DINO detecting grades and the image-level CNN, their records,
evaluators and tables, and two iterations of each through tools/train_net.py."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import requires_detectron2
from test_records import Boxes, FakeInstances, vertebra
from xvfa_ext.cross_validation import build_table, table_markdown
from xvfa_ext.gsq import GRADES
from xvfa_ext.metrics import GRADE_TASKS
from xvfa_ext.records import vertebra_records

ROOT = Path(__file__).resolve().parents[1]
GRADE_PROBS = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4], [0.2, 0.5, 0.2, 0.1]])


def test_a_grade_detector_record_has_its_box_probabilities_and_no_keypoints():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 20, 10, 30], [0, 40, 10, 50]])
    records = vertebra_records(FakeInstances(pred_boxes=Boxes(boxes), scores=torch.tensor([0.9, 0.8, 0.7]), grade_probs=GRADE_PROBS))
    assert [r["keypoints"] for r in records] == [None] * 3
    assert [r["grade"] for r in records] == ["normal", "severe", "mild"]
    assert records[1]["grade_probabilities"] == {"box": pytest.approx(dict(zip(GRADES, GRADE_PROBS[1].tolist())))}
    for r, p in zip(records, GRADE_PROBS.tolist()):
        assert r["screening_scores"] == {task: {"box": pytest.approx(sum(p[first:]))} for task, first in GRADE_TASKS.items()}
        assert "morphology_probabilities" not in r and "reduction" not in r


def _image_metrics(auc):
    task = {"auc": auc, "f1": 0.5, "sensitivity": 0.5, "specificity": 0.5}
    grade = {t: task for t in GRADE_TASKS}
    return {"dataset": "d_test", "levels": ["image", "patient"], "scores": {"image": "...", "headline": "image"},
            "screening": {"image": {"grade": grade}, "patient": {"grade": grade}}}


def _vertebra_metrics(auc):
    task = {"auc": auc, "f1": 0.5, "sensitivity": 0.5, "specificity": 0.5}
    grade = {t: task for t in GRADE_TASKS}
    return {"dataset": "d_test", "screening": {"vertebra": {"grade": grade}, "patient": {"grade": grade},
                                               "scores": {"combined": {"vertebra": grade, "patient": grade}}}}


def test_a_level_a_method_does_not_report_is_an_empty_cell_and_no_test():
    runs = {"full": [_vertebra_metrics(a) for a in (0.9, 0.92, 0.95)], "image_cnn": [_image_metrics(a) for a in (0.6, 0.7, 0.65)]}
    table = build_table("table2_sota", runs, "full", score="combined")
    rows = {(r["variant"], r["level"]): r for r in table["rows"]}
    assert rows[("image_cnn", "vertebra")]["auc"]["mean"] is None and rows[("image_cnn", "vertebra")]["auc"]["p"] is None
    # The patient level is tested, by the method's own score even where the table's is another.
    assert rows[("image_cnn", "patient")]["auc"]["folds"] == [0.6, 0.7, 0.65]
    assert rows[("image_cnn", "patient")]["auc"]["p"] is not None
    assert table["tests"] == 4  # the patient level's four metrics
    assert "| normal+mild vs moderate+severe | vert. | image_cnn | n/a | n/a | n/a | n/a |" in table_markdown(table)
    # A level a file should hold and lacks is still an error.
    broken = _vertebra_metrics(0.9)
    del broken["screening"]["patient"]
    with pytest.raises(ValueError, match="patient"):
        build_table("table2_sota", {"full": [broken] * 2, "other": [broken] * 2}, "full")


@requires_detectron2
def test_grade_dino_scores_each_query_by_its_best_grade():
    from xvfa_ext.modeling import GradeDINO

    logits = torch.tensor([[[0.0, 2.0, -1.0, -3.0], [3.0, -2.0, -2.0, -2.0], [-4.0, -4.0, -4.0, -3.5]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.1], [0.25, 0.5, 0.1, 0.2], [0.5, 0.25, 0.1, 0.1]]])
    (result,) = GradeDINO.inference(SimpleNamespace(select_box_nums_for_evaluation=2), logits, boxes, [(100, 200)])
    prob = logits[0].sigmoid()
    assert len(result) == 2  # the two best queries, best first
    assert torch.allclose(result.scores, prob[[1, 0]].max(-1).values)
    assert torch.allclose(result.grade_probs, prob[[1, 0]] / prob[[1, 0]].sum(-1, keepdim=True))
    assert result.pred_classes.tolist() == [0, 0]  # every box is a vertebra; its grade is in grade_probs
    assert torch.allclose(result.pred_boxes.tensor[1], torch.tensor([80.0, 45.0, 120.0, 55.0]))


def _register(name, images):
    """A dataset of ``images``: (patient, [(grade, imputed)]) with one vertebra per grade entry."""
    from detectron2.data import DatasetCatalog
    from detectron2.structures import BoxMode

    dicts = []
    for i, (patient, vertebrae) in enumerate(images):
        anns = []
        for k, (grade, imputed) in enumerate(vertebrae):
            points = np.array(vertebra(100 - 10 * max(grade, 0), 100, 100, x=20, y=10 + 120 * k))
            anns.append({"bbox": [10.0, 5 + 120 * k, 70, 115 + 120 * k], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                         "keypoints": np.concatenate([points, np.full((6, 1), 2.0)], 1).ravel().tolist(),
                         "grade": grade, "morphology": 0, "imputed": imputed})
        dicts.append({"file_name": f"{i}.png", "image_id": i, "height": 400, "width": 100, "patient_id": patient, "annotations": anns})
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    return dicts


@requires_detectron2
def test_vfa_evaluator_scores_a_grade_detector_by_its_boxes_alone():
    from detectron2.structures import Boxes as D2Boxes
    from detectron2.structures import Instances

    from xvfa_ext.evaluation import VFAEvaluator

    dicts = _register("grade_detector_eval", [("a", [(0, False), (2, False)]), ("b", [(1, False), (3, False)]),
                                               ("c", [(0, False), (0, False)])])
    probs = {0: [[0.8, 0.1, 0.05, 0.05], [0.3, 0.2, 0.4, 0.1]], 1: [[0.2, 0.6, 0.1, 0.1], [0.1, 0.1, 0.3, 0.5]],
             2: [[0.9, 0.05, 0.03, 0.02], [0.5, 0.3, 0.1, 0.1]]}
    evaluator = VFAEvaluator("grade_detector_eval")
    evaluator.reset()
    for d in dicts:
        inst = Instances((400, 100))
        inst.pred_boxes = D2Boxes(torch.tensor([a["bbox"] for a in d["annotations"]]))
        inst.scores = torch.tensor([0.9, 0.8])
        inst.pred_classes = torch.zeros(2, dtype=torch.int64)
        inst.grade_probs = torch.tensor(probs[d["image_id"]])
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    report = evaluator._report(evaluator._rows, 0, len(dicts), evaluator._scores)
    assert report["scores"]["headline"] == "box" and report["detection"]["recall"] == 1.0
    assert "morphology" not in report["screening"]["vertebra"] and "scores" not in report["screening"]
    assert "keypoint_error" not in report and "eps_coverage" not in report and "ceiling" in report

    # Boxes that match no vertebra (an untrained detector) still say what the model scores by.
    evaluator.reset()
    for d in dicts:
        inst = Instances((400, 100))
        inst.pred_boxes = D2Boxes(torch.tensor([[0.0, 0, 5, 5], [90, 390, 100, 400]]))
        inst.scores = torch.tensor([0.9, 0.8])
        inst.pred_classes = torch.zeros(2, dtype=torch.int64)
        inst.grade_probs = torch.tensor(probs[d["image_id"]])
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    missed = evaluator._report(evaluator._rows, 6, len(dicts), evaluator._scores)
    assert missed["detection"]["recall"] == 0.0 and missed["scores"]["headline"] == "box"
    flat = evaluator.evaluate()["vfa"]  # what the trainer logs and writes to metrics.json
    assert flat["recall"] == 0.0 and flat["false_positives_per_image"] == 2.0
    grades = np.array([a["grade"] for d in dicts for a in d["annotations"]])
    p = np.array([probs[d["image_id"]] for d in dicts]).reshape(-1, 4)
    auc = report["screening"]["vertebra"]["grade"]["normal_mild_vs_moderate_severe"]["auc"]
    assert auc == pytest.approx(roc_auc_score(grades >= 2, p[:, 2:].sum(1)))
    # Every vertebra found: nothing to score apart.
    assert "screening_of_found" not in report

    # One vertebra of each film found (a's and c's first, b's second), the other box elsewhere.
    evaluator.reset()
    found = {0: 0, 1: 1, 2: 0}
    for d in dicts:
        boxes = [[0.0, 0, 5, 5], [90, 390, 100, 400]]
        boxes[found[d["image_id"]]] = d["annotations"][found[d["image_id"]]]["bbox"]
        inst = Instances((400, 100))
        inst.pred_boxes = D2Boxes(torch.tensor(boxes))
        inst.scores = torch.tensor([0.9, 0.8])
        inst.pred_classes = torch.zeros(2, dtype=torch.int64)
        inst.grade_probs = torch.tensor(probs[d["image_id"]])
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    partly = evaluator._report(evaluator._rows, 3, len(dicts), evaluator._scores)
    assert partly["detection"]["recall"] == 0.5 and partly["screening_of_found"]["count"] == 3
    g = np.array([dicts[i]["annotations"][k]["grade"] for i, k in found.items()])  # 0, 3 and 0
    q = np.array([probs[i][k] for i, k in found.items()])
    of_found = partly["screening_of_found"]["scores"]["box"]
    for task, first in (("normal_vs_fracture", 1), ("normal_mild_vs_moderate_severe", 2)):
        assert of_found[task]["auc"] == pytest.approx(roc_auc_score(g >= first, q[:, first:].sum(1)))
    # The missed moderate vertebra of a counts as certain normal in the main block: it ranks below
    # two found normal ones and ties two missed ones, (1 + 1/4) / 2; found, the severe one ranks first.
    everyone = partly["screening"]["vertebra"]["grade"]["normal_mild_vs_moderate_severe"]
    assert everyone["positives"] == 2 and of_found["normal_mild_vs_moderate_severe"]["positives"] == 1
    assert everyone["auc"] == pytest.approx(0.625) and of_found["normal_mild_vs_moderate_severe"]["auc"] == 1.0
    flat = evaluator.evaluate()["vfa"]
    assert flat["vertebra/normal_mild_vs_moderate_severe/auc_of_found"] == of_found["normal_mild_vs_moderate_severe"]["auc"]


@requires_detectron2
def test_the_image_evaluator_scores_images_and_their_patients_worst_image(tmp_path):
    from xvfa_ext.evaluation import ImageGradeEvaluator

    # Patient a: two images, worst grades 1 and 3; b: 0; c: 2 (an imputed severe does not count); d: nothing read.
    dicts = _register("image_grade_eval", [("a", [(1, False), (0, False)]), ("a", [(3, False)]), ("b", [(0, False)]),
                                            ("c", [(2, False), (3, True)]), ("d", [(0, True)])])
    probs = [[0.6, 0.3, 0.05, 0.05], [0.2, 0.2, 0.2, 0.4], [0.7, 0.2, 0.05, 0.05], [0.5, 0.1, 0.3, 0.1], [0.25] * 4]
    evaluator = ImageGradeEvaluator("image_grade_eval", output_dir=str(tmp_path))
    evaluator.reset()
    evaluator.process([{"image_id": d["image_id"]} for d in dicts], [{"image_grade_probs": torch.tensor(p)} for p in probs])
    flat = evaluator.evaluate()["vfa"]
    report = json.loads((tmp_path / "vfa_metrics.json").read_text())
    assert report["levels"] == ["image", "patient"] and report["screening"]["image"]["left_out"] == 1
    worst, p = np.array([1, 3, 0, 2]), np.array(probs[:4])
    assert flat["image/normal_vs_fracture/auc"] == pytest.approx(roc_auc_score(worst >= 1, p[:, 1:].sum(1)))
    patient_worst = np.array([3, 0, 2])
    patient_score = np.array([max(p[0, 2:].sum(), p[1, 2:].sum()), p[2, 2:].sum(), p[3, 2:].sum()])
    assert flat["patient/normal_mild_vs_moderate_severe/auc"] == pytest.approx(roc_auc_score(patient_worst >= 2, patient_score))
    rows = json.loads((tmp_path / "vfa_predictions.json").read_text())
    assert [r["grade"] for r in rows] == [1, 3, 0, 2, -1]

    with pytest.raises(KeyError, match="image 0: the model gave no 'image_grade_probs'"):
        evaluator.process([{"image_id": 0}], [{"instances": None}])
    with pytest.raises(ValueError, match="image 0: image_grade_probs must be 4 finite values"):
        evaluator.process([{"image_id": 0}], [{"image_grade_probs": torch.tensor([float("nan")] * 4)}])


SMALL = ["dataloader.train.dataset.names=xvfa_synthetic_small_train", "dataloader.test.dataset.names=xvfa_synthetic_small_val",
         "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "dataloader.train.total_batch_size=2",
         "train.max_iter=2", "train.eval_period=2", "train.checkpointer.period=2",
         # The small films' vertebrae (13 px) at the detector config's three quarters.
         "dataloader.train.mapper.detector_vertebra_height=9.8", "dataloader.test.mapper.detector_vertebra_height=9.8"]


@requires_detectron2
@pytest.mark.parametrize("config, level", [("dino_grade", "vertebra"), ("image_cnn", "image")])
def test_a_baseline_trains_and_is_evaluated_in_the_trainer(tmp_path, config, level):
    out = tmp_path / config
    cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(ROOT / "configs" / "baselines" / f"{config}.py"),
           f"train.output_dir={out}", *SMALL] + (["model.score_threshold=0.0"] if config == "dino_grade" else [])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    metrics = json.loads((out / "vfa_metrics.json").read_text())
    assert metrics["dataset"] == "xvfa_synthetic_small_val"
    assert set(metrics["screening"][level]["grade"]) == set(GRADE_TASKS)
    assert metrics["scores"]["headline"] == {"dino_grade": "box", "image_cnn": "image"}[config]
