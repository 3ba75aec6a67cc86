#!/usr/bin/env python3
"""Peak memory and time of training and prediction on large 16-bit films, with sizes in vertebra units.

    python tools/benchmark_large_film.py [--train CONFIG ...] [--predict CONFIG] [--size 3000] [KEY=VALUE ...]

A synthetic radiograph is enlarged to SIZE x SIZE pixels and written as a 16-bit PNG with its
annotations scaled alike (vertebrae about SIZE/20 px tall). In a fresh process each: every
``--train`` config's training mapper and model take one training step on a batch of that config's
size of such films (by default the two stages as a CPU trains them: the detector config and the fine
config), and the ``--predict`` config's test mapper and model predict on one film (the detector's
threshold at 0, so that the fine stage runs on every box it keeps). Each process reports its peak
resident memory (``ru_maxrss``), the sizes the films were resized to, and the wall time (the first
prediction includes compiling the keypoint trunk). Weights are random: this measures memory and
time, not accuracy.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xvfa_ext.dependencies import require_detectron2  # noqa: E402


def write_film(folder: Path, size: int) -> dict:
    """A synthetic film enlarged to ``size`` x ``size`` as a 16-bit PNG, and its dataset dict."""
    import cv2
    import numpy as np

    from xvfa_ext.scale import median_vertebra_height
    from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed, vertebra_box

    config = SyntheticConfig(prevalence="enriched", labelled_fraction=1.0)
    image, vertebrae = generate_image(image_seed(0, 0), config)
    factor = size / max(image.shape)
    big = cv2.resize(image.astype(np.uint16) * 257, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    film = np.zeros((size, size), np.uint16)
    film[: big.shape[0], : big.shape[1]] = big
    path = folder / f"film_{size}.png"
    if not cv2.imwrite(str(path), film):
        sys.exit(f"benchmark_large_film: cannot write {path}")
    annotations = []
    for v in vertebrae:
        points = v.annotated * factor
        annotations.append({
            "bbox": vertebra_box(points, size, size), "bbox_mode": 1, "category_id": 0, "iscrowd": 0,  # 1: BoxMode.XYWH_ABS
            "keypoints": [float(x) for p in points for x in (*p, 2.0)],
            "grade": int(v.grade), "morphology": int(v.morphology), "imputed": False, "level": v.level,
        })
    height = median_vertebra_height(annotations)
    return {"file_name": str(path), "height": size, "width": size, "image_id": 0, "annotations": annotations,
            "vertebra_height": height}


def measure(mode: str, config_file: str, record: dict, overrides) -> dict:
    """One training step or one prediction in this process: peak memory, sizes and time."""
    import torch
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), overrides)
    cfg.dataset.vertebra_height = record.pop("vertebra_height")
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    start = time.perf_counter()
    if mode == "train":
        mapper = instantiate(cfg.dataloader.train.mapper)
        inputs = [mapper(dict(record)) for _ in range(int(cfg.dataloader.train.total_batch_size))]
        model.train()
        losses = model(inputs)
        sum(losses.values()).backward()
    else:
        mapper = instantiate(cfg.dataloader.test.mapper)
        inputs = [mapper({k: v for k, v in record.items() if k != "annotations"})]
        model.eval()
        if getattr(model, "detector", None) is not None:
            model.score_threshold = 0.0
        with torch.no_grad():
            outputs = model(inputs)
        assert len(outputs[0]["instances"]) > 0, "no vertebra was predicted"
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "config": Path(config_file).name,
        "films": len(inputs),
        "detector_input": list(inputs[0]["image"].shape[1:]),
        "fine_image": list(inputs[0].get("fine_image", inputs[0]["image"]).shape[1:]),
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configs = ROOT / "configs"
    parser.add_argument("--train", nargs="+", metavar="CONFIG", default=[str(configs / "xvfa_dino_r50_detector.py"),
                                                                       str(configs / "xvfa_dino_r50_fine.py")],
                        help="configs to take one training step with")
    parser.add_argument("--predict", metavar="CONFIG", default=str(configs / "xvfa_dino_r50_cpu.py"),
                        help="the config to predict with")
    parser.add_argument("--config-file", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=3000, help="the film's side in pixels")
    parser.add_argument("--mode", choices=("train", "predict"), help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    require_detectron2()
    if args.mode:  # the child: one measurement, as JSON on the last line
        print(json.dumps(measure(args.mode, args.config_file, json.loads(Path(args.record).read_text()), args.opts)))
        return 0
    if args.size < 256:
        parser.error("--size must be at least 256 pixels")
    with tempfile.TemporaryDirectory(prefix="xvfa_large_film_") as tmp:
        record = write_film(Path(tmp), args.size)
        record_file = Path(tmp) / "record.json"
        record_file.write_text(json.dumps(record))
        print(f"{args.size}x{args.size} 16-bit film, median vertebra {record['vertebra_height']} px")
        rows = []
        for mode, config in [("train", c) for c in args.train] + [("predict", args.predict)]:
            cmd = [sys.executable, __file__, "--config-file", config, "--mode", mode, "--record", str(record_file), *args.opts]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"benchmark_large_film: {mode} failed:\n" + "\n".join(result.stderr.splitlines()[-15:]))
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print("| mode | config | films | detector input | fine image | wall time, s | peak memory, GiB | CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['config']} | {r['films']} | {'x'.join(map(str, r['detector_input']))} | {'x'.join(map(str, r['fine_image']))} | "
              f"{r['seconds']} | {r['peak_rss_gib']} | {r['cpu']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
