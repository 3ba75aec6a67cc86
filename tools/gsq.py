#!/usr/bin/env python3
"""Re-grade vertebrae from their keypoints: heights, ratios, GSQ grade, morphology and explanation.

    python tools/gsq.py --input report.json [--output regraded.json]
    python tools/gsq.py --input points.csv [--output regraded.csv] [--pixel-spacing 0.15 0.15]

JSON in the format of tools/predict.py's reports: each vertebra's GSQ fields are recomputed from its
(possibly corrected) keypoints, with heights in mm from the report's pixel_spacing_mm (or
--pixel-spacing, which wins).

CSV: one vertebra per row. The layout is decided once per file, from its first non-empty line:
  - a header naming the twelve coordinates upper_posterior_x, upper_posterior_y, upper_middle_x,
    upper_middle_y, upper_anterior_x, upper_anterior_y, lower_posterior_x, lower_posterior_y,
    lower_middle_x, lower_middle_y, lower_anterior_x, lower_anterior_y (any order; an "id" column,
    or else the first other column, names each row; further columns are ignored);
  - a header of 12 other names (the coordinates in that order) or 13 (an id, then the 12);
  - or, without a header, 12 numbers per row in that order, or 13: an id, then the 12.
Every row that does not match the layout, or holds a coordinate that is not a number, is named by
its line; the others are still graded and the exit status is 1. An empty file or one with a header
only is an error (exit status 2).
"""

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from xvfa_ext.layout import COORDINATE_COLUMNS, KEYPOINT_NAMES
from xvfa_ext.records import gsq_fields
from xvfa_ext.files import write_atomic

NUM_COORDS = 2 * len(KEYPOINT_NAMES)
CSV_OUT = ["id", "grade", "morphology", "height_anterior_px", "height_middle_px", "height_posterior_px", "APR", "MPR",
           "MAR", "reduction", "explanation"]


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


class LayoutError(ValueError):
    """A CSV whose layout cannot be decided."""


def _layout(first: list, line_no: int):
    """``(has_header, id column or None, coordinate columns)`` decided from the first non-empty row."""
    if all(_is_number(c) for c in first):
        if len(first) == NUM_COORDS:
            return False, None, list(range(NUM_COORDS))
        if len(first) == NUM_COORDS + 1:
            return False, 0, list(range(1, NUM_COORDS + 1))
        raise LayoutError(f"line {line_no}: {len(first)} numbers; a row without a header holds 12 coordinates, or an id and 12")
    names = [c.lower() for c in first]
    missing = [c for c in COORDINATE_COLUMNS if c not in names]
    if missing and len(names) in (NUM_COORDS, NUM_COORDS + 1) and not any(n in COORDINATE_COLUMNS for n in names):
        offset = len(names) - NUM_COORDS  # a header of other names: the positional layout, an id first if 13
        return True, 0 if offset else None, list(range(offset, offset + NUM_COORDS))
    if missing:
        raise LayoutError(f"line {line_no}: the header lacks {', '.join(missing)} (see --help for the layouts)")
    coords = [names.index(c) for c in COORDINATE_COLUMNS]
    others = [k for k in range(len(names)) if k not in coords]
    ident = names.index("id") if "id" in names else (others[0] if others else None)
    return True, ident, coords


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def regrade_csv(text: str, pixel_spacing, errors):
    rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1)]
    rows = [(n, cells) for n, cells in rows if any(cells)]
    if not rows:
        raise LayoutError("the file is empty")
    first_line, first = rows[0]
    header, ident, coords = _layout(first, first_line)
    width = len(first)
    if header:
        rows = rows[1:]
        if not rows:
            raise LayoutError(f"line {first_line}: a header and no vertebra rows")
    out_rows = []
    for line_no, cells in rows:
        if len(cells) != width:
            errors.append(f"line {line_no}: {len(cells)} cells, where the layout of line {first_line} has {width}")
            continue
        try:
            values = []
            for k in coords:
                if not cells[k]:
                    raise ValueError(f"no {COORDINATE_COLUMNS[coords.index(k)]} (column {k + 1})")
                values.append(_number(cells[k]))
        except ValueError as exc:
            errors.append(f"line {line_no}: {exc}")
            continue
        graded = gsq_fields([[values[i:i + 2] for i in range(0, NUM_COORDS, 2)]], pixel_spacing)[0]
        if not graded["valid"]:
            errors.append(f"line {line_no}: {graded['explanation']}")
        row = {
            "id": cells[ident] if ident is not None else str(line_no),
            "grade": graded["gsq_grade"],
            "morphology": graded["gsq_morphology"],
            **{f"height_{k}_px": round(v, 3) for k, v in graded["heights_px"].items()},
            **{k: round(v, 4) for k, v in graded["ratios"].items()},
            "reduction": round(graded["reduction"], 4),
            "explanation": graded["explanation"],
        }
        if pixel_spacing:
            row.update({f"height_{k}_mm": round(v, 3) for k, v in graded["heights_mm"].items()})
        out_rows.append(row)
    out = io.StringIO()
    fields = CSV_OUT[:6] + [f"height_{k}_mm" for k in ("anterior", "middle", "posterior")] * bool(pixel_spacing) + CSV_OUT[6:]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(out_rows)
    return out.getvalue()


def regrade_report(report: dict, pixel_spacing, errors):
    spacing = pixel_spacing or report.get("pixel_spacing_mm")
    for i, vertebra in enumerate(report.get("vertebrae", [])):
        where = f"vertebra {vertebra.get('index', i)}"
        try:
            points = [[_number(str(vertebra["keypoints"][name][axis])) for axis in ("x", "y")] for name in KEYPOINT_NAMES]
        except KeyError as exc:
            errors.append(f"{where}: missing keypoint field {exc}")
            continue
        except (TypeError, ValueError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        graded = gsq_fields([points], spacing)[0]
        if not graded["valid"]:
            errors.append(f"{where}: {graded['explanation']}")
        # Every GSQ field of the record follows the points; without a spacing an old mm height would not.
        vertebra.pop("heights_mm", None)
        vertebra.update(graded)
    return json.dumps(report, indent=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a JSON report or a CSV file of keypoints")
    parser.add_argument("--output", help="where to write the re-graded file (default: standard output)")
    parser.add_argument("--pixel-spacing", type=float, nargs=2, metavar=("ROW_MM", "COL_MM"),
                        help="mm per pixel, to give heights in mm")
    args = parser.parse_args(argv)
    path = Path(args.input)
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"{path}: cannot read ({exc.strerror})", file=sys.stderr)
        return 2
    errors = []
    if path.suffix.lower() == ".json":
        try:
            report = json.loads(text)
        except json.JSONDecodeError as exc:
            print(f"{path}: malformed JSON ({exc})", file=sys.stderr)
            return 2
        out = regrade_report(report, args.pixel_spacing, errors)
    else:
        try:
            out = regrade_csv(text, args.pixel_spacing, errors)
        except LayoutError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
    for error in errors:
        print(f"{path}: {error}", file=sys.stderr)
    if args.output:
        write_atomic(Path(args.output), out.encode())
    else:
        sys.stdout.write(out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
