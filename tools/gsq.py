#!/usr/bin/env python3
"""Re-grade vertebrae from their keypoints: heights, ratios, GSQ grade, morphology and explanation.

    python tools/gsq.py --input report.json [--output regraded.json]
    python tools/gsq.py --input points.csv [--output regraded.csv] [--pixel-spacing 0.15 0.15]

JSON in the format of tools/predict.py's reports: each vertebra's GSQ fields are recomputed from its
(possibly corrected) keypoints. CSV: twelve coordinates per row (x, y of upper_posterior,
upper_middle, upper_anterior, lower_posterior, lower_middle, lower_anterior), optionally after an
id column and under a header. Bad rows are reported by line number; the others are still graded,
and the exit status is 1.
"""

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from xvfa_ext.layout import KEYPOINT_NAMES
from xvfa_ext.reports import classify_keypoints
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def regrade_csv(text: str, pixel_spacing, errors):
    rows = []
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [c.strip() for c in row]
        ident = str(line_no)
        if len(cells) == NUM_COORDS + 1 or not _is_number(cells[0]):
            ident, cells = cells[0], cells[1:]
        if line_no == 1 and not any(_is_number(c) for c in cells):
            continue  # a header
        try:
            values = [_number(c) for c in cells]
        except ValueError as exc:
            errors.append(f"line {line_no}: {exc}")
            continue
        if len(values) != NUM_COORDS:
            errors.append(f"line {line_no}: expected {NUM_COORDS} coordinates, got {len(values)}")
            continue
        graded = classify_keypoints([values[i:i + 2] for i in range(0, NUM_COORDS, 2)], pixel_spacing)[0]
        if not graded["valid"]:
            errors.append(f"line {line_no}: {graded['explanation']}")
        rows.append(
            {
                "id": ident,
                "grade": graded["grade"],
                "morphology": graded["morphology"],
                **{f"height_{k}_px": round(v, 3) for k, v in graded["heights_px"].items()},
                **{k: round(v, 4) for k, v in graded["ratios"].items()},
                "reduction": round(graded["reduction"], 4),
                "explanation": graded["explanation"],
            }
        )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_OUT)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def regrade_report(report: dict, pixel_spacing, errors):
    spacing = pixel_spacing or report.get("pixel_spacing")
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
        graded = classify_keypoints(points, spacing)[0]
        if not graded["valid"]:
            errors.append(f"{where}: {graded['explanation']}")
        vertebra.update(
            heights_px=graded["heights_px"],
            ratios=graded["ratios"],
            reduction=graded["reduction"],
            gsq_grade=graded["grade"],
            gsq_morphology=graded["morphology"],
            explanation=graded["explanation"],
        )
        if "heights_mm" in graded:
            vertebra["heights_mm"] = graded["heights_mm"]
    return json.dumps(report, indent=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        out = regrade_csv(text, args.pixel_spacing, errors)
    for error in errors:
        print(f"{path}: {error}", file=sys.stderr)
    if args.output:
        write_atomic(Path(args.output), out.encode())
    else:
        sys.stdout.write(out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
