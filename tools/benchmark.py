#!/usr/bin/env python3
"""Plain DINO against XVFA on the same batch, machine and image size: training and inference time.

Prints the median seconds per training iteration (forward, backward, optimizer step) and per
inference image for each model, timed in turns in one process, their ratios (XVFA / DINO), and the
peak memory of each (a fresh process per model: resident memory on CPU, allocated memory on CUDA).

    python tools/benchmark.py [--config-file configs/xvfa_dino_r50.py] [--batch 2] [--iters 5] [KEY=VALUE ...]

Trailing KEY=VALUE pairs override the config, e.g. dataloader.test.mapper.detector_vertebra_height=26.33 for the
synthetic films at full resolution.
"""

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from xvfa_ext.dependencies import require_detectron2

ROOT = Path(__file__).resolve().parents[1]


def _batches(cfg, batch_size: int):
    from detectron2.config import instantiate
    from detectron2.data import DatasetCatalog

    records = DatasetCatalog.get(cfg.dataloader.train.dataset.names)[:batch_size]
    test_mapper = instantiate(cfg.dataloader.test.mapper)
    # The training batch as the test mapper makes it (its sizes, no random augmentation), with annotations.
    cfg.dataloader.test.mapper.is_train = True
    train_mapper = instantiate(cfg.dataloader.test.mapper)
    return [train_mapper(r) for r in records], [test_mapper(r) for r in records]


def _build(config_file: str, overrides, batch_size: int):
    from detectron2.config import LazyConfig, instantiate

    from xvfa_ext.data import register_from_config

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), overrides)
    register_from_config(cfg)
    torch.manual_seed(0)
    xvfa = instantiate(cfg.model)
    # An untrained detector scores no box over the threshold; a trained one finds thirteen vertebrae.
    xvfa.score_threshold, xvfa.max_vertebrae = 0.0, 13
    xvfa.to(cfg.train.device)
    train_inputs, test_inputs = _batches(cfg, batch_size)
    return xvfa, cfg.train.device, train_inputs, test_inputs


def _steps(model: torch.nn.Module, train_inputs, test_inputs):
    """One training iteration (forward, backward, optimizer step) and one inference batch of ``model``."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def train_step():
        model.train()
        losses = sum(model(train_inputs).values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()

    def infer():
        model.eval()
        with torch.no_grad():
            model(test_inputs)

    return train_step, infer


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_times(config_file: str, overrides, batch_size: int, iters: int) -> dict:
    """Median seconds of DINO (the config's detector) and XVFA, timed in turns in one process.

    Taking turns exposes both models to the same machine state (caches, clock, other load), so the
    ratios hold still from run to run even where the absolute times drift. Training is timed first,
    then inference with the weights fixed, as they are when a trained model predicts.
    """
    xvfa, device, train_inputs, test_inputs = _build(config_file, overrides, batch_size)
    steps = {"dino": _steps(xvfa.detector, train_inputs, test_inputs), "xvfa": _steps(xvfa, train_inputs, test_inputs)}
    times = {(which, kind): [] for which in steps for kind in ("train", "infer")}
    for k, kind in enumerate(("train", "infer")):
        for round_ in range(iters + 1):  # the first round warms up
            for which, fns in steps.items():
                seconds = _timed(fns[k], device)
                if round_:
                    times[which, kind].append(seconds)
    size = tuple(test_inputs[0]["image"].shape[-2:])
    result = {"device": device, "input_size": size, "trunk_dtype": xvfa.roi_head.head.keypoint_head.trunk_dtype}
    for (which, kind), values in times.items():
        result[f"{which}_{kind}_s"] = statistics.median(values) / (batch_size if kind == "infer" else 1)
    return result


def measure_memory(config_file: str, overrides, which: str, batch_size: int) -> float:
    """Peak memory in GiB of one training iteration and one inference batch of ``which`` alone."""
    xvfa, device, train_inputs, test_inputs = _build(config_file, overrides, batch_size)
    model = xvfa.detector if which == "dino" else xvfa
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in _steps(model, train_inputs, test_inputs):
        step()
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=str(ROOT / "configs" / "xvfa_dino_r50.py"))
    parser.add_argument("--batch", type=int, default=2, help="images per training iteration")
    parser.add_argument("--iters", type=int, default=5, help="timed turns of each model after one warm-up turn")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", choices=("dino", "xvfa"), help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides, e.g. the input size")
    args = parser.parse_args()
    require_detectron2()
    torch.set_num_threads(args.threads)
    if args.only:
        print(measure_memory(args.config_file, args.opts, args.only, args.batch))
        return
    peak = {}
    for which in ("dino", "xvfa"):  # a fresh process each: resident memory is per process
        cmd = [sys.executable, __file__, "--only", which, "--config-file", args.config_file, "--batch", str(args.batch),
               "--threads", str(args.threads), *args.opts]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"benchmark of {which} failed:\n{out.stderr[-2000:]}")
        peak[which] = float(out.stdout.strip().splitlines()[-1])
    t = measure_times(args.config_file, args.opts, args.batch, args.iters)
    memory = "GiB, CUDA" if t["device"] == "cuda" else "GiB, resident"
    print(f"config {args.config_file} {' '.join(args.opts)}".rstrip())
    print(f"device {t['device']}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"input {t['input_size'][0]}x{t['input_size'][1]}, median of {args.iters} turns each")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, keypoint trunk in {t['trunk_dtype']}")
    print(f"{'':28}{'DINO':>10}{'XVFA':>10}{'ratio':>8}")
    for kind, label in (("train", "train s/iteration"), ("infer", "inference s/image")):
        d, x = t[f"dino_{kind}_s"], t[f"xvfa_{kind}_s"]
        print(f"{label:28}{d:10.3f}{x:10.3f}{x / d:8.2f}")
    print(f"{'peak memory (' + memory + ')':28}{peak['dino']:10.2f}{peak['xvfa']:10.2f}")


if __name__ == "__main__":
    main()
