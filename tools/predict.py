#!/usr/bin/env python3
"""Predict vertebrae, keypoints with intervals and GSQ fractures on radiographs, with reports.

    python tools/predict.py --model model.xvfa --input scans/ 'more/*.dcm' one.png --output results/
    python tools/predict.py --config-file configs/xvfa_dino_r50.py --weights model_final.pth \\
        --input scans/ --output results/ [KEY=VALUE ...]

A model is one file written by ``tools/export_model.py``, or a training config with its weights (its
datasets are then registered to read the levels). Inputs are files, folders (searched recursively;
DICOM found by content, whatever the file's name) and globs of PNG, JPEG, TIFF and DICOM, and
DICOMDIRs. Per film: an annotated PNG and a JSON report; over all films: ``vertebrae.csv`` (one row
per vertebra, growing film by film), ``studies.json`` (one summary per study) and ``summary.json``.
A film that fails, for any reason, is named with the reason and skipped; the exit status is then 1.

``--num-gpus N`` (and ``--num-machines``) shard the films over processes through detectron2's
``launch``: on a CPU, N processes over gloo. ``--resume`` skips films already reported by the same
model. ``--threshold youden`` flags films at the model's Youden point (from the evaluation the model
was exported with), ``--threshold P`` at a score P. ``--dicom-out`` adds a DICOM Comprehensive SR
(TID 1500) and a Secondary Capture of the drawing per DICOM film.

Several ``--weights`` predict as an ensemble (see ``xvfa_ext.ensemble``). ``--boxes FILE`` gives the
vertebra boxes instead of the detector: a COCO file or a CSV with the header
``image,x,y,width,height``, matched by file name.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch
from xvfa_ext.checkpoints import split_weights
from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.engine import launch  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from xvfa_ext.bundle import bundle_summary  # noqa: E402
from xvfa_ext.predictor import CohortOptions, VFAPredictor, predict_cohort, read_boxes  # noqa: E402
from xvfa_ext.radiograph_io import find_radiographs  # noqa: E402

logger = logging.getLogger("xvfa_ext.predict")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="a model file written by tools/export_model.py")
    model.add_argument("--config-file", help="a training config (with --weights)")
    parser.add_argument("--weights", nargs="+",
                        help="with --config-file: a checkpoint of tools/train_net.py, or several (an ensemble)")
    parser.add_argument("--input", nargs="+", required=True, help="files, folders, globs or DICOMDIRs")
    parser.add_argument("--output", required=True, type=Path, help="folder for the reports")
    parser.add_argument("--threshold", default="grade",
                        help="screening flag: 'grade' (most likely grade moderate or worse, the default), "
                             "'youden' (the model's operating point) or a score P in [0, 1]")
    parser.add_argument("--batch-size", type=int, default=1, help="films per forward pass")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes that read the films")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (GPUs, or CPU processes)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto")
    parser.add_argument("--threads", type=int,
                        help="on a CPU, threads per process (default: cores / processes); reports are identical "
                             "for any number of processes at the same --threads and --batch-size")
    parser.add_argument("--resume", action="store_true", help="skip films already reported by the same model")
    parser.add_argument("--dicom-out", action="store_true", help="also a DICOM SR and Secondary Capture per DICOM film")
    parser.add_argument("--scale", type=float,
                        help="size of the annotated PNGs relative to the film (default: long side 1200 px, at most 2)")
    parser.add_argument("--boxes", type=Path, help="vertebra boxes to use instead of the detector (COCO JSON or CSV)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides")
    args = parser.parse_args(argv)
    if args.config_file:
        if not args.weights:
            parser.error("--config-file needs --weights")
        args.weights, args.opts = split_weights(args.weights, args.opts)
    elif args.weights:
        parser.error("--weights goes with --config-file; a model file carries its weights")
    if args.batch_size < 1 or args.workers < 0 or args.num_gpus < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--batch-size, --num-gpus and --threads must be at least 1, --workers at least 0")
    return parser, args


def run(args, files, missing) -> None:
    """One process's share of ``files`` (all of them with one process)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // comm.get_local_size()))
    boxes = read_boxes(args.boxes) if args.boxes is not None else None
    kwargs = dict(given_boxes=boxes is not None, threshold=args.threshold)
    if comm.get_world_size() > 1 and torch.cuda.is_available():
        kwargs["device"] = f"cuda:{comm.get_local_rank()}"
    if args.model:
        predictor = VFAPredictor.from_file(args.model, overrides=args.opts, **kwargs)
    else:
        predictor = VFAPredictor.from_config(args.config_file, args.weights, args.opts, **kwargs)
    if comm.is_main_process():
        for line in bundle_summary(predictor.bundle):
            logger.info(line)
    options = CohortOptions(
        output=args.output, batch_size=args.batch_size, num_workers=args.workers, scale=args.scale,
        resume=args.resume, dicom_out=args.dicom_out, boxes=boxes, boxes_file=str(args.boxes),
        failures=[f"{m}: no such file, folder or match" for m in missing],
    )
    predict_cohort(predictor, files, options)


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    files, missing = find_radiographs(args.input)  # once, for every process
    if not files:
        parser.exit(2, f"predict.py: no radiograph (PNG, JPEG, TIFF or DICOM) in {', '.join(args.input)}\n")
    summary_file = args.output / "summary.json"
    summary_file.unlink(missing_ok=True)
    try:
        launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args, files, missing))
    except ValueError as exc:  # a model or box file that cannot be used: one line
        parser.exit(2, f"predict.py: {exc}\n")
    if args.machine_rank != 0:
        return 0
    if not summary_file.is_file():
        parser.exit(2, "predict.py: the run ended without its summary (a process failed; see above)\n")
    summary = json.loads(summary_file.read_text())
    for message in summary["failed"]:
        logger.error(f"failed: {message}")
    logger.info(f"{summary['predicted']} of {summary['films']} films predicted into {args.output}"
                + (f", {summary['skipped']} already reported (--resume)" if summary["skipped"] else "")
                + f"; {len(summary['failed'])} failed")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())
