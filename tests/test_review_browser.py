"""The review page in a real browser (Debian's chromium, headless, driven by Playwright): open the
worklist and a film, drag a point of a normal vertebra until its anterior height falls by 30%, see
the grade become moderate and the explanation change, reload and see it kept with its audit entry,
a stale version answered 409 (from a script, and from the page after another tab's change), a
vertebra added by six clicks, and the keys. The README's screenshot is taken here: set
XVFA_REVIEW_SCREENSHOT to the path it should be written to."""

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_detectron2

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = [
    requires_detectron2,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"),
]


@pytest.fixture
def server(review_folder, tmp_path):
    """The application on a free port of 127.0.0.1, over a fresh copy of the reports."""
    from werkzeug.serving import make_server

    from xvfa_ext.review import ReviewStore
    from xvfa_ext.review.app import create_app

    results = tmp_path / "results"
    shutil.copytree(review_folder["results"], results)
    store = ReviewStore(results, review_folder["films"], reader="Dr. Browser")
    httpd = make_server("127.0.0.1", 0, create_app(store), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_port}", "results": results}
    httpd.shutdown()


def test_drag_a_point_and_the_grade_follows(server, tmp_path):
    url, results = server["url"], server["results"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("#films tr.film")
        assert page.locator("#films tr.film").count() == 4
        # Flagged films only: the filter hides the films without a flag.
        flagged = sum(f["screening_positive"] for f in page.evaluate("window.review.state.films"))
        page.check("#flagged-only")
        assert page.locator("#films tr.film").count() == flagged
        page.uncheck("#flagged-only")

        page.click("#films tr[data-film='film_c']")
        page.wait_for_function("document.body.dataset.ready === 'true' && window.review.state.report !== null")
        report = page.evaluate("window.review.state.report")
        i = next(k for k, v in enumerate(report["vertebrae"]) if v["grade"] == "normal" and v["model"]["grade"] == "normal")
        page.click(f"#vertebrae tr[data-index='{i}']")
        assert page.inner_text("#v-grade") == "normal"
        explanation = page.inner_text("#v-explanation")

        v = report["vertebrae"][i]
        ua = np.array([v["keypoints"]["upper_anterior"]["x"], v["keypoints"]["upper_anterior"]["y"]])
        la = np.array([v["keypoints"]["lower_anterior"]["x"], v["keypoints"]["lower_anterior"]["y"]])
        target = ua + 0.3 * (la - ua)  # the anterior height falls by 30%
        start = page.evaluate(f"window.review.toScreen({ua[0]}, {ua[1]})")
        end = page.evaluate(f"window.review.toScreen({target[0]}, {target[1]})")
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=8)
        page.mouse.up()
        page.wait_for_function("document.getElementById('v-grade').textContent === 'moderate'")
        assert page.inner_text("#v-explanation") != explanation
        assert page.inner_text("#v-explanation").startswith("moderate")
        assert "disagrees with the model" in page.inner_text("#vertebra")
        assert "moderate" in page.inner_text("#disagreement") or "disagree" in page.inner_text("#disagreement")
        assert page.inner_text("#patient-flag") == "positive"
        shot = os.environ.get("XVFA_REVIEW_SCREENSHOT") or str(tmp_path / "review.png")
        page.screenshot(path=shot)

        saved = json.loads((results / "film_c.reviewed.json").read_text())
        height = saved["vertebrae"][i]["heights_px"]["anterior"]
        assert height == pytest.approx(0.7 * v["heights_px"]["anterior"], rel=0.05)  # within the mouse's pixel

        # Reloaded, the change is kept, with its audit entry.
        page.reload()
        page.wait_for_selector("#films tr.film")
        assert "\u2713" in page.inner_text("#films tr[data-film='film_c']")
        page.click("#films tr[data-film='film_c']")
        page.wait_for_function("document.body.dataset.ready === 'true' && window.review.state.report !== null")
        page.click(f"#vertebrae tr[data-index='{i}']")
        assert page.inner_text("#v-grade") == "moderate"
        audit = page.inner_text("#audit")
        assert "Dr. Browser: move points" in audit and "normal \u2192 moderate" in audit

        # A second tab's stale version is refused with 409, and the first tab's change stays.
        status = page.evaluate(
            """async ([i, points]) => (await fetch(`/api/films/film_c/vertebrae/${i}`, {method: "PUT",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({keypoints: points, version: 0, reader: "tab 2"})})).status""",
            [i, [[v["keypoints"][n]["x"], v["keypoints"][n]["y"]] for n in v["keypoints"]]],
        )
        assert status == 409
        assert json.loads((results / "film_c.reviewed.json").read_text())["version"] == 1

        # Another tab overrides the grade (version 2); this tab, still on version 1, drags a point: the
        # server refuses it (409), the page says so and reloads, and the point goes back.
        status = page.evaluate(
            """async (i) => (await fetch(`/api/films/film_c/vertebrae/${i}/grade`, {method: "PUT",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({grade: "severe", reason: "seen on CT", version: 1, reader: "tab 2"})})).status""", i)
        assert status == 200
        current = page.evaluate(f"window.review.state.report.vertebrae[{i}].keypoints")
        start = page.evaluate(f"window.review.toScreen({current['lower_middle']['x']}, {current['lower_middle']['y']})")
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(start[0] + 6, start[1] + 6, steps=4)
        page.mouse.up()
        page.wait_for_function("document.getElementById('status').className === 'error'")
        assert "version: 1 is not the current version 2" in page.inner_text("#status")
        assert page.evaluate("window.review.state.report.version") == 2
        assert page.evaluate(f"window.review.state.report.vertebrae[{i}].keypoints") == current
        assert page.inner_text("#v-grade") == "severe" and "(reader's override)" in page.inner_text("#v-source")
        assert json.loads((results / "film_c.reviewed.json").read_text())["version"] == 2

        # A vertebra added with its level and six clicks, in the order of the points.
        n = len(report["vertebrae"])
        page.fill("#add-level", "X1")
        page.click("#add")
        for name in v["keypoints"]:
            x, y = page.evaluate(f"window.review.toScreen({v['keypoints'][name]['x'] + 120}, {v['keypoints'][name]['y']})")
            page.mouse.click(x, y)
        page.wait_for_function(f"window.review.state.report.vertebrae.length === {n + 1}")
        added = json.loads((results / "film_c.reviewed.json").read_text())
        assert added["version"] == 3 and added["audit"][-1]["action"] == "add vertebra"
        assert "added" in page.inner_text("#vertebrae")
        # Keys: j selects the next vertebra, n opens the next film.
        selected = page.evaluate("window.review.state.selected")
        page.keyboard.press("j")
        assert page.evaluate("window.review.state.selected") == (selected + 1) % (n + 1)
        page.keyboard.press("n")
        page.wait_for_function("window.review.state.film === 'film_model' && document.body.dataset.ready === 'true'")
        assert errors == []
        browser.close()
