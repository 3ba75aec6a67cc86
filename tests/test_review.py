"""The review application's API over reports of tools/predict.py: re-grading a moved point, the saved
state and audit, add, delete, override, versions, every bad input, the path checks, the COCO
export, and tools/gsq.py sharing the re-grade."""

import csv
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import requires_detectron2
from xvfa_ext.layout import KEYPOINT_NAMES

pytestmark = requires_detectron2
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(review_folder, tmp_path):
    """A fresh copy of the reports, and a test client of the application over them."""
    from xvfa_ext.review import ReviewStore
    from xvfa_ext.review.app import create_app

    results = tmp_path / "results"
    shutil.copytree(review_folder["results"], results)
    store = ReviewStore(results, review_folder["films"], reader="Dr. A")
    return {"client": create_app(store).test_client(), "results": results, "films": review_folder["films"], "store": store}


def normal_vertebra(report):
    """The index of a normal vertebra whose points say normal too."""
    return next(i for i, v in enumerate(report["vertebrae"]) if v["grade"] == "normal" and v["model"]["grade"] == "normal")


def lowered(vertebra, fraction=0.3):
    """The six points with upper_anterior moved towards lower_anterior by ``fraction`` of the anterior height."""
    points = [[vertebra["keypoints"][n]["x"], vertebra["keypoints"][n]["y"]] for n in KEYPOINT_NAMES]
    ua, la = np.asarray(points[2]), np.asarray(points[5])
    points[2] = (ua + fraction * (la - ua)).tolist()
    return points


def test_worklist_and_a_film_as_the_model_left_it(env):
    client = env["client"]
    films = client.get("/api/films").get_json()
    assert [f["film"] for f in films] == ["film_a", "film_b", "film_c", "film_model"]
    assert all(not f["reviewed"] and f["worst_grade"] in ("normal", "mild", "moderate", "severe") for f in films)
    assert next(f for f in films if f["film"] == "film_c")["patient_id"] == "P0003"
    report = client.get("/api/films/film_a").get_json()
    assert report["version"] == 0 and report["reviewed"] is False and report["audit"] == []
    model = json.loads((env["results"] / "film_a.json").read_text())
    assert report["model_patient"] == model["patient"]
    v = report["vertebrae"][0]
    assert v["model"]["grade"] == model["vertebrae"][0]["grade"] and v["grade_source"] == "points"
    # The films as PNG; a DICOM with its rescale and VOI LUT applied, as read_film reads it.
    from xvfa_ext.radiograph_io import read_film

    for film, name in (("film_a", "film_a.png"), ("film_c", "film_c.dcm")):
        response = client.get(f"/api/films/{film}/image")
        assert response.status_code == 200 and response.mimetype == "image/png"
        image = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(image, read_film(env["films"] / name).image)


def test_a_moved_point_regrades_saves_audits_and_redraws(env):
    client, results = env["client"], env["results"]
    model_bytes = (results / "film_c.json").read_bytes()
    report = client.get("/api/films/film_c").get_json()
    i = normal_vertebra(report)
    before = report["vertebrae"][i]
    response = client.put(f"/api/films/film_c/vertebrae/{i}",
                          json={"keypoints": lowered(before), "version": 0, "reader": "Dr. B"})
    assert response.status_code == 200, response.get_json()
    out = response.get_json()
    v = out["vertebra"]
    assert out["version"] == 1 and v["grade"] == "moderate" and v["gsq_grade"] == "moderate"
    assert v["agrees_with_model"] is False and v["model"]["grade"] == "normal"
    assert v["explanation"] != before["explanation"] and v["explanation"].startswith("moderate")
    assert v["heights_px"]["anterior"] == pytest.approx(0.7 * before["heights_px"]["anterior"], rel=1e-6)
    assert v["heights_mm"]["anterior"] < before["heights_mm"]["anterior"]  # the DICOM's spacing
    assert out["patient"]["moderate_or_severe"] == report["patient"]["moderate_or_severe"] + 1
    assert out["patient"]["screening_positive"] is True

    assert (results / "film_c.json").read_bytes() == model_bytes  # the model's report is never modified
    saved = json.loads((results / "film_c.reviewed.json").read_text())
    assert saved["version"] == 1 and saved["vertebrae"][i]["grade"] == "moderate"
    (entry,) = saved["audit"]
    assert entry["reader"] == "Dr. B" and entry["action"] == "move points" and entry["vertebra"] == i
    assert list(entry["before"]["keypoints"]) == ["upper_anterior"]
    assert (entry["before"]["grade"], entry["after"]["grade"]) == ("normal", "moderate")
    rows = list(csv.DictReader((results / "vertebrae.reviewed.csv").open()))
    assert len(rows) == len(saved["vertebrae"])
    row = rows[i]
    assert (row["grade"], row["model_grade"], row["grade_source"]) == ("moderate", "normal", "points")
    assert cv2.imread(str(results / "film_c.reviewed.png")) is not None
    # Reopened (a new store over the folder), the reviewed state is what is served.
    from xvfa_ext.review import ReviewStore
    from xvfa_ext.review.app import create_app

    again = create_app(ReviewStore(results, env["films"])).test_client()
    assert again.get("/api/films/film_c").get_json()["vertebrae"][i]["grade"] == "moderate"
    assert next(f for f in again.get("/api/films").get_json() if f["film"] == "film_c")["reviewed"] is True


def test_a_stale_version_gets_409_and_changes_nothing(env):
    client, results = env["client"], env["results"]
    report = client.get("/api/films/film_a").get_json()
    i = normal_vertebra(report)
    assert client.put(f"/api/films/film_a/vertebrae/{i}", json={"keypoints": lowered(report["vertebrae"][i]), "version": 0}).status_code == 200
    saved = (results / "film_a.reviewed.json").read_bytes()
    for method, url, body in (
        ("put", f"/api/films/film_a/vertebrae/{i}", {"keypoints": lowered(report["vertebrae"][i], 0.1), "version": 0}),
        ("put", f"/api/films/film_a/vertebrae/{i}/grade", {"grade": "severe", "reason": "r", "version": 0}),
        ("post", "/api/films/film_a/vertebrae", {"level": "L5", "keypoints": lowered(report["vertebrae"][i]), "version": 0}),
        ("delete", f"/api/films/film_a/vertebrae/{i}?version=0", None),
        ("post", "/api/films/film_a/accept", {"version": 0}),
    ):
        response = getattr(client, method)(url, json=body)
        assert response.status_code == 409, (url, response.get_json())
        assert "version: 0 is not the current version 1" in response.get_json()["error"]
    assert (results / "film_a.reviewed.json").read_bytes() == saved


def test_add_delete_override_accept_and_the_coco_export(env):
    client, results = env["client"], env["results"]
    report = client.get("/api/films/film_b").get_json()
    n = len(report["vertebrae"])
    first = report["vertebrae"][0]
    r = client.delete("/api/films/film_b/vertebrae/0?version=0&reader=Dr.%20C")  # a false detection, say
    assert r.status_code == 200 and r.get_json()["version"] == 1
    assert r.get_json()["patient"]["vertebrae"] == n - 1
    # The reader adds it back as the model missed it: its level and six points.
    r = client.post("/api/films/film_b/vertebrae", json={"level": "T4", "keypoints": lowered(first, 0.0), "version": 1})
    assert r.status_code == 201, r.get_json()
    added = r.get_json()["vertebra"]
    assert added["index"] == 0 and added["model"] is None and added["level"] == "T4"
    assert added["grade"] == first["gsq_grade"] and added["agrees_with_model"] is None
    r = client.put("/api/films/film_b/vertebrae/1/grade", json={"grade": "severe", "reason": "collapse seen on CT", "version": 2})
    assert r.status_code == 200
    v = r.get_json()["vertebra"]
    assert (v["grade"], v["grade_source"], v["override"]["reason"]) == ("severe", "override", "collapse seen on CT")
    assert r.get_json()["patient"]["worst_grade"] == "severe"
    assert client.post("/api/films/film_b/accept", json={"version": 3}).status_code == 200
    saved = json.loads((results / "film_b.reviewed.json").read_text())
    assert [a["action"] for a in saved["audit"]] == ["delete vertebra", "add vertebra", "override grade", "accept film"]
    assert saved["audit"][0]["reader"] == "Dr. C" and saved["audit"][0]["before"]["level"] == "T4"
    assert saved["audit"][1]["reader"] == "Dr. A"  # the application's --reader where a request names none
    assert len(saved["vertebrae"]) == n and [v["index"] for v in saved["vertebrae"]] == list(range(n))
    assert saved["accepted"]["reader"] == "Dr. A"
    rows = list(csv.DictReader((results / "vertebrae.reviewed.csv").open()))
    assert rows[1]["grade_source"] == "override" and rows[1]["override_reason"] == "collapse seen on CT"
    assert rows[0]["level"] == "T4" and rows[0]["p_normal"] == "" and rows[0]["model_grade"] == ""

    exported = client.get("/api/export/coco").get_json()
    assert exported == {"written": str(results / "reviewed_coco.json"), "images": 1, "annotations": n}
    from xvfa_ext.data.loading import load_vertebra_coco

    (record,) = load_vertebra_coco(str(results / "reviewed_coco.json"), str(env["films"]))
    anns = record["annotations"]
    assert record["file_name"].endswith("film_b.png") and len(anns) == n
    assert anns[1]["grade"] == 3 and anns[1]["graded_by"] == "reader"
    assert anns[0]["level"] == "T4" and anns[0]["graded_by"] == "gsq"
    info = json.loads((results / "reviewed_coco.json").read_text())["info"]
    assert info["levels"][0] == "T4" and info["view"] == "lateral" and info["vertebra_height_px"] > 0


BAD = [
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 5, "version": 0}, 400, "keypoints: expected 6 points"),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 5 + [[1, 1e6]], "version": 0}, 400,
     "keypoints[5] (lower_anterior): (1, 1e+06) lies outside the film (480x640 pixels)"),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 5 + [[-1, 2]], "version": 0}, 400, "lies outside the film"),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 5 + [[float("nan"), 2]], "version": 0}, 400,
     "keypoints[5] (lower_anterior): coordinates must be finite"),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 5 + [["1", 2]], "version": 0}, 400, "coordinates must be numbers"),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 6, "version": 0}, 422, "keypoints: "),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 6}, 400, "version: required"),
    ("put", "/api/films/film_a/vertebrae/0", {"keypoints": [[1, 1]] * 6, "version": "0"}, 400, "version: required, an integer"),
    ("put", "/api/films/film_a/vertebrae/99", {"keypoints": [[1, 1]] * 6, "version": 0}, 404, "index: no vertebra 99"),
    ("put", "/api/films/film_a/vertebrae/-1", {"keypoints": [[1, 1]] * 6, "version": 0}, 404, "index: no vertebra -1"),
    ("put", "/api/films/nosuch/vertebrae/0", {"keypoints": [[1, 1]] * 6, "version": 0}, 404, "film: no report nosuch.json"),
    ("get", "/api/films/..", None, 400, "film: '..' is not a film name"),
    ("get", "/api/films/..%2F..%2Fetc%2Fpasswd", None, 400, "is not a film name"),
    ("get", "/api/films/a%2Fb/image", None, 400, "film: 'a/b/image' is not a film name"),
    ("put", "/api/films/film_a/vertebrae/0/shape", {"version": 0}, 404, "no such request: PUT"),
    ("get", "/api/films/.hidden", None, 400, "is not a film name"),
    ("get", "/api/films/summary", None, 404, "film: no report summary.json"),
    ("get", "/api/films/film_a.reviewed", None, 404, "film: no report"),
    ("put", "/api/films/film_a/vertebrae/0/grade", {"grade": "broken", "reason": "x", "version": 0}, 400, "grade: expected one of"),
    ("put", "/api/films/film_a/vertebrae/0/grade", {"grade": "severe", "version": 0}, 400, "reason: required"),
    ("post", "/api/films/film_a/vertebrae", {"level": "L1/..", "keypoints": [[1, 1]] * 6, "version": 0}, 400, "level: expected a level name"),
    ("post", "/api/films/film_a/vertebrae", {"keypoints": [[1, 1]] * 6, "version": 0}, 400, "level: expected a level name"),
    ("put", "/api/films/film_a/vertebrae/0", "not json", 400, "body: expected a JSON object"),
    ("put", "/api/films/film_a/vertebrae/0", [1, 2], 400, "body: expected a JSON object"),
    ("delete", "/api/films/film_a/vertebrae/0", None, 400, "version: required"),
    ("delete", "/api/films/film_a/vertebrae/0?version=x", None, 400, "version: expected an integer"),
    ("get", "/static/../app.py", None, 404, ""),
]


@pytest.mark.parametrize("method, url, body, status, message", BAD)
def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(env, method, url, body, status, message):
    client, results = env["client"], env["results"]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in results.iterdir())
    if isinstance(body, str):
        response = getattr(client, method)(url, data=body, content_type="text/plain")
    elif body is not None:
        response = getattr(client, method)(url, data=json.dumps(body), content_type="application/json")
    else:
        response = getattr(client, method)(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert message in response.get_json()["error"]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in results.iterdir()) == before


def test_nothing_outside_the_folders_is_read(env, tmp_path):
    from xvfa_ext.review import ReviewStore
    from xvfa_ext.review.app import create_app

    results = env["results"]
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(results / "film_a.json", outside / "secret.json")
    (results / "linked.json").symlink_to(outside / "secret.json")  # a report that leads out of DIR
    report = json.loads((results / "film_b.json").read_text())
    report["image"] = "../outside/secret.json"  # an image path that leads out of the image folder
    (results / "escape.json").write_text(json.dumps(report))
    (results / "broken.json").write_text("{")
    client = create_app(ReviewStore(results, env["films"])).test_client()
    r = client.get("/api/films/linked")
    assert r.status_code == 403 and "lies outside" in r.get_json()["error"]
    r = client.get("/api/films/escape/image")
    assert r.status_code == 404 and str(env["films"] / "secret.json") in r.get_json()["error"]
    # Without --images a report's own path is used; a broken report is named in the worklist.
    films = {f["film"]: f for f in client.get("/api/films").get_json()}
    assert "not readable JSON" in films["broken"]["error"] and films["film_a"]["worst_grade"]


def test_reports_are_read_lazily(tmp_path):
    """A thousand reports, all unreadable: the store starts and lists them without reading any."""
    from xvfa_ext.review import ReviewStore
    from xvfa_ext.review.app import create_app

    for k in range(1000):
        (tmp_path / f"film{k:04d}.json").write_text("{")
    store = ReviewStore(tmp_path)
    assert len(store.films()) == 1000
    client = create_app(store).test_client()
    assert client.get("/").status_code == 200 and b"review.js" in client.get("/").data
    assert client.get("/api/films/film0007").status_code == 500


def test_gsq_tool_and_the_application_share_the_regrade(env):
    """tools/gsq.py on a hand-corrected report gives the vertebra, the patient summary and the CSV
    row that the application gives for the same points."""
    client, results = env["client"], env["results"]
    report = client.get("/api/films/film_c").get_json()
    i = normal_vertebra(report)
    points = lowered(report["vertebrae"][i])
    app_result = client.put(f"/api/films/film_c/vertebrae/{i}", json={"keypoints": points, "version": 0}).get_json()

    edited = json.loads((env["results"] / "film_c.json").read_text())
    for name, (x, y) in zip(KEYPOINT_NAMES, points):
        edited["vertebrae"][i]["keypoints"][name].update(x=x, y=y)
    src = results / "edited.json"
    src.write_text(json.dumps(edited))
    shutil.copy(results / "vertebrae.csv", results / "tool.csv")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gsq.py"), "--input", str(src), "--output",
                             str(results / "tool.json"), "--csv", str(results / "tool.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    tool = json.loads((results / "tool.json").read_text())
    keys = ["grade", "gsq_grade", "heights_px", "heights_mm", "ratios", "explanation", "screening_positive", "grade_source"]
    assert {k: tool["vertebrae"][i][k] for k in keys} == {k: app_result["vertebra"][k] for k in keys}
    assert tool["vertebrae"][i]["model"]["grade"] == "normal"  # the model's grade kept beside the reader's
    assert tool["patient"] == app_result["patient"]
    tool_rows = list(csv.DictReader((results / "tool.csv").open()))
    app_rows = list(csv.DictReader((results / "vertebrae.reviewed.csv").open()))
    film_rows = [r for r in tool_rows if r["image"] == tool["image"]]
    assert film_rows == app_rows
    # The other films' rows of predict.py's CSV are kept.
    original = list(csv.DictReader((results / "vertebrae.csv").open()))
    others = [r for r in tool_rows if r["image"] != tool["image"]]
    assert original and [{k: r[k] for k in original[0]} for r in others] == original
    assert not any(math.isnan(float(r["reduction"])) for r in film_rows)


def test_the_command_listens_on_this_machine_only_and_names_a_bad_folder(env, tmp_path):
    import socket
    import time
    import urllib.request

    tool = [sys.executable, str(ROOT / "tools" / "review.py")]
    result = subprocess.run(tool + ["--results", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip() == f"review.py: {tmp_path / 'nowhere'}: no such folder of reports"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(tool + ["--results", str(env["results"]), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == (
            f"review.py: 4 films in {env['results']}; open http://127.0.0.1:{port}/")
        for _ in range(100):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        assert b"XVFA review" in page
        # Bound to the loopback address: on this machine's outward address (where it has one) the port is closed.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("10.255.255.255", 1))  # picks the outward interface; sends nothing
                other = probe.getsockname()[0]
            except OSError:
                other = None
        if other and not other.startswith("127."):
            with socket.socket() as s:
                assert s.connect_ex((other, port)) != 0
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
