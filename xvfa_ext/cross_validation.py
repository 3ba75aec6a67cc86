"""The paper's cross-validation tables from each fold's ``vfa_metrics.json``: mean ± std over folds and
paired t-tests against the full model with Bonferroni correction (paper Tables 1, 2 and 5).

A table is a list of cells: for each variant, screening task and level, the AUC, F1, sensitivity and
specificity at the Youden point of every fold. :func:`build_table` adds the mean, the standard deviation
(ddof 1) and, for every variant but the reference, a paired t-test over the folds
(:func:`scipy.stats.ttest_rel`) whose p-value is multiplied by the number of tests in the table.
"""

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

from .files import read_json
from .gsq import MORPHOLOGIES
from .metrics import GRADE_TASKS, HEADLINE_SCORE, SCORES, SCREENING_METRICS

METRIC_TITLES = {"auc": "AUC", "f1": "F1", "sensitivity": "sensitivity", "specificity": "specificity"}
TASK_TITLES = {
    "normal_vs_fracture": "normal vs fracture",
    "normal_mild_vs_moderate_severe": "normal+mild vs moderate+severe",
    **{name: f"{name} vs rest" for name in MORPHOLOGIES},
}
LEVEL_TITLES = {"vertebra": "vert.", "patient": "pat."}
# name -> (title, [(group, task, level)]): group "grade" reads the grade tasks, "morphology" the
# one-vs-rest morphology tasks (vertebra level only, as the evaluator reports them).
TABLES = {
    "table1_grade": (
        "Table 1: grade",
        [("grade", task, level) for task in GRADE_TASKS for level in ("vertebra", "patient")],
    ),
    "table5_morphology": ("Table 5: morphology", [("morphology", name, "vertebra") for name in MORPHOLOGIES]),
    "table2_sota": (
        "Table 2: methods compared",
        [("grade", "normal_mild_vs_moderate_severe", level) for level in ("vertebra", "patient")],
    ),
}


class FoldMetricsError(ValueError):
    """A fold's metrics file is missing, unreadable or not for the expected data."""


def read_fold_metrics(path: Path, dataset: Optional[str] = None) -> Dict:
    """A fold's ``vfa_metrics.json``, checked to hold screening results (of ``dataset`` if given)."""
    path = Path(path)
    metrics = read_json(path, FoldMetricsError, missing=" (the fold has not been evaluated)")
    if not isinstance(metrics, dict) or "screening" not in metrics:
        raise FoldMetricsError(f"{path}: holds no 'screening' results (no read vertebra was evaluated)")
    if dataset is not None and metrics.get("dataset") != dataset:
        raise FoldMetricsError(f"{path}: evaluated on {metrics.get('dataset')!r}, expected {dataset!r}")
    return metrics


def task_results(metrics: Dict, group: str, task: str, level: str, score: str = HEADLINE_SCORE) -> Dict:
    """One task's ``{auc, f1, sensitivity, specificity, ...}`` in a metrics file, for one score.

    Morphology is reported for the headline score only. A method with one score of its own (a
    detector of grades, an image classifier: its file's ``scores.headline`` is not one of
    :data:`~xvfa_ext.metrics.SCORES`) is read by that score whatever ``score`` is. A level the file
    says it does not report (its ``levels``: an image classifier has no vertebra level) gives ``{}``,
    an empty cell; any other level or score the file lacks is an error.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}: one of {sorted(SCORES)}")
    screening = metrics["screening"]
    if group == "morphology" and score != HEADLINE_SCORE:
        raise ValueError(f"morphology is reported for the {HEADLINE_SCORE} score only, not {score!r}")
    if "levels" in metrics and level not in metrics["levels"]:
        return {}
    own_score = metrics.get("scores", {}).get("headline", HEADLINE_SCORE) not in SCORES
    try:
        if group == "morphology":
            return screening[level]["morphology"][task]
        if score == HEADLINE_SCORE or own_score:
            return screening[level]["grade"][task]
        return screening["scores"][score][level][task]
    except KeyError as exc:
        raise FoldMetricsError(f"the metrics hold no {score} {group} result for {task} at {level} level ({exc})") from None


def _paired_test(values: List[Optional[float]], reference: List[Optional[float]]) -> Optional[float]:
    pairs = [(v, r) for v, r in zip(values, reference) if v is not None and r is not None]
    if len(pairs) < 2:
        return None
    a, b = np.array(pairs).T
    if np.allclose(a, b):
        return 1.0  # no difference in any fold
    p = stats.ttest_rel(a, b).pvalue
    return float(p) if np.isfinite(p) else None


def _summary(values: List[Optional[float]]) -> Dict:
    present = np.array([v for v in values if v is not None], dtype=float)
    return {
        "folds": values,
        "mean": float(present.mean()) if len(present) else None,
        "std": float(present.std(ddof=1)) if len(present) > 1 else None,
    }


def build_table(
    name: str,
    runs: Dict[str, Sequence[Dict]],
    reference: str,
    score: str = HEADLINE_SCORE,
    alpha: float = 0.05,
) -> Dict:
    """Table ``name`` of :data:`TABLES` from each variant's fold metrics (same folds, same order).

    ``runs`` maps a variant to its folds' metrics; ``reference`` is the variant every other one is
    tested against. Returns ``{name, title, score, folds, alpha, tests, reference, rows}``; a row holds
    the variant, task and level and, per metric, the fold values, mean, std, p, Bonferroni-corrected p
    and whether it is significant.
    """
    if reference not in runs:
        raise ValueError(f"the reference variant {reference!r} has no results")
    folds = {len(v) for v in runs.values()}
    if len(folds) != 1:
        raise ValueError(f"the variants have different numbers of folds: { {k: len(v) for k, v in runs.items()} }")
    title, cells = TABLES[name]
    rows = []
    for group, task, level in cells:
        values = {
            variant: {m: [task_results(f, group, task, level, score).get(m) for f in fold_metrics] for m in SCREENING_METRICS}
            for variant, fold_metrics in runs.items()
        }
        for variant in runs:
            row = {"variant": variant, "group": group, "task": task, "level": level}
            for m in SCREENING_METRICS:
                row[m] = _summary(values[variant][m])
                row[m]["p"] = None if variant == reference else _paired_test(values[variant][m], values[reference][m])
            rows.append(row)
    tests = sum(row[m]["p"] is not None for row in rows for m in SCREENING_METRICS)
    for row in rows:
        for m in SCREENING_METRICS:
            p = row[m]["p"]
            row[m]["p_bonferroni"] = None if p is None else min(1.0, p * tests)
            row[m]["significant"] = p is not None and p * tests < alpha
    return {
        "name": name,
        "title": title,
        "score": score,
        "folds": folds.pop(),
        "alpha": alpha,
        "tests": tests,
        "reference": reference,
        "rows": rows,
    }


def _cell(stat: Dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    text = f"{stat['mean']:.2f}" if stat["std"] is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"
    return text + ("*" if stat["significant"] else "")


def table_markdown(table: Dict, descriptions: Optional[Dict[str, str]] = None) -> str:
    """The table in the paper's layout, with a legend that states the tests."""
    head = ["task", "level", "variant"] + [METRIC_TITLES[m] for m in SCREENING_METRICS]
    lines = [f"## {table['title']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["rows"]:
        lines.append(
            "| "
            + " | ".join(
                [TASK_TITLES[row["task"]], LEVEL_TITLES[row["level"]], row["variant"]] + [_cell(row[m]) for m in SCREENING_METRICS]
            )
            + " |"
        )
    lines += [
        "",
        f"Mean ± standard deviation over {table['folds']} folds, each fold's model on the same test split; "
        f"score: {table['score']} ({SCORES[table['score']]}). F1, sensitivity and specificity at the Youden point. "
        f"(*) a significant difference from `{table['reference']}` by a paired t-test over the folds, "
        f"Bonferroni-corrected for the table's {table['tests']} tests at alpha {table['alpha']}."
        + (
            " A method with one score of its own (a detector of grades: its boxes' grade probabilities; an image "
            "classifier: its image's) is scored by it; n/a: a level the method does not report."
            if table["name"] == "table2_sota"
            else ""
        ),
    ]
    if descriptions:
        lines += [""] + [f"- `{name}`: {text}" for name, text in descriptions.items()]
    return "\n".join(lines) + "\n"


def table_csv(table: Dict) -> str:
    """One line per variant, task, level and metric: mean, std, p, corrected p, significance, fold values."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["variant", "task", "level", "metric", "mean", "std", "p", "p_bonferroni", "significant", "folds"])
    for row in table["rows"]:
        for m in SCREENING_METRICS:
            s = row[m]
            writer.writerow(
                [row["variant"], row["task"], row["level"], m, s["mean"], s["std"], s["p"], s["p_bonferroni"],
                 s["significant"], json.dumps(s["folds"])]
            )
    return out.getvalue()


def table_files(table: Dict, descriptions: Optional[Dict[str, str]] = None) -> Dict[str, bytes]:
    """``{name}.md``, ``{name}.csv`` and ``{name}.json`` of a table."""
    name = table["name"]
    data = dict(table, variants=descriptions or {})
    return {
        f"{name}.md": table_markdown(table, descriptions).encode(),
        f"{name}.csv": table_csv(table).encode(),
        f"{name}.json": json.dumps(data, indent=1, allow_nan=False).encode(),
    }


# What the ensemble table compares: (title, path in vfa_metrics.json).
ENSEMBLE_QUANTITIES = (
    ("AUC n+m vs m+s", ("screening", "vertebra", "grade", "normal_mild_vs_moderate_severe", "auc")),
    ("AUC normal vs fracture", ("screening", "vertebra", "grade", "normal_vs_fracture", "auc")),
    ("keypoint error (px)", ("keypoint_error", "mean_px")),
    ("eps coverage", ("eps_coverage", "coverage")),
    ("mean eps (px)", ("eps_coverage", "mean_eps_px")),
)


def _at(metrics: Dict, path: Sequence[str]) -> Optional[float]:
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def ensemble_rows(variant: str, fold_metrics: Sequence[Dict], ensemble_metrics: Dict, epistemic_px: Sequence[float]) -> Dict:
    """One model (each fold's, mean ± std) against the ensemble of the fold models, for one variant."""
    row = {"variant": variant, "models": len(fold_metrics)}
    for title, path in ENSEMBLE_QUANTITIES:
        row[title] = {"folds": _summary([_at(m, path) for m in fold_metrics]), "ensemble": _at(ensemble_metrics, path)}
    row["mean spread between models (px)"] = float(np.mean(epistemic_px)) if len(epistemic_px) else None
    return row


def ensemble_markdown(rows: Sequence[Dict], alpha: float) -> str:
    titles = [t for t, _ in ENSEMBLE_QUANTITIES]
    head = ["variant", "model"] + titles + ["mean spread between models (px)"]
    lines = ["## One fold model against the ensemble of the fold models", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        single = [_cell(dict(row[t]["folds"], significant=False)) for t in titles]
        lines.append("| " + " | ".join([row["variant"], "one fold model"] + single + ["-"]) + " |")
        joint = ["n/a" if row[t]["ensemble"] is None else f"{row[t]['ensemble']:.3f}" for t in titles]
        spread = row["mean spread between models (px)"]
        lines.append("| " + " | ".join([row["variant"], f"ensemble of {row['models']}"] + joint + ["n/a" if spread is None else f"{spread:.2f}"]) + " |")
    lines += ["", f"On the test split; eps is each keypoint's RLE interval at alpha {alpha} (for the ensemble, the "
              "mean of its models': aleatoric); the spread is the root-mean-square distance of the models' keypoints "
              "from their mean (epistemic). One fold model: mean ± std over the folds."]
    return "\n".join(lines) + "\n"
