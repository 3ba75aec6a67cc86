#!/usr/bin/env python3
"""Turn a spreadsheet of six points (or four corners) per vertebra into the project's COCO files, split by patient.

    python datasets/convert_points.py --input points.csv --images DIR --output OUT [--points six|corners]

The CSV has a header and one row per vertebra:

    image, level, upper_posterior_x, upper_posterior_y, upper_middle_x, upper_middle_y,
    upper_anterior_x, upper_anterior_y, lower_posterior_x, lower_posterior_y, lower_middle_x,
    lower_middle_y, lower_anterior_x, lower_anterior_y[, grade][, morphology][, patient_id]

With ``--points corners`` the four ``*_middle_*`` columns are absent: each middle point is the
midpoint of its endplate's two corners, and each vertebra's record says ``"middles": "from_corners"``
(an endplate's concavity is then not in the points: see docs/gsq.md).

``image`` is a file under DIR (PNG, JPEG, TIFF or DICOM, 8 or 16 bit); ``level`` any name (T1-L5,
C-levels, ...); coordinates in pixels of that image. ``grade`` is 0-3 or normal/mild/moderate/severe
and ``morphology`` 0-2 or normal/wedge/concave; where the grade is empty, both come from the crisp GSQ
of the points and the record says ``"graded_by": "gsq"`` (else ``"reader"``). ``patient_id``
defaults to the image's name. Other column names are mapped with ``--column ours=theirs``.

Writes ``OUT/annotations/{train,val,test,trainval}.json`` and ``folds.json``, as
``prepare_synthetic.py`` does; their ``info`` records the median posterior height of the vertebrae
in pixels (``vertebra_height_px``). Every bad row is named by its line; on any error nothing is written.
"""

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from xvfa_ext.coco_splits import split_files, vertebra_annotation, write_split_files
from xvfa_ext.gsq import GRADES, morphometry
from xvfa_ext.layout import COORDINATE_COLUMNS, KEYPOINT_NAMES, order_levels
from xvfa_ext.radiograph_io import read_radiograph

OPTIONAL = ["grade", "morphology", "patient_id"]
# The points a row gives: all six, or the four corners (the middles then made from them).
POINT_SETS = {
    "six": COORDINATE_COLUMNS,
    "corners": tuple(c for c in COORDINATE_COLUMNS if "_middle_" not in c),
}
MORPHOLOGY_WORDS = {"normal": 0, "wedge": 1, "wedge-like": 1, "concave": 2, "biconcave": 2}
MAX_MESSAGES = 50


class ConversionError(ValueError):
    """Bad rows or files, each named."""


def _label(value: str, names: Dict[str, int], count: int, column: str):
    value = value.strip().lower()
    if value in names:
        return names[value]
    if value.isdigit() and int(value) < count:
        return int(value)
    raise ValueError(f"{column} {value!r} is not one of 0-{count - 1} or {', '.join(names)}")


def required_columns(points: str = "six") -> List[str]:
    if points not in POINT_SETS:
        raise ConversionError(f"points must be one of {', '.join(POINT_SETS)}, got {points!r}")
    return ["image", "level", *POINT_SETS[points]]


def six_points(xy, points: str = "six") -> np.ndarray:
    """(6, 2) keypoints from a row's coordinates, in the order of :data:`POINT_SETS` [points]; four
    corners get each middle point as the midpoint of its endplate's corners."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if points == "six":
        return xy.reshape(len(KEYPOINT_NAMES), 2)
    up, ua, lp, la = xy
    return np.stack([up, (up + ua) / 2, ua, lp, (lp + la) / 2, la])


def read_rows(path: Path, columns: Dict[str, str], points: str = "six") -> List[Dict]:
    """The CSV's rows as dicts of our column names, with ``line``; every bad row named."""
    required = required_columns(points)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: cannot read the CSV ({exc})") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ConversionError(f"{path}: the file is empty")
    reader = csv.DictReader(lines[first:])
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    theirs = {ours: columns.get(ours, ours) for ours in required + OPTIONAL}
    missing = [f"{ours}" + (f" (as {theirs[ours]!r})" if theirs[ours] != ours else "") for ours in required
               if theirs[ours] not in header]
    if missing:
        raise ConversionError(f"{path}, line {first + 1}: the header lacks {', '.join(missing)}; it has {header}")
    rows, errors = [], []
    for k, raw in enumerate(reader):
        line = first + 2 + k
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue
        row = {"line": line}
        try:
            if None in raw:
                raise ValueError(f"{len(header) + len(raw[None])} fields, the header has {len(header)}")
            for ours in required + OPTIONAL:
                value = (raw.get(theirs[ours]) or "").strip()
                if ours in required and not value:
                    raise ValueError(f"no {theirs[ours]}")
                row[ours] = value
            xy = []
            for ours in POINT_SETS[points]:
                try:
                    xy.append(float(row[ours]))
                except ValueError:
                    raise ValueError(f"{theirs[ours]} {row[ours]!r} is not a number") from None
            if not np.isfinite(xy).all():
                raise ValueError("a coordinate is not finite")
            row["points"] = six_points(xy, points)
            check_points(row["points"])
            row["grade"] = _label(row["grade"], {g: i for i, g in enumerate(GRADES)}, 4, "grade") if row["grade"] else None
            row["morphology"] = (
                _label(row["morphology"], MORPHOLOGY_WORDS, 3, "morphology") if row["morphology"] else None
            )
        except ValueError as exc:
            errors.append(f"{path}, line {line}: {exc}")
            continue
        rows.append(row)
    seen = {}
    for row in rows:
        key = (row["image"], row["level"])
        if key in seen:
            errors.append(f"{path}, line {row['line']}: {row['image']} level {row['level']} again (first on line {seen[key]})")
        seen.setdefault(key, row["line"])
    if not rows and not errors:
        raise ConversionError(f"{path}: no vertebra rows after the header")
    if errors:
        raise ConversionError("\n".join(errors[:MAX_MESSAGES] + [f"... and {len(errors) - MAX_MESSAGES} more"] * (len(errors) > MAX_MESSAGES)))
    return rows


def check_points(points: np.ndarray) -> None:
    """A ValueError unless the (6, 2) points make a vertebra with positive heights."""
    if not bool(morphometry(points)["valid"]):
        raise ValueError("a vertebra of zero height (an upper point on its lower point)")


def build_coco(rows: List[Dict], image_dir: Path, csv_path: Path, middles: str = "read"):
    """COCO images and annotations; images read once each, points checked against their size. A
    row whose caller read its image already gives its ``image_size`` (height, width), and that
    image is not read again."""
    images, annotations, errors = {}, [], []
    for row in rows:
        name = row["image"]
        if name not in images:
            size, patient = row.get("image_size"), None
            if size is None:
                try:
                    gray, _, patient = read_radiograph(image_dir / name)
                except ValueError as exc:
                    errors.append(f"{csv_path}, line {row['line']}: {exc}")
                    images[name] = None
                    continue
                size = gray.shape[:2]
            images[name] = {
                "id": len(images) + 1,
                "file_name": name,
                "height": int(size[0]),
                "width": int(size[1]),
                "patient_id": row["patient_id"] or patient or Path(name).stem,
            }
        image = images[name]
        if image is None:
            continue
        if row["patient_id"] and row["patient_id"] != image["patient_id"]:
            errors.append(f"{csv_path}, line {row['line']}: patient {row['patient_id']} for {name}, "
                          f"which earlier rows give to patient {image['patient_id']}")
            continue
        pts = row["points"]
        h, w = image["height"], image["width"]
        if (pts < 0).any() or (pts[:, 0] > w).any() or (pts[:, 1] > h).any():
            errors.append(f"{csv_path}, line {row['line']}: a point lies outside {name} ({w}x{h} pixels)")
            continue
        annotations.append(vertebra_annotation(len(annotations) + 1, image, pts, row["grade"], row["morphology"],
                                               row["level"], middles))
    if errors:
        raise ConversionError("\n".join(errors[:MAX_MESSAGES]))
    return [img for img in images.values() if img is not None], annotations


def check_destination(image_dir: Path, out: Path) -> Path:
    """``out/annotations``, after checking that the image folder exists and that nothing would be overwritten."""
    if not image_dir.is_dir():
        raise ConversionError(f"{image_dir}: no such image folder")
    ann_dir = out / "annotations"
    if ann_dir.exists():
        raise ConversionError(f"{ann_dir}: exists already; remove it or choose another --output")
    return ann_dir


def convert(csv_path: Path, image_dir: Path, out: Path, columns: Dict[str, str], seed: int, view: str,
            points: str = "six") -> Dict[str, Path]:
    """Convert and write; raises ConversionError before writing anything when a row or file is bad."""
    check_destination(image_dir, out)
    rows = read_rows(csv_path, columns, points)
    return write_dataset(rows, image_dir, out, csv_path, seed, view, points)


def write_dataset(rows: List[Dict], image_dir: Path, out: Path, source: Path, seed: int, view: str,
                  points: str = "six", fractions: Optional[Dict[str, float]] = None) -> Dict[str, Path]:
    """Rows as :func:`read_rows` gives them (``source`` names where they came from in errors) into
    ``out/annotations``, split by patient (``fractions``: the val and test shares); nothing is
    written on any error."""
    ann_dir = check_destination(image_dir, out)
    middles = "from_corners" if points == "corners" else "read"
    images, annotations = build_coco(rows, image_dir, source, middles)
    mean_y = {}
    for a in annotations:
        mean_y.setdefault(a["level"], []).append(float(np.mean(a["keypoints"][1::3])))
    levels = order_levels(mean_y, {k: float(np.mean(v)) for k, v in mean_y.items()})
    info = {"description": f"converted from {source.name}", "levels": levels, "view": view,
            "middles": middles, "num_images": len(images), "num_vertebrae": len(annotations)}
    files = split_files(images, annotations, info, seed, fractions)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".annotations.", dir=out))
    except OSError as exc:
        raise ConversionError(f"{out}: cannot write there ({exc.strerror})") from None
    try:
        write_split_files(staging, files)
        os.replace(staging, ann_dir)
    except OSError as exc:
        raise ConversionError(f"{ann_dir}: cannot write ({exc.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name[: -len(".json")]: ann_dir / name for name in files}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="the CSV of points")
    parser.add_argument("--images", type=Path, required=True, help="the folder the CSV's image names are under")
    parser.add_argument("--output", type=Path, required=True, help="the dataset folder; annotations/ is written in it")
    parser.add_argument("--column", action="append", default=[], metavar="OURS=THEIRS",
                        help="read column OURS (e.g. image, level, upper_posterior_x, grade) from the CSV's THEIRS")
    parser.add_argument("--seed", type=int, default=0, help="the split and folds of the patients")
    parser.add_argument("--view", choices=("lateral", "frontal"), default="lateral",
                        help="recorded in the files; train with the same dataset.view")
    parser.add_argument("--points", choices=tuple(POINT_SETS), default="six",
                        help="six: all six points per row; corners: the four corners, middles made from them")
    args = parser.parse_args(argv)
    columns = {}
    for item in args.column:
        ours, sep, theirs = item.partition("=")
        known = required_columns(args.points) + OPTIONAL
        if not sep or ours not in known or not theirs:
            parser.error(f"--column {item!r}: expected OURS=THEIRS with OURS one of {', '.join(known)}")
        columns[ours] = theirs
    try:
        paths = convert(args.input, args.images, args.output, columns, args.seed, args.view, args.points)
    except ConversionError as exc:
        print(f"convert_points.py: {exc}", file=sys.stderr)
        return 1
    data = paths["trainval"].parent
    print(f"wrote {', '.join(p.name for p in paths.values())} to {data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
