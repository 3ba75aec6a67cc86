#!/usr/bin/env python3
"""Join a detector checkpoint and a fine-stage checkpoint into one XVFA model (the paper's two stages).

    python tools/combine_weights.py --detector output/xvfa_dino_r50_detector/model_final.pth \\
        --fine output/xvfa_dino_r50_fine/model_final.pth --output output/xvfa_dino_r50_two_stage.pth

The result holds the detector's ``detector.*`` weights and the fine stage's ``roi_head.*`` weights,
and loads like any checkpoint of ``configs/xvfa_dino_r50_cpu.py``, the config whose detector
``xvfa_dino_r50_detector.py`` trains (``tools/predict.py --weights``, ``tools/train_net.py --eval-only
train.init_checkpoint=...``). A detector trained with other model settings joins a fine stage the
same way and loads into the config with those settings.
"""

import argparse
import io
import sys
from pathlib import Path

import torch

from xvfa_ext.checkpoints import model_part
from xvfa_ext.files import write_atomic

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", required=True, type=Path, help="checkpoint of xvfa_dino_r50_detector.py")
    parser.add_argument("--fine", required=True, type=Path, help="checkpoint of xvfa_dino_r50_fine.py")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        model = {**model_part(args.detector, "detector"), **model_part(args.fine, "fine")}
    except ValueError as exc:
        print(f"combine_weights.py: {exc}", file=sys.stderr)
        return 2
    buffer = io.BytesIO()
    torch.save({"model": model}, buffer)
    write_atomic(args.output, buffer.getvalue())
    print(f"wrote {args.output}: {len(model)} tensors, detector from {args.detector}, fine stage from {args.fine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
