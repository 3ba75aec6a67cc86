"""Cross-validation tables (mean ± std, Bonferroni-corrected paired t-tests) and tools/cross_validate.py
on the smoke config: 2 folds, the full model and one ablation, the random-forest baseline, --resume and
--eval-only."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from conftest import requires_detectron2
from xvfa_ext.cross_validation import build_table, table_files, task_results
from xvfa_ext.metrics import SCREENING_METRICS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"


def _task(auc):
    if auc is None:  # one class only in the fold
        return {"auc": None, "f1": None, "sensitivity": None, "specificity": None}
    return {"auc": auc, "f1": auc / 2, "sensitivity": 0.8, "specificity": 0.5 + auc / 4}


def _metrics(auc_by_task):
    """A vfa_metrics.json with the headline AUC of each grade task (vertebra and patient) and morphology."""
    grade = {task: _task(auc) for task, auc in auc_by_task.items()}
    return {
        "dataset": "d_test",
        "screening": {
            "vertebra": {"grade": grade, "morphology": {m: _task(0.9) for m in ("normal", "wedge-like", "concave")}},
            "patient": {"grade": grade},
            "scores": {"reduction": {"vertebra": grade, "patient": grade}},
        },
    }


def test_means_stds_and_bonferroni_stars_are_those_of_scipy_on_the_fold_values():
    full = [0.90, 0.91, 0.92, 0.93, 0.94]
    better = [v + 0.05 + 0.001 * k for k, v in enumerate(full)]  # a steady gain: significant
    noisy = [0.95, 0.85, 0.97, 0.80, 0.99]  # no steady difference
    runs = {
        name: [_metrics({"normal_vs_fracture": v, "normal_mild_vs_moderate_severe": v}) for v in values]
        for name, values in (("full", full), ("better", better), ("noisy", noisy))
    }
    table = build_table("table1_grade", runs, "full")
    assert table["folds"] == 5 and table["reference"] == "full"
    # 2 tasks x 2 levels x 2 variants x 4 metrics, less the sensitivities (equal in every fold: p = 1,
    # still tests) and no specificity left out: all 32 are tests.
    assert table["tests"] == 32
    rows = {(r["variant"], r["task"], r["level"]): r for r in table["rows"]}
    for variant, values in (("better", better), ("noisy", noisy)):
        auc = rows[(variant, "normal_vs_fracture", "vertebra")]["auc"]
        assert auc["folds"] == values
        assert auc["mean"] == pytest.approx(np.mean(values)) and auc["std"] == pytest.approx(np.std(values, ddof=1))
        p = stats.ttest_rel(values, full).pvalue
        assert auc["p"] == pytest.approx(p) and auc["p_bonferroni"] == pytest.approx(min(1.0, p * 32))
        assert auc["significant"] == (p * 32 < 0.05)
    assert rows[("better", "normal_vs_fracture", "vertebra")]["auc"]["significant"]
    assert not rows[("noisy", "normal_vs_fracture", "vertebra")]["auc"]["significant"]
    assert rows[("full", "normal_vs_fracture", "vertebra")]["auc"]["p"] is None  # the reference is not tested
    assert rows[("better", "normal_vs_fracture", "vertebra")]["sensitivity"]["p"] == 1.0

    files = table_files(table, {"full": "the full model", "better": "a", "noisy": "b"})
    md = files["table1_grade.md"].decode()
    better_auc = rows[("better", "normal_vs_fracture", "vertebra")]["auc"]
    assert f"{better_auc['mean']:.2f} ± {better_auc['std']:.2f}*" in md and "Bonferroni-corrected for the table's 32 tests" in md
    lines = [line for line in md.splitlines() if line.startswith("| normal")]
    assert len(lines) == len(table["rows"]) and all(line.count("|") == 8 for line in lines)
    parsed = list(csv.DictReader(io.StringIO(files["table1_grade.csv"].decode())))
    assert len(parsed) == len(table["rows"]) * len(SCREENING_METRICS)
    assert json.loads(files["table1_grade.json"])["variants"]["better"] == "a"


def test_a_fold_a_metric_cannot_define_is_left_out_of_its_mean_and_test():
    runs = {
        "full": [_metrics({"normal_vs_fracture": v, "normal_mild_vs_moderate_severe": 0.9}) for v in (0.8, None, 0.9)],
        "other": [_metrics({"normal_vs_fracture": v, "normal_mild_vs_moderate_severe": 0.9}) for v in (0.7, 0.6, 0.8)],
    }
    # table 2 is normal+mild vs moderate+severe only
    assert {r["task"] for r in build_table("table2_sota", runs, "full")["rows"]} == {"normal_mild_vs_moderate_severe"}
    table = build_table("table1_grade", runs, "full")
    rows = {(r["variant"], r["task"], r["level"]): r for r in table["rows"]}
    full = rows[("full", "normal_vs_fracture", "vertebra")]["auc"]
    assert full["mean"] == pytest.approx(0.85) and full["folds"] == [0.8, None, 0.9]
    other = rows[("other", "normal_vs_fracture", "vertebra")]["auc"]
    assert other["p"] == pytest.approx(stats.ttest_rel([0.7, 0.8], [0.8, 0.9]).pvalue)


def test_scores_and_groups_are_read_from_their_blocks():
    m = _metrics({"normal_vs_fracture": 0.7, "normal_mild_vs_moderate_severe": 0.6})
    m["screening"]["scores"]["reduction"]["vertebra"] = {"normal_vs_fracture": _task(0.99), "normal_mild_vs_moderate_severe": _task(0.98)}
    assert task_results(m, "grade", "normal_vs_fracture", "vertebra")["auc"] == 0.7
    assert task_results(m, "grade", "normal_vs_fracture", "vertebra", "reduction")["auc"] == 0.99
    with pytest.raises(ValueError, match="morphology is reported for the sampled_mean score only"):
        task_results(m, "morphology", "concave", "vertebra", "reduction")
    with pytest.raises(ValueError, match="no combined grade result"):
        task_results(m, "grade", "normal_vs_fracture", "vertebra", "combined")


# tools/cross_validate.py on the smoke config, on ground-truth boxes (its detector has not learned
# in two iterations, and found nothing to score).
GT_BOXES = ["model.detector=null", "model.train_detector=False", "dataloader.test.mapper.keep_annotations=True"]
TINY = ["train.max_iter=2", "train.checkpointer.period=2"]


def cross_validate(*args):
    cmd = [sys.executable, str(ROOT / "tools" / "cross_validate.py"), "--config-file", str(SMOKE), "--folds", "2", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    variant = tmp / "smoke_image.py"
    variant.write_text(
        "from detectron2.config import LazyConfig\n\n"
        f"_smoke = LazyConfig.load({str(SMOKE)!r})\n"
        "dataloader, dataset, lr_multiplier, model, optimizer, train = (\n"
        "    _smoke[k] for k in ('dataloader', 'dataset', 'lr_multiplier', 'model', 'optimizer', 'train')\n"
        ")\n"
        "model.roi_head.head.lambda_kps = 0.0\n"
    )
    out = tmp / "out"
    args = ["--variants", f"image={variant}", "--baselines", "rf=random_forest", "--output", out, *TINY, *GT_BOXES]
    # The folds in parallel, as submitit jobs of the local executor; the resume test runs them in turn.
    result = cross_validate("--launcher", "local", "--parallel", "2", *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, args, result.stdout


@requires_detectron2
def test_folds_train_on_their_split_and_test_on_the_test_split(cv):
    out, _, log = cv
    assert "6 runs, 0 already done, 6 to do" in log
    assert log.count("submitted (local job") == 4 and "full fold 1: trained and evaluated (" in log
    assert "rf fold 1: random forest fitted and scored in" in log  # after the jobs, in turn
    for variant in ("full", "image"):
        for k in range(2):
            fold = out / variant / f"fold{k}"
            assert (fold / "model_final.pth").is_file()
            assert json.loads((fold / "vfa_metrics.json").read_text())["dataset"] == "xvfa_synthetic_small_test"
            assert f"dataset.fold={k}" in (fold / "train_net.log").read_text()
    rf = json.loads((out / "rf" / "fold1" / "vfa_metrics.json").read_text())
    assert rf["fitted_on"]["dataset"] == "xvfa_synthetic_small_fold1_train" and rf["fitted_on"]["vertebrae"] > 0
    assert rf["keypoints_from"] == str(out / "full" / "fold1" / "vfa_predictions.json")


@requires_detectron2
def test_tables_parse_and_their_stars_are_t_tests_on_the_fold_metrics(cv):
    out, _, _ = cv
    folds = {
        v: [json.loads((out / v / f"fold{k}" / "vfa_metrics.json").read_text()) for k in range(2)]
        for v in ("full", "image", "rf")
    }
    for name, variants in (("table1_grade", {"full", "image"}), ("table5_morphology", {"full", "image"}), ("table2_sota", {"full", "rf"})):
        table = json.loads((out / f"{name}.json").read_text())
        assert {r["variant"] for r in table["rows"]} == variants
        md = (out / f"{name}.md").read_text()
        assert f"for the table's {table['tests']} tests at alpha 0.05" in md
        rows = list(csv.DictReader(io.StringIO((out / f"{name}.csv").read_text())))
        assert len(rows) == len(table["rows"]) * len(SCREENING_METRICS)
        tested = 0
        for row in table["rows"]:
            for m in SCREENING_METRICS:
                cell = row[m]
                expected = [task_results(f, row["group"], row["task"], row["level"]).get(m) for f in folds[row["variant"]]]
                assert cell["folds"] == expected  # the cells are the folds' evaluator numbers
                reference = [task_results(f, row["group"], row["task"], row["level"]).get(m) for f in folds["full"]]
                if row["variant"] == "full" or None in expected or None in reference:
                    continue
                p = 1.0 if np.allclose(expected, reference) else stats.ttest_rel(expected, reference).pvalue
                if np.isfinite(p):
                    tested += 1
                    assert cell["p"] == pytest.approx(p)
                    assert cell["significant"] == (p * table["tests"] < 0.05)
                    assert ("*" in _md_cell(md, row, m)) == cell["significant"]
        assert tested > 0 and table["tests"] >= tested


def _md_cell(md, row, metric):
    from xvfa_ext.cross_validation import LEVEL_TITLES, TASK_TITLES

    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:3] == [TASK_TITLES[row["task"]], LEVEL_TITLES[row["level"]], row["variant"]]:
            return cells[3 + SCREENING_METRICS.index(metric)]
    raise AssertionError(f"no row for {row['variant']} {row['task']} {row['level']}")


@requires_detectron2
def test_resume_keeps_finished_folds_and_eval_only_rebuilds_the_tables(cv):
    out, args, _ = cv
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/fold*/vfa_metrics.json")}
    again = cross_validate(*args)
    assert again.returncode == 2 and "already holds outputs: pass --resume" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/fold*/vfa_metrics.json")} == finished

    # A run killed in image fold 1: its folder is gone; the others stay as they were.
    lost = out / "image" / "fold1"
    for path in sorted(lost.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    missing = cross_validate("--eval-only", *args)
    assert missing.returncode == 2 and "image fold 1" in missing.stderr
    resumed = cross_validate("--resume", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 to do" in resumed.stdout and "image fold 1: trained and evaluated" in resumed.stdout
    assert "rf fold" not in resumed.stdout  # the random forest's folds were finished too
    for path, mtime in finished.items():
        if lost not in path.parents:
            assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    assert (lost / "vfa_metrics.json").is_file()

    (out / "table1_grade.md").unlink()
    rebuilt = cross_validate("--eval-only", *args)
    assert rebuilt.returncode == 0 and (out / "table1_grade.md").is_file() and "to do" not in rebuilt.stdout

    # The fold models as one ensemble, against one model.
    ensembled = cross_validate("--resume", "--ensemble", *args)
    assert ensembled.returncode == 0, ensembled.stderr[-3000:]
    assert "full ensemble of 2: evaluated" in ensembled.stdout and "rf ensemble" not in ensembled.stdout
    rows = {r["variant"]: r for r in json.loads((out / "ensemble.json").read_text())}
    assert set(rows) == {"full", "image"}
    metrics = json.loads((out / "full" / "ensemble" / "vfa_metrics.json").read_text())
    assert rows["full"]["eps coverage"]["ensemble"] == metrics["eps_coverage"]["coverage"]
    folds = [json.loads((out / "full" / f"fold{k}" / "vfa_metrics.json").read_text()) for k in range(2)]
    assert rows["full"]["eps coverage"]["folds"]["folds"] == [f["eps_coverage"]["coverage"] for f in folds]
    assert "ensemble of 2" in (out / "ensemble.md").read_text()
    one = json.loads((out / "full" / "fold0" / "vfa_predictions.json").read_text())
    both = json.loads((out / "full" / "ensemble" / "vfa_predictions.json").read_text())
    assert all("epistemic_px" not in r["prediction"]["keypoints"]["upper_posterior"] for r in one if r["prediction"])
    spread = [k["epistemic_px"] for r in both if r["prediction"] for k in r["prediction"]["keypoints"].values()]
    assert spread and min(spread) >= 0 and rows["full"]["mean spread between models (px)"] == pytest.approx(np.mean(spread))


@requires_detectron2
def test_an_ablation_equal_to_the_full_model_is_not_trained_twice():
    sys.path.insert(0, str(ROOT / "tools"))
    from cross_validate import ABLATIONS, _resolved

    fine = str(ROOT / "configs" / "xvfa_dino_r50_fine.py")
    assert _resolved(str(ROOT / ABLATIONS["gsq_image"]), []) == _resolved(fine, [])
    assert _resolved(str(ROOT / ABLATIONS["image"]), []) != _resolved(fine, [])


@requires_detectron2
def test_your_own_folds_file_registers_the_folds_a_fold_trains_on(tmp_path):
    from detectron2.config import LazyConfig
    from detectron2.data import DatasetCatalog

    from points_csv import write_points_csv
    from xvfa_ext.data import DatasetError, register_from_config

    csv_path, images, _ = write_points_csv(tmp_path, num_images=10, size=(256, 192))
    subprocess.run([sys.executable, str(ROOT / "datasets" / "convert_points.py"), "--input", str(csv_path), "--images",
                    str(images), "--output", str(tmp_path / "mine")], check=True, capture_output=True, cwd=tmp_path)
    ann = tmp_path / "mine" / "annotations"
    cfg = LazyConfig.apply_overrides(LazyConfig.load(str(SMOKE)), [
        f"dataset.image_root={images}", f"dataset.train_json={ann / 'train.json'}", f"dataset.test_json={ann / 'test.json'}",
        f"dataset.folds_json={ann / 'folds.json'}", "dataset.name=cvmine", "dataset.fold=1", "dataset.eval_split=test",
    ])
    register_from_config(cfg)
    assert cfg.dataloader.train.dataset.names == "cvmine_fold1_train"
    assert cfg.dataloader.test.dataset.names == "cvmine_test"
    folds = json.loads((ann / "folds.json").read_text())["folds"]
    assert sorted(r["image_id"] for r in DatasetCatalog.get("cvmine_fold1_train")) == folds[1]["train_image_ids"]

    bad = LazyConfig.apply_overrides(LazyConfig.load(str(SMOKE)), ["dataset.fold=7"])
    with pytest.raises(DatasetError, match="no dataset 'xvfa_synthetic_small_fold7_train' is registered"):
        register_from_config(bad)
