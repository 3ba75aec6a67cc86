"""Re-grading keypoints: a report's vertebrae, or a CSV of points, through the crisp GSQ of the records.

``tools/gsq.py`` is the command line around it.
"""

import csv
import io
import json
import math
from typing import List

from .layout import COORDINATE_COLUMNS, KEYPOINT_NAMES
from .records import gsq_fields

CSV_LAYOUTS = """The layout is decided once per file, from its first non-empty line:
  - a header naming the twelve coordinates upper_posterior_x, upper_posterior_y, upper_middle_x,
    upper_middle_y, upper_anterior_x, upper_anterior_y, lower_posterior_x, lower_posterior_y,
    lower_middle_x, lower_middle_y, lower_anterior_x, lower_anterior_y (any order; an "id" column,
    or else the first other column, names each row; further columns are ignored);
  - a header of 12 other names (the coordinates in that order) or 13 (an id, then the 12);
  - or, without a header, 12 numbers per row in that order, or 13: an id, then the 12."""

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


def regrade_csv(text: str, pixel_spacing, errors: List[str]) -> str:
    """The CSV ``text`` of keypoints (one vertebra per row, in a layout of :data:`CSV_LAYOUTS`)
    re-graded as CSV; each row that cannot be graded is named by its line in ``errors``.
    :class:`LayoutError` where no layout fits."""
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


def regrade_report(report: dict, pixel_spacing, errors: List[str]) -> str:
    """A report of ``tools/predict.py`` (as a dict) with each vertebra's GSQ fields recomputed from its
    keypoints, as JSON text; each vertebra that cannot be graded is named in ``errors``."""
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
