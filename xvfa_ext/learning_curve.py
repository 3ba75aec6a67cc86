"""A training run's learning curve, read from the ``metrics.json`` that detectron2's ``JSONWriter``
writes into the output folder.

Each line of that file is one JSON object with an ``iteration``: the training scalars (losses,
learning rate, times) every logging period, and, at each evaluation, the evaluators' flattened
results (``vfa/keypoint_error_px``, ``bbox/AP50``, ...). A resumed run appends to the file and
repeats the iterations after its last checkpoint; the later line of an iteration is the one kept.
"""

import json
import math
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple


class LearningCurveError(ValueError):
    """A ``metrics.json`` that cannot be read as a learning curve."""


# The evaluation results a learning curve shows by default, in this order, where a run has them.
DEFAULT_METRICS = (
    "vfa/keypoint_error_of_height",
    "vfa/reduction_slope",
    "vfa/vertebra/normal_mild_vs_moderate_severe/auc",
    "vfa/eps_coverage@0.9",
    "vfa/recall",
    "vfa/false_positives_per_image",
    "bbox/AP50",
)


def _read_output_file(path: Path, name: str, errors: str = "strict") -> Tuple[Path, str]:
    """The file ``path``, or ``name`` in the output folder ``path``, and its text (decoding
    ``errors`` as :meth:`bytes.decode` takes them).

    Raises:
        LearningCurveError: naming the file where it is missing or cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        path = path / name
    try:
        return path, path.read_text(errors=errors)
    except FileNotFoundError:
        raise LearningCurveError(f"{path}: no such file (is it a detectron2 output folder?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LearningCurveError(f"{path}: not readable ({exc})") from None


def read_metrics(path: Path) -> Dict[int, Dict[str, float]]:
    """``{iteration: {scalar: value}}`` from a ``metrics.json`` (or the folder holding one).

    Raises:
        LearningCurveError: naming the file, and the line where a line is not a JSON object with an
            integer ``iteration`` and numeric values.
    """
    path, text = _read_output_file(path, "metrics.json")
    lines = text.splitlines()
    rows: Dict[int, Dict[str, float]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LearningCurveError(f"{path} line {number}: not JSON ({exc.msg})") from None
        iteration = row.get("iteration") if isinstance(row, dict) else None
        if isinstance(iteration, bool) or not isinstance(iteration, int):
            raise LearningCurveError(f"{path} line {number}: not an object with an integer 'iteration'")
        bad = [k for k, v in row.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise LearningCurveError(f"{path} line {number}: {bad[0]!r} is not a number")
        rows.setdefault(row.pop("iteration"), {}).update(row)
    if not rows:
        raise LearningCurveError(f"{path}: holds no iteration")
    return dict(sorted(rows.items()))


def series(rows: Dict[int, Dict[str, float]], key: str) -> Tuple[List[int], List[float]]:
    """The iterations at which ``key`` was written, and its values there."""
    points = [(it, row[key]) for it, row in rows.items() if key in row]
    return [it for it, _ in points], [value for _, value in points]


def evaluation_table(runs: Dict[str, Dict[int, Dict[str, float]]], metrics: Sequence[str]) -> str:
    """A Markdown table: one row per run and evaluated iteration, one column per metric.

    A row is an iteration at which any of ``metrics`` was written; a metric a run lacks there is
    ``-``, a value that is not finite is written as it is (``nan``).
    """
    header = "| run | iteration | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 2)]
    for name, rows in runs.items():
        for it, row in rows.items():
            if any(m in row for m in metrics):
                cells = [_cell(row[m]) if m in row else "-" for m in metrics]
                lines.append(f"| {name} | {it} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


_SPEED = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([0-9.]+) s / it\)")


def training_speed(log: Path) -> Tuple[int, float]:
    """The iterations timed and the seconds per iteration that detectron2's ``IterationTimer``
    logs at the end of training (``log.txt`` of an output folder, or the folder): hooks and the
    first two iterations excluded.

    Raises:
        LearningCurveError: naming the file where it is missing, unreadable or holds no such line.
    """
    log, text = _read_output_file(log, "log.txt", errors="replace")  # a log may hold any bytes
    found = _SPEED.findall(text)
    if not found:
        raise LearningCurveError(f"{log}: no 'Overall training speed' line (did the training end?)")
    iterations, seconds = found[-1]
    return int(iterations), float(seconds)
