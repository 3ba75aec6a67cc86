#!/usr/bin/env python3
"""Review the model's points in the browser, correct them, and watch the grade follow.

    python tools/review.py --results DIR [--images DIR] [--host 127.0.0.1] [--port 8765] [--reader NAME]

DIR is a folder that tools/predict.py wrote. Open the address it prints: a worklist of the films,
each film with its vertebrae's points and intervals, and the grade of the reader's points beside the
model's. Every change is saved at once to DIR/<film>.reviewed.json (the model's report is never
modified) with an audit entry; DIR/vertebrae.reviewed.csv and DIR/<film>.reviewed.png follow it.
"Export COCO" writes DIR/reviewed_coco.json, the reviewed films as training data. The HTTP API is
described in docs/review.md.
"""

import argparse
import importlib
import logging
import sys
import threading
from pathlib import Path

from xvfa_ext.review import ReviewStore
from xvfa_ext.review.app import create_app


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="the output folder of tools/predict.py")
    parser.add_argument("--images", help="the folder of the films (default: the paths the reports give)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reader", default="reader", help="the name recorded for each change (the page can change it)")
    args = parser.parse_args(argv)
    try:
        store = ReviewStore(Path(args.results), Path(args.images) if args.images else None, args.reader)
    except ValueError as exc:
        print(f"review.py: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"review.py: {len(store.films())} films in {store.results}; open http://{args.host}:{args.port}/", flush=True)
    # The GSQ library (and torch) loads while the reader opens the page, not before the server listens.
    threading.Thread(target=importlib.import_module, args=("xvfa_ext.regrade",), daemon=True).start()
    try:
        create_app(store).run(host=args.host, port=args.port, threaded=True)
    except OSError as exc:
        print(f"review.py: cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
