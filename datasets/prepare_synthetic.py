#!/usr/bin/env python3
"""Write the synthetic lateral-spine dataset: PNG radiographs and COCO keypoint files with GSQ labels.

Example: python datasets/prepare_synthetic.py --out datasets/synthetic --num-images 200 --seed 0
"""

import argparse
import sys

from xvfa_ext.synthetic import PREVALENCE_PRESETS, SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None) -> int:
    parser = _OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write images/ and annotations/ into")
    parser.add_argument("--num-images", type=int, default=200, help="radiographs to render, one per patient")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same dataset")
    parser.add_argument("--prevalence", choices=sorted(PREVALENCE_PRESETS), default="paper",
                        help="'paper': the cohort's fracture rates; 'enriched': about 30%% fractured")
    parser.add_argument("--height", type=int, default=512, help="image height in pixels")
    parser.add_argument("--width", type=int, default=384, help="image width in pixels")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num-images must be positive, got {args.num_images}")
    try:
        config = SyntheticConfig(height=args.height, width=args.width, prevalence=args.prevalence)
        paths = write_synthetic_dataset(args.out, args.num_images, args.seed, config, progress=not args.quiet)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    print(f"wrote {args.num_images} images to {args.out}: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
