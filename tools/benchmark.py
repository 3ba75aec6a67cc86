#!/usr/bin/env python3
"""Plain DINO against XVFA on the same batch, machine and image size: training and inference time.

Prints the median seconds per training iteration (forward, backward, optimizer step) and per
inference image for each model, their ratios (XVFA / DINO), and the peak memory of each (a fresh
process per model: resident memory on CPU, allocated memory on CUDA).

    python tools/benchmark.py [--config-file configs/xvfa_dino_r50.py] [--batch 2] [--iters 5]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _batches(cfg, batch_size: int):
    from detectron2.config import instantiate
    from detectron2.data import DatasetCatalog

    from xvfa_ext.data import VertebraDatasetMapper

    records = DatasetCatalog.get(cfg.dataloader.train.dataset.names)[:batch_size]
    train_mapper = VertebraDatasetMapper(True, instantiate(cfg.dataloader.test.mapper.augmentations))
    test_mapper = VertebraDatasetMapper(False, instantiate(cfg.dataloader.test.mapper.augmentations))
    return [train_mapper(r) for r in records], [test_mapper(r) for r in records]


def _median_seconds(fn, iters: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config_file: str, which: str, batch_size: int, iters: int) -> dict:
    """One model in this process: ``which`` is 'dino' (the config's detector alone) or 'xvfa'."""
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(config_file)
    device = cfg.train.device
    torch.manual_seed(0)
    xvfa = instantiate(cfg.model)
    # An untrained detector scores no box over the threshold; a trained one finds thirteen vertebrae.
    xvfa.score_threshold, xvfa.max_vertebrae = 0.0, 13
    model = xvfa.detector if which == "dino" else xvfa
    model.to(device)
    train_inputs, test_inputs = _batches(cfg, batch_size)
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

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = _median_seconds(train_step, iters, device)
    infer_s = _median_seconds(infer, iters, device) / batch_size
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    size = tuple(test_inputs[0]["image"].shape[-2:])
    return {"train_s": train_s, "infer_s": infer_s, "peak_gib": peak, "device": device, "input_size": size}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=str(ROOT / "configs" / "xvfa_dino_r50.py"))
    parser.add_argument("--batch", type=int, default=2, help="images per training iteration")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations after one warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", choices=("dino", "xvfa"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args.config_file, args.only, args.batch, args.iters)))
        return
    results = {}
    for which in ("dino", "xvfa"):
        cmd = [sys.executable, __file__, "--only", which, "--config-file", args.config_file, "--batch", str(args.batch),
               "--iters", str(args.iters), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"benchmark of {which} failed:\n{out.stderr[-2000:]}")
        results[which] = json.loads(out.stdout.strip().splitlines()[-1])
    d, x = results["dino"], results["xvfa"]
    memory = "GiB, CUDA" if d["device"] == "cuda" else "GiB, resident"
    print(f"config {args.config_file}")
    print(f"device {d['device']}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"input {d['input_size'][0]}x{d['input_size'][1]}, median of {args.iters}")
    print(f"{'':28}{'DINO':>10}{'XVFA':>10}{'ratio':>8}")
    print(f"{'train s/iteration':28}{d['train_s']:10.3f}{x['train_s']:10.3f}{x['train_s'] / d['train_s']:8.2f}")
    print(f"{'inference s/image':28}{d['infer_s']:10.3f}{x['infer_s']:10.3f}{x['infer_s'] / d['infer_s']:8.2f}")
    print(f"{'peak memory (' + memory + ')':28}{d['peak_gib']:10.2f}{x['peak_gib']:10.2f}")


if __name__ == "__main__":
    main()
