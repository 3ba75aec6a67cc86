#!/usr/bin/env python3
"""Re-grade vertebrae from their keypoints: heights, ratios, GSQ grade, morphology and explanation.

    python tools/gsq.py --input report.json [--output regraded.json]
    python tools/gsq.py --input points.csv [--output regraded.csv] [--pixel-spacing 0.15 0.15]

JSON in the format of tools/predict.py's reports: each vertebra's GSQ fields are recomputed from its
(possibly corrected) keypoints, with heights in mm from the report's pixel_spacing_mm (or
--pixel-spacing, which wins). Its grade, morphology, shape and screening flag become the reader's
(the crisp GSQ of the points, or a grade override the vertebra carries), the model's are kept under
"model", and the patient summary follows; --csv replaces the film's rows in a vertebrae.csv. It is
the re-grade of the review application (tools/review.py).

CSV: one vertebra per row, in one of the layouts that --help lists.
Every row that does not match the layout, or holds a coordinate that is not a number, is named by
its line; the others are still graded and the exit status is 1. An empty file or one with a header
only is an error (exit status 2).
"""

import argparse
import json
import sys
from pathlib import Path

from xvfa_ext.files import write_atomic
from xvfa_ext.regrade import CSV_LAYOUTS, LayoutError, regrade, regrade_csv, replace_csv_rows, reviewed_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2] + "\n" + CSV_LAYOUTS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a JSON report or a CSV file of keypoints")
    parser.add_argument("--output", help="where to write the re-graded file (default: standard output)")
    parser.add_argument("--pixel-spacing", type=float, nargs=2, metavar=("ROW_MM", "COL_MM"),
                        help="mm per pixel, to give heights in mm")
    parser.add_argument("--csv", help="JSON input: replace the film's rows in this CSV (for example the "
                        "vertebrae.csv that tools/predict.py wrote beside the report)")
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
        if not isinstance(report, dict) or not isinstance(report.get("vertebrae"), list):
            print(f"{path}: not a report of tools/predict.py (no list of vertebrae)", file=sys.stderr)
            return 2
        regrade(report, args.pixel_spacing, errors)
        out = json.dumps(report, indent=1)
    else:
        if args.csv:
            print(f"{path}: --csv goes with a JSON report", file=sys.stderr)
            return 2
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
    if args.csv:
        replace_csv_rows(Path(args.csv), report.get("image", path.stem), reviewed_rows(report))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
