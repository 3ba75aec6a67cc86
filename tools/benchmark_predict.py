#!/usr/bin/env python3
"""End-to-end prediction speed on synthetic films of realistic size: films per minute and where the time goes.

    python tools/benchmark_predict.py [--config-file configs/xvfa_dino_r50_cpu.py] [--weights W]
        [--films 24] [--processes 1 2] [--batch-size 1] [--workers 0] [KEY=VALUE ...]

Writes ``--films`` synthetic films of 2000x2500 px (13 vertebrae about 90 px tall, 16-bit PNG), and
predicts with the config's model as if trained on such films (its vertebra size is theirs), then
runs ``xvfa_ext.predictor.predict_cohort`` on them once per entry of ``--processes`` (through
detectron2's ``launch``, as ``tools/predict.py --num-gpus N``; on a CPU each process gets
cores / N threads). Each process first predicts one film of its own as a warm-up, not counted.
Prints per run the films per minute (wall time of the cohort, model loading excluded) and the
seconds per film spent reading (decoding and resizing), in the detector, in the fine stage's
network, sampling keypoints through the GSQ tree, and writing (report, drawing, CSV), summed over
the processes. Without ``--weights`` the weights are random and every film gets 13 boxes
(``model.score_threshold=0`` and ``model.max_vertebrae=13``), so that the fine stage does a real
film's work.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.engine import launch  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from xvfa_ext import predictor as P  # noqa: E402
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("read", "detector", "fine stage", "sampling", "write")
FILM_SIZE = (2500, 2000)  # height, width
VERTEBRA_PX = 90.0


def write_films(folder: Path, count: int, seed: int = 5) -> None:
    """``count`` 16-bit films of FILM_SIZE with vertebrae about VERTEBRA_PX tall (the synthetic
    spine drawn at the matching size and centred on a film of the same background)."""
    scale = VERTEBRA_PX / 26.33  # the synthetic films' median vertebra at 512 px
    cfg = SyntheticConfig(height=int(512 * scale), width=int(384 * scale))
    for i in range(count):
        image, _ = generate_image(image_seed(seed, i), cfg)
        film = np.full(FILM_SIZE, int(np.median(image)), np.uint8)
        top, left = (FILM_SIZE[0] - cfg.height) // 2, (FILM_SIZE[1] - cfg.width) // 2
        film[top:top + cfg.height, left:left + cfg.width] = image
        cv2.imwrite(str(folder / f"film{i:03d}.png"), film.astype(np.uint16) * 257)


def _timed(spent, name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper


def _instrument(predictor, spent):
    """Time the phases: module hooks on the detector and the keypoint network, wrappers elsewhere."""
    models = list(predictor.model.models) if hasattr(predictor.model, "models") else [predictor.model]
    for name, modules in (("detector", [models[0].detector]), ("fine stage", [m.roi_head.head for m in models])):
        for module in modules:
            if module is None:
                continue
            module.register_forward_pre_hook(lambda *_, n=name: spent.__setitem__(f"{n}_start", time.perf_counter()))
            module.register_forward_hook(
                lambda *_, n=name: spent.__setitem__(n, spent[n] + time.perf_counter() - spent[f"{n}_start"]))
    for m in models:
        m.roi_head.head.uncertainty = _timed(spent, "sampling", m.roi_head.head.uncertainty)
    P.read_film = _timed(spent, "read", P.read_film)
    P.map_film = _timed(spent, "read", P.map_film)
    P._write_film = _timed(spent, "write", P._write_film)


def run(args, bundle, films, out):
    cores = torch.get_num_threads() if comm.get_world_size() == 1 else max(1, args.cores // comm.get_local_size())
    torch.set_num_threads(cores)
    predictor = P.VFAPredictor(bundle, overrides=args.opts)
    spent = dict.fromkeys(PHASES, 0.0)
    _instrument(predictor, spent)
    rank = comm.get_rank()
    # Warm-up: one film per process, not counted.
    predictor.run([P.map_film(predictor.mapper, P.read_film(films[rank % len(films)]))])
    for k in spent:
        spent[k] = 0.0
    comm.synchronize()
    start = time.perf_counter()
    options = P.CohortOptions(output=out / "cohort", batch_size=args.batch_size, num_workers=args.workers)
    summary = P.predict_cohort(predictor, films, options)
    wall = time.perf_counter() - start
    times = comm.gather({k: v for k, v in spent.items() if k in PHASES}, dst=0)
    if comm.is_main_process():
        total = {k: sum(t[k] for t in times) for k in PHASES}
        result = {"processes": comm.get_world_size(), "threads": cores, "films": summary["predicted"],
                  "failed": len(summary["failed"]), "wall_s": wall, "films_per_min": 60 * summary["predicted"] / wall,
                  "per_film_s": {k: v / max(1, summary["predicted"]) for k, v in total.items()}}
        (out / "result.json").write_text(json.dumps(result))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=str(ROOT / "configs" / "xvfa_dino_r50_cpu.py"))
    parser.add_argument("--weights", nargs="+", help="checkpoints (default: random weights, 13 boxes a film)")
    parser.add_argument("--films", type=int, default=24)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes reading films (0: read in the process, so that reading is timed)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides")
    args = parser.parse_args(argv)
    args.cores = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if not weights:
            from detectron2.checkpoint import DetectionCheckpointer
            from detectron2.config import LazyConfig, instantiate

            model = instantiate(LazyConfig.load(args.config_file).model)
            DetectionCheckpointer(model, save_dir=str(tmp)).save("random")
            weights = [str(tmp / "random.pth")]
            args.opts = ["model.score_threshold=0.0", "model.max_vertebrae=13"] + args.opts
        bundle = P.bundle_from_training(args.config_file, weights)
        # A model trained on films like these: their vertebra size sets the input scale.
        bundle["vertebra_height"] = VERTEBRA_PX
        (tmp / "films").mkdir()
        write_films(tmp / "films", args.films)
        films = sorted((tmp / "films").glob("*.png"))
        device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
            f"cpu: {torch.backends.cpu.get_cpu_capability()}, {args.cores} threads"
        print(f"{args.films} films of {FILM_SIZE[1]}x{FILM_SIZE[0]} px, 13 vertebrae about {VERTEBRA_PX:g} px; "
              f"{Path(args.config_file).name}; batch {args.batch_size}, {args.workers} reading worker(s); {device}")
        header = ["processes", "threads each", "films", "films/min"] + [f"{p} s/film" for p in PHASES]
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for n in args.processes:
            out = tmp / f"run{n}"
            out.mkdir()
            launch(run, n, dist_url="auto", args=(args, bundle, films, out))
            r = json.loads((out / "result.json").read_text())
            cells = [r["processes"], r["threads"], r["films"], f"{r['films_per_min']:.1f}"]
            cells += [f"{r['per_film_s'][p]:.3f}" for p in PHASES]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
