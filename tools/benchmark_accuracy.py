#!/usr/bin/env python3
"""The paper's two-stage schedule end to end, timed, and one table of what it reaches.

    python tools/benchmark_accuracy.py [KEY=VALUE ...] --output output/benchmark_accuracy
        [--detector-set KEY=VALUE ...] [--fine-set KEY=VALUE ...] [--eval-set KEY=VALUE ...]

1. trains the detector config (``configs/xvfa_dino_r50_detector.py``);
2. trains the fine config (``configs/xvfa_dino_r50_fine.py``) on ground-truth boxes;
3. joins the two checkpoints with ``tools/combine_weights.py``;
4. evaluates the config whose model the joined weights are (``configs/xvfa_dino_r50_cpu.py``, the main
   config with the detector config's detector) on them (``--eval-only``).

Each stage runs ``tools/train_net.py`` as its own process, with its log in ``OUTPUT/<stage>/log.txt``.
The leading KEY=VALUE pairs apply to every stage (your data: ``dataset.image_root=... dataset.train_json=...
dataset.val_json=... dataset.view=...``); ``--*-set`` pairs override one stage's config (the budget:
``train.max_iter=...``), and
``--resume`` skips a stage whose results exist. The table gives detection recall and false boxes per
image, the share of found vertebrae given their annotated level, keypoint error (px and % of the
posterior height), the slope of predicted against annotated height reduction d, eps coverage, and AUC, sensitivity and
specificity at the Youden point for both screening tasks with each of the three scores (end to end
also on the found vertebrae alone, where some were missed), the ceiling
(the annotated keypoints' height reduction), and the wall time of each stage. It is also written
to ``OUTPUT/table.md``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xvfa_ext.dependencies import require_detectron2  # noqa: E402
from xvfa_ext.files import write_atomic  # noqa: E402
from xvfa_ext.metrics import GRADE_TASKS, HEADLINE_SCORE, SCORES  # noqa: E402

TASK_LABELS = {"normal_vs_fracture": "normal vs fracture", "normal_mild_vs_moderate_severe": "normal+mild vs moderate+severe"}


def _run(cmd, log: Path) -> float:
    """Runs ``cmd`` with its output in ``log``; the wall time in seconds. Exits naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ))
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"benchmark_accuracy: {cmd[1]} failed (exit {result.returncode}); see {log}:\n" + "\n".join(tail))
    print(f"  done in {seconds / 60:.1f} min", flush=True)
    return seconds


def _train_net(config: str, out: Path, overrides, eval_only=False):
    cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(ROOT / "configs" / config)]
    return cmd + (["--eval-only"] if eval_only else []) + [f"train.output_dir={out}", *overrides]


def run_schedule(output: Path, detector_set, fine_set, eval_set, resume: bool, shared=()) -> dict:
    """The four stages, ``shared`` overrides in each; returns their wall times in seconds (None for a
    stage skipped by ``resume``)."""
    detector_set, fine_set, eval_set = ([*shared, *pairs] for pairs in (detector_set, fine_set, eval_set))
    times = {}
    stages = [
        ("detector", output / "detector" / "model_final.pth", _train_net("xvfa_dino_r50_detector.py", output / "detector", detector_set)),
        ("fine", output / "fine" / "vfa_metrics.json", _train_net("xvfa_dino_r50_fine.py", output / "fine", fine_set)),
        ("combine", output / "two_stage.pth", [
            sys.executable, str(ROOT / "tools" / "combine_weights.py"), "--detector", str(output / "detector" / "model_final.pth"),
            "--fine", str(output / "fine" / "model_final.pth"), "--output", str(output / "two_stage.pth")]),
        ("end_to_end", output / "end_to_end" / "vfa_metrics.json", _train_net(
            "xvfa_dino_r50_cpu.py", output / "end_to_end", [f"train.init_checkpoint={output / 'two_stage.pth'}", *eval_set], eval_only=True)),
    ]
    for name, result, cmd in stages:
        if resume and result.is_file():
            print(f"{name}: {result} exists, skipped (--resume)")
            times[name] = None
            continue
        times[name] = _run(cmd, output / name / "log.txt" if name != "combine" else output / "combine.log")
    return times


def _read_metrics(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        sys.exit(f"benchmark_accuracy: {path}: cannot read the evaluation ({exc})")


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def table(fine: dict, end_to_end: dict, times: dict) -> str:
    """The Markdown table of both evaluations: stage-level figures, then screening by score."""
    lines = ["| evaluation | recall @IoU 0.5 | false boxes / image | median IoU of a match | level correct | "
             "keypoint error px | % of height | slope of d (r) | eps coverage |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in (("fine stage, ground-truth boxes", fine), ("end to end", end_to_end)):
        det, err = m["detection"], m.get("keypoint_error", {})
        relative = err.get("relative_to_posterior_height", {}).get("mean")
        agreement = m.get("reduction_agreement", {})
        lines.append(
            f"| {name} | {_fmt(det['recall'])} | {_fmt(det.get('false_positives_per_image'), 2)} | {_fmt(det.get('median_iou'), 2)} | "
            f"{_fmt(det.get('level_accuracy'))} | {_fmt(err.get('mean_px'), 2)} | "
            f"{_fmt(None if relative is None else 100 * relative, 1)} | "
            f"{_fmt(agreement.get('slope'), 2)} ({_fmt(agreement.get('correlation'), 2)}) | "
            f"{_fmt(m.get('eps_coverage', {}).get('coverage'))} |"
        )
    header = "| evaluation | score | " + " | ".join(f"{TASK_LABELS[t]}: AUC | sens. | spec." for t in GRADE_TASKS) + " |"
    lines += ["", f"Alpha {end_to_end.get('alpha')}; vertebra level, at the Youden point. Headline score: {HEADLINE_SCORE}.", "",
              header, "|---|---|" + "---|---|---|" * len(GRADE_TASKS)]

    def row(label, score, per_task):
        cells = " | ".join(
            f"{_fmt(per_task[t]['auc'])} | {_fmt(per_task[t]['sensitivity'])} | {_fmt(per_task[t]['specificity'])}" for t in GRADE_TASKS
        )
        lines.append(f"| {label} | {score} | {cells} |")

    for name, m in (("fine stage", fine), ("end to end", end_to_end)):
        screening = m["screening"]
        for score in SCORES:
            per_task = screening["vertebra"]["grade"] if score == HEADLINE_SCORE else screening["scores"][score]["vertebra"]
            row(name, score, per_task)
    # Where the detector missed vertebrae, each counted above as certain normal: the found ones alone.
    for score, per_task in end_to_end.get("screening_of_found", {}).get("scores", {}).items():
        row("end to end, found vertebrae only", score, per_task)
    row("ceiling", "annotated d", end_to_end["ceiling"]["vertebra"])
    lines += ["", "| stage | wall time, min |", "|---|---|"]
    lines += [f"| {name} | {'skipped' if s is None else f'{s / 60:.1f}'} |" for name, s in times.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", nargs="*", metavar="KEY=VALUE", help="overrides of every stage's config (the dataset.* values)")
    parser.add_argument("--output", type=Path, default=ROOT / "output" / "benchmark_accuracy")
    parser.add_argument("--detector-set", nargs="*", default=[], metavar="KEY=VALUE", help="detector config overrides")
    parser.add_argument("--fine-set", nargs="*", default=[], metavar="KEY=VALUE", help="fine config overrides")
    parser.add_argument("--eval-set", nargs="*", default=[], metavar="KEY=VALUE", help="xvfa_dino_r50_cpu.py overrides at evaluation")
    parser.add_argument("--resume", action="store_true", help="skip the stages whose results exist")
    args = parser.parse_args(argv)
    require_detectron2()
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"CUDA {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", flush=True)
    bad = [pair for pair in args.shared if "=" not in pair]
    if bad:
        parser.error(f"expected KEY=VALUE pairs before the options, got {bad}")
    times = run_schedule(args.output, args.detector_set, args.fine_set, args.eval_set, args.resume, args.shared)
    text = table(_read_metrics(args.output / "fine" / "vfa_metrics.json"),
                 _read_metrics(args.output / "end_to_end" / "vfa_metrics.json"), times)
    write_atomic(args.output / "table.md", (text + "\n").encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
