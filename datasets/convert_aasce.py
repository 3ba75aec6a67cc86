#!/usr/bin/env python3
"""Convert the AASCE 2019 scoliosis set (SpineWeb dataset 16) into the project's COCO files.

    python datasets/convert_aasce.py --root DIR --split training --output datasets/aasce_training
    python datasets/convert_aasce.py --root DIR --split test --output datasets/aasce_test

DIR holds ``data/{training,test}/*.jpg`` and ``labels/{training,test}/{filenames,landmarks}.csv``.
``landmarks.csv`` has one row per film in the order of ``filenames.csv``: 68 x coordinates, then 68 y,
each a fraction of the film's width or height, four corners per vertebra (upper left, upper right,
lower left, lower right) for the seventeen vertebrae T1-L5 from the top.

The films are frontal (AP) views: the image-left corners are taken as the "posterior" ones and the
image-right as "anterior", so that each vertebra's two side heights are GSQ's posterior and anterior
heights. The rows go through ``convert_points.py``'s corner route: each middle point is the midpoint of
its endplate, and the files say ``"middles": "from_corners"`` and ``"view": "frontal"``. Grades come
from the crisp GSQ of the points (``"graded_by": "gsq"``). The patient is the number before the
letter in the file name (``...-162 A AP.jpg`` is patient 162); a name without one is its own patient.
A corner beyond its film is an error; ``--outside drop`` leaves that vertebra out and names it. The
levels T1-L5 are given top to bottom by position (a film that lists a vertebra out of order is named).

``training`` is split by patient into train (85%) and val (15%), with five folds stratified by each
patient's worst grade; ``test`` is written whole into ``test.json``. Nothing is written on any error.
"""

import argparse
import csv
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_points import ConversionError, check_destination, check_points, six_points, write_dataset  # noqa: E402

from xvfa_ext.radiograph_io import read_radiograph  # noqa: E402

LEVELS = ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
NUM_LANDMARKS = 4 * len(LEVELS)
# upper left, upper right, lower left, lower right: posterior is image-left on these frontal films.
CORNER_ORDER = ("upper_posterior", "upper_anterior", "lower_posterior", "lower_anterior")
PATIENT = re.compile(r"-(\d+)\s+[A-Za-z]\s")
SPLITS = {"training": {"val": 0.15, "test": 0.0}, "test": {"val": 0.0, "test": 1.0}}


def patient_of(file_name: str) -> str:
    """The number before the letter (``sunhl-1th-02-Jan-2017-162 A AP.jpg`` -> ``162``), else the stem."""
    match = PATIENT.search(file_name)
    return match.group(1) if match else Path(file_name).stem


def _read_lines(path: Path) -> List[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: cannot read ({exc})") from None


def read_rows(root: Path, split: str, outside: str = "error") -> Tuple[List[Dict], List[str]]:
    """One row per vertebra, as ``convert_points.read_rows`` gives them, in pixels of each film, and
    notes: what was left out (a vertebra with a corner beyond its film is an error, or with
    ``outside="drop"`` left out and named) and which films list their vertebrae out of order (the
    levels T1-L5 are given top to bottom by the corners' mean height)."""
    labels, image_dir = root / "labels" / split, root / "data" / split
    names = [line.strip() for line in _read_lines(labels / "filenames.csv")]
    landmarks_path = labels / "landmarks.csv"
    landmark_lines = _read_lines(landmarks_path)
    while names and not names[-1]:
        names.pop()
    while landmark_lines and not landmark_lines[-1].strip():
        landmark_lines.pop()
    if len(names) != len(landmark_lines):
        raise ConversionError(f"{labels}: filenames.csv names {len(names)} films, landmarks.csv has {len(landmark_lines)} rows")
    rows, errors, dropped, reordered = [], [], [], []
    for line, (name, text) in enumerate(zip(names, landmark_lines), start=1):
        where = f"{landmarks_path}, line {line} ({name})"
        try:
            values = np.asarray([float(v) for v in next(csv.reader([text]))])
        except ValueError as exc:
            errors.append(f"{where}: not a row of numbers ({exc})")
            continue
        if len(values) != 2 * NUM_LANDMARKS:
            errors.append(f"{where}: {len(values)} values, expected {2 * NUM_LANDMARKS} (68 x, then 68 y)")
            continue
        if not np.isfinite(values).all():
            errors.append(f"{where}: a coordinate is not a finite number")
            continue
        try:
            image, _, _ = read_radiograph(image_dir / name)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        height, width = image.shape[:2]
        corners = np.stack([values[:NUM_LANDMARKS] * width, values[NUM_LANDMARKS:] * height], -1).reshape(len(LEVELS), 4, 2)
        fractions = np.stack([values[:NUM_LANDMARKS], values[NUM_LANDMARKS:]], -1).reshape(len(LEVELS), 4, 2)
        # Levels follow position, top to bottom: a few films list a vertebra out of that order.
        order = np.argsort(corners[:, :, 1].mean(1), kind="stable")
        if (order != np.arange(len(LEVELS))).any():
            reordered.append(name)
        corners, fractions = corners[order], fractions[order]
        for level, xy, fraction in zip(LEVELS, corners, fractions):
            if (fraction < 0).any() or (fraction > 1).any():
                message = f"left out: {where}, {level}: a corner lies beyond the film ({fraction.min():.4f} to {fraction.max():.4f} of its size)"
                (dropped if outside == "drop" else errors).append(message)
                continue
            try:
                points = six_points(xy, "corners")
                check_points(points)
            except ValueError as exc:
                errors.append(f"{where}, {level}: {exc}")
                continue
            rows.append({"line": line, "image": name, "level": level, "points": points, "grade": None,
                         "morphology": None, "patient_id": patient_of(name), "image_size": (height, width)})
    if errors:
        more = [f"... and {len(errors) - 50} more"] if len(errors) > 50 else []
        raise ConversionError("\n".join(errors[:50] + more))
    if not rows:
        raise ConversionError(f"{labels}: no films listed")
    notes = dropped + [f"{landmarks_path}: {name} lists its vertebrae out of top-to-bottom order; levels follow position"
                       for name in reordered]
    return rows, notes


def convert(root: Path, split: str, out: Path, seed: int = 0, outside: str = "error") -> Tuple[Dict[str, Path], List[str]]:
    """Convert and write; the paths written and the notes of :func:`read_rows`."""
    image_dir = root / "data" / split
    check_destination(image_dir, out)
    rows, dropped = read_rows(root, split, outside)
    paths = write_dataset(rows, image_dir, out, root / "labels" / split / "landmarks.csv", seed, "frontal",
                          points="corners", fractions=SPLITS[split])
    return paths, dropped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the folder holding data/ and labels/")
    parser.add_argument("--split", choices=tuple(SPLITS), required=True)
    parser.add_argument("--output", type=Path, required=True, help="the dataset folder; annotations/ is written in it")
    parser.add_argument("--seed", type=int, default=0, help="the split and folds of the patients")
    parser.add_argument("--outside", choices=("error", "drop"), default="error",
                        help="a vertebra with a corner beyond its film: an error, or left out and named")
    args = parser.parse_args(argv)
    try:
        paths, dropped = convert(args.root, args.split, args.output, args.seed, args.outside)
    except ConversionError as exc:
        print(f"convert_aasce.py: {exc}", file=sys.stderr)
        return 1
    for message in dropped:
        print(f"convert_aasce.py: {message}", file=sys.stderr)
    print(f"wrote {', '.join(p.name for p in paths.values())} to {paths['trainval'].parent} "
          f"(images under {args.root / 'data' / args.split})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
