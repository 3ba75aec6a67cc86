#!/usr/bin/env python3
"""Time the per-image uncertainty of the fine stage and the synthetic data generator on this machine.

Uncertainty: for one image's 13 vertebrae, eps at alpha and M samples per keypoint from the learned
density, propagated through FuzzyGSQ (image probabilities combined as in eq. 7). Printed as the
median over repeats, beside the one-off cost of drawing the flow's sample pool and, for
comparison, evaluating the flow on a 64x64 grid per keypoint (the paper's method).
"""

import argparse
import statistics
import tempfile
import time

import torch

from xvfa_ext.gsq import FuzzyGSQ
from xvfa_ext.rle import ResidualLogLikelihood
from xvfa_ext.synthetic import SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset
from xvfa_ext.uncertainty import estimate_uncertainty


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertebrae", type=int, default=13)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--synthetic-images", type=int, default=200, help="0 skips the generator timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    density, gsq = ResidualLogLikelihood().eval(), FuzzyGSQ()
    n, k = args.vertebrae, 6
    mu = torch.rand(n, k, 2)
    scale = 0.02 + 0.03 * torch.rand(n, k, 2)
    boxes = torch.tensor([[100.0, 100.0, 160.0, 150.0]]).repeat(n, 1)
    image_probs = (torch.softmax(torch.randn(n, 4), -1), torch.softmax(torch.randn(n, 3), -1))

    def uncertainty():
        estimate_uncertainty(density, gsq, mu, scale, boxes, image_probs, args.alpha, args.samples)

    start = time.perf_counter()
    uncertainty()
    first = time.perf_counter() - start
    steady = median_seconds(uncertainty, args.repeats)

    grid = torch.stack(torch.meshgrid(torch.linspace(-4, 4, 64), torch.linspace(-4, 4, 64), indexing="ij"), -1)
    with torch.no_grad():
        grid_seconds = median_seconds(lambda: density.flow.log_prob(grid.reshape(1, -1, 2).expand(n * k, -1, -1).reshape(-1, 2)), 3)

    print(f"torch {torch.__version__}, {args.threads} threads")
    print(f"uncertainty, {n} vertebrae x {k} keypoints, {args.samples} samples, alpha {args.alpha}:")
    print(f"  per image (median of {args.repeats}):        {steady:8.4f} s")
    print(f"  first image (draws the flow's sample pool):  {first:8.4f} s")
    print(f"  for comparison, flow on a 64x64 grid per keypoint: {grid_seconds:8.4f} s")

    if args.synthetic_images:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write_synthetic_dataset(out, args.synthetic_images, seed=0, config=SyntheticConfig(), progress=False)
            seconds = time.perf_counter() - start
        print(f"synthetic dataset, {args.synthetic_images} images of 512x384 written with COCO JSON: {seconds:8.2f} s")


if __name__ == "__main__":
    main()
