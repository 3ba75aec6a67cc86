#!/usr/bin/env python3
"""How fast the review application starts and lists a large folder of reports.

    python tools/benchmark_review.py [--report R.json] [--films 1000] [--port 8799]

Copies one report (``--report``, a report of tools/predict.py; by default one written from a
synthetic film's true points with 13 vertebrae) ``--films`` times into a temporary folder, starts
``tools/review.py`` on it as a user would, and prints the seconds until the page is served (the
start), until the first worklist arrives (every report read once), for a second worklist (from the
cache), and for one film's report.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str, timeout: float = 120.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _synthetic_report(folder: Path) -> Path:
    """A report of a synthetic film's true points, through the predictor's report code."""
    sys.path.insert(0, str(ROOT / "tests"))
    from review_data import write_review_folder

    return write_review_folder(folder)["results"] / "film_a.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", help="a report of tools/predict.py to copy (default: a synthetic film's)")
    parser.add_argument("--films", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = Path(args.report) if args.report else _synthetic_report(tmp / "source")
        results = tmp / "results"
        results.mkdir()
        for k in range(args.films):
            shutil.copy(source, results / f"film{k:05d}.json")
        size = source.stat().st_size
        print(f"{args.films} reports of {size / 1024:.0f} KiB ({json.loads(source.read_text())['image']})")
        url = f"http://127.0.0.1:{args.port}"
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, str(ROOT / "tools" / "review.py"), "--results", str(results),
                                   "--port", str(args.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while True:
                try:
                    _get(url + "/", timeout=1)
                    break
                except OSError:
                    if server.poll() is not None:
                        print(server.stderr.read().decode(), file=sys.stderr)
                        return 1
                    time.sleep(0.05)
            started = time.perf_counter() - start
            t = time.perf_counter()
            films = json.loads(_get(url + "/api/films"))
            first = time.perf_counter() - t
            t = time.perf_counter()
            _get(url + "/api/films")
            second = time.perf_counter() - t
            t = time.perf_counter()
            _get(url + f"/api/films/{films[len(films) // 2]['film']}")
            one = time.perf_counter() - t
        finally:
            server.terminate()
            server.wait()
    print(f"page served after      {started:6.2f} s (start, including Python's imports)")
    print(f"first worklist         {first:6.2f} s ({len(films)} films)")
    print(f"second worklist        {second:6.2f} s (cached)")
    print(f"one film's report      {one:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
