#!/usr/bin/env python3
"""A trained model on films and on the same films at another size: how far apart the keypoints land.

    python tools/benchmark_scale.py --config-file configs/xvfa_dino_r50_fine.py --weights W [--films 10]
        [--factor 2] [KEY=VALUE ...]

Each of the first FILMS films of the config's evaluation set is written again at FACTOR times its
size (bicubic, the same bit depth, annotations scaled alike) and both are predicted. The fine
config predicts on the ground-truth boxes, so vertebrae pair up in order; a config with a detector
pairs each vertebra of the film with the nearest one of the copy (Hungarian on box centres). The
differences are in the original film's pixels (the copy's keypoints divided by FACTOR), also as a
share of each vertebra's predicted posterior height.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xvfa_ext.dependencies import require_detectron2  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="the trained model's checkpoint")
    parser.add_argument("--films", type=int, default=10, help="how many films of the evaluation set")
    parser.add_argument("--factor", type=float, default=2.0, help="the copy's size against the film's")
    parser.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides (the dataset.* values)")
    args = parser.parse_args(argv)
    if args.factor <= 0 or args.films < 1:
        parser.error("--factor must be positive and --films at least 1")
    require_detectron2()
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog
    from scipy.optimize import linear_sum_assignment

    from xvfa_ext.data import DatasetError, register_from_config
    from xvfa_ext.modeling import XVFACheckpointer
    from xvfa_ext.scale import write_scaled_film

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    try:
        register_from_config(cfg)
        model = instantiate(cfg.model)
        XVFACheckpointer(model).load(args.weights)
    except (DatasetError, ValueError) as exc:
        print(f"benchmark_scale.py: {exc}", file=sys.stderr)
        return 2
    model.eval()
    mapper = instantiate(cfg.dataloader.test.mapper)
    records = DatasetCatalog.get(cfg.dataloader.test.dataset.names)[: args.films]
    distances, relative = [], []
    with tempfile.TemporaryDirectory(prefix="xvfa_scale_") as tmp, torch.no_grad():
        for k, record in enumerate(records):
            copy = write_scaled_film(record, args.factor, Path(tmp) / f"{k}{Path(record['file_name']).suffix}")
            film, scaled = (model([mapper(r)])[0]["instances"] for r in (record, copy))
            a = film.pred_keypoints[..., :2].numpy()
            b = scaled.pred_keypoints[..., :2].numpy() / args.factor
            if getattr(model, "detector", None) is None:
                rows = cols = np.arange(len(a))
            else:
                ca, cb = a.mean(1), b.mean(1)
                rows, cols = linear_sum_assignment(np.linalg.norm(ca[:, None] - cb[None], axis=-1))
            d = np.linalg.norm(a[rows] - b[cols], axis=-1)
            height = np.linalg.norm(a[rows, 0] - a[rows, 3], axis=-1)
            distances.append(d.reshape(-1))
            relative.append((d / height[:, None]).reshape(-1))
            print(f"{Path(record['file_name']).name}: {len(rows)} vertebrae, keypoints {d.mean():.3f} px apart on average "
                  f"(at most {d.max():.3f})", flush=True)
    d, r = np.concatenate(distances), np.concatenate(relative)
    print(f"\n{len(records)} films at x{args.factor:g}, {len(d)} keypoints; CPU {torch.backends.cpu.get_cpu_capability()}")
    print("| mean px | median px | 95th percentile px | max px | mean, % of height |")
    print("|---|---|---|---|---|")
    print(f"| {d.mean():.3f} | {np.median(d):.3f} | {np.percentile(d, 95):.3f} | {d.max():.3f} | {100 * r.mean():.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
