#!/usr/bin/env python3
"""How long a config's training run takes on this machine: a short run of ``tools/train_net.py``,
projected to the config's schedule.

    python tools/benchmark_training.py --config-file configs/xvfa_dino_r50_fine.py [--iters 150] [KEY=VALUE ...]

The config runs as committed (its data loader and workers, its batch, its hooks), with the KEY=VALUE
overrides (your ``dataset.*`` values, for one), for ``--iters`` iterations instead of
``train.max_iter``, and is evaluated once at the end, as a committed stage is. It prints the CPU
capability, the threads, the seconds per iteration that detectron2 logs (its first two iterations,
checkpoints and evaluation excluded), the median wait for data, the run's other costs (start,
warm-up, evaluation: its wall time less the timed iterations), and the schedule's projected length:
``train.max_iter`` times the seconds per iteration, plus those costs. Timings depend on the CPU and
on what else runs on it: compare runs of one machine. ``OMP_NUM_THREADS``, ``ATEN_CPU_CAPABILITY``
and ``ONEDNN_MAX_CPU_ISA`` pass to the run (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``
give an AVX-512 CPU the kernels of an AVX2 one) and are printed where set.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xvfa_ext.dependencies import require_detectron2  # noqa: E402
from xvfa_ext.learning_curve import LearningCurveError, read_metrics, training_speed  # noqa: E402


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="the config whose schedule to time")
    parser.add_argument("--iters", type=int, default=150, help="iterations to run (at least 5)")
    parser.add_argument("--keep", metavar="DIR", help="keep the short run's output folder here")
    parser.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    require_detectron2()
    if args.iters < 5:
        parser.error("--iters must be at least 5: detectron2 times the iterations after its first two")
    if not Path(args.config_file).is_file():
        parser.error(f"{args.config_file}: no such config file")

    import torch
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    max_iter = int(cfg.train.max_iter)
    evaluations = max(1, max_iter // int(cfg.train.eval_period)) if cfg.train.eval_period else 1
    with tempfile.TemporaryDirectory(prefix="xvfa_benchmark_training_") as tmp:
        output = Path(args.keep or tmp)
        cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", args.config_file, *args.opts,
               f"train.max_iter={args.iters}", f"train.eval_period={args.iters}", f"train.output_dir={output}",
               f"train.log_period={min(int(cfg.train.log_period), args.iters)}"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        print(f"{Path(args.config_file).name}: {args.iters} of its {max_iter} iterations, then one evaluation ...", flush=True)
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            lines = result.stderr.splitlines()
            said = [line for line in lines if line.startswith("train_net.py: ")]  # its one-line errors
            sys.exit("benchmark_training: train_net.py failed:\n" + "\n".join(said or lines[-15:]))
        try:
            timed, seconds = training_speed(output)
            rows = read_metrics(output)
        except LearningCurveError as exc:
            sys.exit(f"benchmark_training: {exc}")
    waits = [row["data_time"] for row in rows.values() if "data_time" in row]
    other = wall - timed * seconds
    settings = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ]
    print(f"{cpu_model()}: CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores"
          + "".join(f", {s}" for s in settings))
    print(f"seconds per iteration: {seconds:.3f} (detectron2, {timed} iterations); "
          f"median wait for data: {statistics.median(waits):.3f} s")
    print(f"start, warm-up and evaluation: {other / 60:.1f} min; the short run: {wall / 60:.1f} min")
    print(f"projected run of {max_iter} iterations: {(max_iter * seconds + other) / 60:.1f} min"
          + (f" (the config evaluates {evaluations} times; this counts one)" if evaluations > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
