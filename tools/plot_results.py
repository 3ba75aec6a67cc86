#!/usr/bin/env python3
"""Plots from an evaluation's saved results (vfa_predictions.json, vfa_metrics.json).

    python tools/plot_results.py --results output/xvfa_dino_r50 [--output plots/]

Writes gsq_borders_morphology.png and gsq_borders_grade.png (GSQ decision borders in the (MPR, MAR)
plane with each predicted vertebra, paper Fig. 3b-c), confusion.png (normalised by true class,
Fig. 4), roc.png (with the Youden point) and coverage.png (eps coverage against alpha).
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from xvfa_ext.gsq import GRADES, MORPHOLOGIES, classify  # noqa: E402
from xvfa_ext.metrics import GRADE_TASKS, HEADLINE_SCORE  # noqa: E402
from xvfa_ext.records import screening_score_arrays  # noqa: E402

GRADE_COLORS = ("#4caf50", "#ffd54f", "#ff9800", "#e53935")
MORPHOLOGY_COLORS = ("#4caf50", "#42a5f5", "#ab47bc")


def gsq_maps(mpr: np.ndarray, mar: np.ndarray):
    """Crisp grade and morphology over the (MPR, MAR) plane: with hm = 1, hp = 1/MPR and ha = 1/MAR."""
    hp, ha = 1 / mpr.ravel(), 1 / mar.ravel()
    zeros = np.zeros_like(hp)
    kps = np.stack(
        [np.stack(p, -1) for p in ((zeros, zeros), (zeros + 0.5, zeros), (zeros + 1, zeros),
                                   (zeros, hp), (zeros + 0.5, zeros + 1), (zeros + 1, ha))], axis=1
    )
    grade, morphology = classify(kps)
    return grade.numpy().reshape(mpr.shape), morphology.numpy().reshape(mpr.shape)


def plot_borders(rows, task, names, colors, path):
    grid = np.linspace(0.4, 1.6, 400)
    mpr, mar = np.meshgrid(grid, grid)
    maps = dict(zip(("grade", "morphology"), gsq_maps(mpr, mar)))
    fig, ax = plt.subplots(figsize=(6, 5.5))
    cmap = ListedColormap(colors)
    ax.imshow(maps[task], origin="lower", extent=(0.4, 1.6, 0.4, 1.6), cmap=cmap, alpha=0.25,
              vmin=-0.5, vmax=len(names) - 0.5, aspect="auto")
    ax.contour(mpr, mar, maps[task], levels=np.arange(len(names)) + 0.5, colors="k", linewidths=0.8)
    for c, name in enumerate(names):
        pts = np.array([[r["prediction"]["ratios"][k] for k in ("MPR", "MAR")] for r in rows if r[task] == c])
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=10 if c == 0 else 22, c=colors[c], edgecolors="k", linewidths=0.3,
                       label=f"true {name} ({len(pts)})", alpha=0.6 if c == 0 else 0.9)
    ax.set(xlabel="MPR (middle / posterior height)", ylabel="MAR (middle / anterior height)",
           title=f"GSQ {task} borders and predicted vertebrae", xlim=(0.4, 1.6), ylim=(0.4, 1.6))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(metrics, path):
    vertebra = metrics["screening"]["vertebra"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key in zip(axes, ("confusion_grade", "confusion_morphology")):
        conf = vertebra[key]
        m = np.array(conf["normalized"])
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(m)):
            for j in range(len(m)):
                ax.text(j, i, f"{100 * m[i, j]:.0f}%", ha="center", va="center", color="w" if m[i, j] > 0.5 else "k")
        ticks = range(len(conf["classes"]))
        ax.set_xticks(ticks, conf["classes"], rotation=30)
        ax.set_yticks(ticks, [f"{c} ({n})" for c, n in zip(conf["classes"], conf["support"])])
        ax.set(xlabel="predicted", ylabel="true (count)", title=key.replace("confusion_", "") + ", normalised by true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_roc(rows, path):
    """The headline score (sampled mean of eq. 7) solid, the height reduction d dashed."""
    grade = np.array([r["grade"] for r in rows])
    scores = screening_score_arrays([r["prediction"] for r in rows])
    by_score = {name: scores[name] for name in (HEADLINE_SCORE, "reduction")}
    fig, ax = plt.subplots(figsize=(5.5, 5))
    drawn = 0
    for task, first in GRADE_TASKS.items():
        positive = grade >= first
        if positive.all() or not positive.any():
            print(f"roc: {task} skipped, only one class among the vertebrae")
            continue
        for (score, scores), style in zip(by_score.items(), ("-", "--")):
            fpr, tpr, _ = roc_curve(positive, scores[task])
            best = int(np.argmax(tpr - fpr))
            (line,) = ax.plot(fpr, tpr, style, label=f"{task.replace('_', ' ')}, {score}")
            ax.scatter([fpr[best]], [tpr[best]], marker="o", s=40, zorder=3, color=line.get_color(),
                       label=f"Youden: sens {tpr[best]:.2f}, spec {1 - fpr[best]:.2f}")
        drawn += 1
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, vertebra level")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def plot_coverage(metrics, path):
    by_alpha = metrics.get("eps_coverage_by_alpha")
    if not by_alpha or None in by_alpha.values():
        print("coverage: skipped, the evaluation measured no coverage at several levels")
        return False
    alphas = sorted(by_alpha, key=float)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([float(a) for a in alphas], [by_alpha[a] for a in alphas], "o-",
            label=f"keypoints ({metrics['eps_coverage']['count']})")
    ax.plot([0.4, 1], [0.4, 1], "k:", linewidth=0.8, label="calibrated")
    ax.set(xlabel="alpha", ylabel="fraction of true keypoints within eps", title="eps coverage", xlim=(0.45, 1),
           ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="folder with vfa_predictions.json and vfa_metrics.json")
    parser.add_argument("--output", help="folder for the plots (default: the results folder)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    try:
        rows = json.loads((results / "vfa_predictions.json").read_text())
        metrics = json.loads((results / "vfa_metrics.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        parser.error(f"{results}: cannot read the evaluation results ({exc})")
    out = Path(args.output or results)
    out.mkdir(parents=True, exist_ok=True)
    scored = [r for r in rows if not r["imputed"]]
    matched = [r for r in scored if r["matched"]]
    written = []
    if matched:
        plot_borders(matched, "morphology", MORPHOLOGIES, MORPHOLOGY_COLORS, out / "gsq_borders_morphology.png")
        plot_borders(matched, "grade", GRADES, GRADE_COLORS, out / "gsq_borders_grade.png")
        written += ["gsq_borders_morphology.png", "gsq_borders_grade.png"]
    else:
        print("gsq borders: skipped, no labelled vertebra was detected")
    if "screening" in metrics:
        plot_confusion(metrics, out / "confusion.png")
        written.append("confusion.png")
    if scored and plot_roc(scored, out / "roc.png"):
        written.append("roc.png")
    if plot_coverage(metrics, out / "coverage.png"):
        written.append("coverage.png")
    print(f"wrote {', '.join(written) or 'nothing'} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
