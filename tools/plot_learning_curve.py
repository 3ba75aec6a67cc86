#!/usr/bin/env python3
"""Learning curves of training runs: the training loss and each evaluation's results against the
iteration, from the ``metrics.json`` of detectron2 output folders.

    python tools/plot_learning_curve.py output/aasce_fine output/aasce_det --output curve.png \
        [--metric vfa/keypoint_error_of_height ...] [--target vfa/keypoint_error_of_height=0.06 ...]
        [--target vfa/eps_coverage@0.9=0.85:0.95]

Writes one PNG (a panel for the loss and one per evaluation metric, four to a row, a line per run)
and prints the evaluations as a Markdown table. Without ``--metric`` the panels are those of
``xvfa_ext.learning_curve.DEFAULT_METRICS`` that some run evaluated.
"""

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xvfa_ext.files import write_atomic  # noqa: E402
from xvfa_ext.learning_curve import (  # noqa: E402
    DEFAULT_METRICS,
    LearningCurveError,
    evaluation_table,
    read_metrics,
    series,
)

MAX_COLUMNS = 4


def _target(text: str):
    """``METRIC=VALUE`` (a line) or ``METRIC=LOW:HIGH`` (a band)."""
    metric, sep, value = text.rpartition("=")
    try:
        bounds = tuple(float(v) for v in value.split(":"))
        if sep and metric and len(bounds) in (1, 2):
            return metric, bounds
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected METRIC=NUMBER or METRIC=LOW:HIGH, got {text!r}")


def plot(runs, loss, metrics, targets, path: Path) -> None:
    panels = 1 + len(metrics)
    cols = min(panels, MAX_COLUMNS)
    lines = -(-panels // cols)
    fig, grid = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.6 * lines), squeeze=False)
    axes = grid.ravel()
    for ax in axes[panels:]:
        ax.axis("off")
    for name, rows in runs.items():
        line, = axes[0].plot(*series(rows, loss), lw=1, label=name)
        for ax, metric in zip(axes[1:], metrics):
            its, values = series(rows, metric)
            if its:
                ax.plot(its, values, "o-", color=line.get_color(), label=name)
    axes[0].set_title(loss, fontsize=9)
    axes[0].set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    for ax, metric in zip(axes[1:], metrics):
        if metric in targets:
            bounds = targets[metric]
            if len(bounds) == 1:
                ax.axhline(bounds[0], color="k", ls="--", lw=0.8, label="target")
            else:
                ax.axhspan(*bounds, color="k", alpha=0.1, label="target")
            ax.legend(fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("iteration")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, png.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="detectron2 output folders (or their metrics.json)")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--label", action="append", default=None, help="a name per run (default: the folder's name)")
    parser.add_argument("--loss", default="total_loss", help="the training scalar of the first panel")
    parser.add_argument("--metric", action="append", default=None, help="an evaluation result to plot (repeatable)")
    parser.add_argument("--target", action="append", type=_target, default=[],
                        help="METRIC=VALUE (a dashed line) or METRIC=LOW:HIGH (a band)")
    args = parser.parse_args(argv)
    labels = args.label or [(p.parent if p.name == "metrics.json" else p).name for p in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} --label for {len(args.runs)} runs")
    if len(set(labels)) != len(labels):
        parser.error(f"two runs share a label ({labels}); give --label per run")
    try:
        runs = {label: read_metrics(p) for label, p in zip(labels, args.runs)}
    except LearningCurveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for label, path in zip(labels, args.runs):
        if not series(runs[label], args.loss)[0]:
            print(f"error: {path}: no {args.loss!r} in any line", file=sys.stderr)
            return 2
    written = {k for rows in runs.values() for row in rows.values() for k in row}
    metrics = args.metric or [m for m in DEFAULT_METRICS if m in written]
    missing = [m for m in metrics if m not in written]
    if missing:
        print(f"error: no run evaluated {missing[0]!r} ({', '.join(map(str, args.runs))})", file=sys.stderr)
        return 2
    if not metrics:
        print("note: no run holds an evaluation; only the loss is plotted")
    targets = dict(args.target)
    unknown = [m for m in targets if m not in metrics]
    if unknown:
        parser.error(f"--target {unknown[0]!r} is not a plotted metric ({metrics})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plot(runs, args.loss, metrics, targets, args.output)
    if metrics:
        print(evaluation_table(runs, metrics))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
