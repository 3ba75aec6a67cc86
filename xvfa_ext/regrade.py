"""Re-grading keypoints: a report's vertebrae, or a CSV of points, through the crisp GSQ of the records.

:func:`regrade` is the one re-grade of a corrected report, shared by ``tools/gsq.py`` and the review
application (:mod:`xvfa_ext.review`): each vertebra's GSQ fields and reader's grade, the patient
summary, and (:func:`reviewed_rows`, :func:`replace_csv_rows`) its CSV rows.
"""

import csv
import io
import math
from pathlib import Path
from typing import List, Optional

from .files import write_atomic
from .gsq import GRADES, MORPHOLOGIES
from .layout import COORDINATE_COLUMNS, KEYPOINT_NAMES
from .records import gsq_fields
from .patient import SCREENING_GRADE, reviewed_patient_summary
from .reports import REVIEWED_CSV_FIELDS, reviewed_csv_row

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


# How the reviewed flag is decided: the model's rule (its probabilities or scores) does not follow a
# moved point, so a re-graded report flags by the reader's grade.
READER_RULE = {
    "rule": "reader grade",
    "description": "positive where the reader's grade is moderate or severe: the crisp GSQ grade of the "
                   "reader's points, or the reader's override",
}
# What the model said of a vertebra, kept under "model" when a report is first re-graded.
MODEL_FIELDS = ("grade", "morphology", "shape", "screening_positive")


def keypoints_of(vertebra: dict) -> List[List[float]]:
    """A report vertebra's six ``[x, y]`` points; a ValueError naming the missing or bad field."""
    try:
        return [[_number(str(vertebra["keypoints"][name][axis])) for axis in ("x", "y")] for name in KEYPOINT_NAMES]
    except KeyError as exc:
        raise ValueError(f"missing keypoint field {exc}") from None
    except TypeError as exc:
        raise ValueError(f"keypoints: {exc}") from None


def regrade_vertebra(vertebra: dict, pixel_spacing=None) -> dict:
    """One vertebra of a report re-graded in place from its (possibly moved) keypoints.

    The GSQ fields (:func:`~xvfa_ext.records.gsq_fields`) follow the points. ``grade`` becomes the
    reader's: ``override["grade"]`` where the reader set one, else the crisp GSQ grade of the points
    (``grade_source`` says which); ``morphology``, ``shape`` and ``screening_positive``
    (:data:`READER_RULE`) follow it. What the model said (:data:`MODEL_FIELDS` and its points) is kept
    under ``model`` the first time; a vertebra the reader added has ``model: None``.
    ``agrees_with_model`` compares the two grades. A ValueError where the keypoints cannot be read.
    """
    points = keypoints_of(vertebra)
    if "model" not in vertebra:
        vertebra["model"] = None if "grade" not in vertebra else {
            **{k: vertebra[k] for k in MODEL_FIELDS if k in vertebra},
            "keypoints": dict(zip(KEYPOINT_NAMES, points)),
        }
    graded = gsq_fields([points], pixel_spacing)[0]
    vertebra.pop("heights_mm", None)  # without a spacing an old mm height would not follow the points
    vertebra.update(graded)
    override = vertebra.get("override")
    if override:
        grade, source = override["grade"], "override"
    else:
        grade, source = graded["gsq_grade"], "points"
    normal = grade == GRADES[0]
    vertebra.update(
        grade=grade,
        grade_source=source,
        morphology=MORPHOLOGIES[0] if normal else graded["gsq_morphology"],
        shape="normal" if normal else graded["gsq_shape"],
        screening_positive=grade in GRADES and GRADES.index(grade) >= SCREENING_GRADE,
        agrees_with_model=None if vertebra["model"] is None else vertebra["model"].get("grade") == grade,
    )
    return vertebra


def regrade(report: dict, pixel_spacing=None, errors: Optional[List[str]] = None) -> dict:
    """A report of ``tools/predict.py`` re-graded in place from its (possibly corrected) keypoints:
    every vertebra by :func:`regrade_vertebra`, the patient summary from the reader's grades, and
    the screening rule :data:`READER_RULE`. The model's summary and rule are kept as
    ``model_patient`` and ``model_screening``. Heights in mm with ``pixel_spacing`` (row, column),
    else the report's. A vertebra that cannot be graded is named in ``errors`` (and raises a
    ValueError where ``errors`` is None); it stays in the report as ``grade: "invalid"``."""
    spacing = pixel_spacing or report.get("pixel_spacing_mm")
    for i, vertebra in enumerate(report.get("vertebrae", [])):
        try:
            regrade_vertebra(vertebra, spacing)
        except ValueError as exc:
            if errors is None:
                raise ValueError(f"vertebra {vertebra.get('index', i)}: {exc}") from None
            errors.append(f"vertebra {vertebra.get('index', i)}: {exc}")
            vertebra.update(grade="invalid", grade_source="unreadable keypoints", valid=False, screening_positive=False)
            continue
        if not vertebra["valid"] and errors is not None:
            errors.append(f"vertebra {vertebra.get('index', i)}: {vertebra['explanation']}")
    for key in ("patient", "screening"):
        if key in report and f"model_{key}" not in report:
            report[f"model_{key}"] = report[key]
    report["screening"] = READER_RULE
    report["patient"] = reviewed_patient_summary(report.get("vertebrae", []))
    return report


def reviewed_rows(report: dict) -> List[dict]:
    """A re-graded report's vertebrae as rows of :data:`REVIEWED_CSV_FIELDS`."""
    return [reviewed_csv_row(report["image"], v) for v in report.get("vertebrae", []) if v.get("valid", False)]


def replace_csv_rows(path: Path, image: str, rows: List[dict]) -> None:
    """Replace the rows of ``image`` in the CSV at ``path`` (a ``vertebrae.csv`` of
    ``tools/predict.py`` or a ``vertebrae.reviewed.csv``) by ``rows``, written atomically with the
    columns of :data:`REVIEWED_CSV_FIELDS`; the other films' rows are kept in their order, and the
    film's rows go where its first row was (at the end for a new film)."""
    path = Path(path)
    kept, at = [], None
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("image") == image:
                    at = len(kept) if at is None else at
                else:
                    kept.append(row)
    at = len(kept) if at is None else at
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REVIEWED_CSV_FIELDS, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(kept[:at] + rows + kept[at:])
    write_atomic(path, out.getvalue().encode())
