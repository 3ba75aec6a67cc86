"""The reviewed state of a folder of reports: what the review application reads and writes.

A folder ``DIR`` that ``tools/predict.py`` wrote holds ``<film>.json`` per film. A reader's changes
to a film go to ``DIR/<film>.reviewed.json`` (the model's report is never modified): the report
re-graded by :func:`xvfa_ext.regrade.regrade` after each change, a ``version`` counted from 0 (the
model's report) and an ``audit`` list of every change. ``DIR/vertebrae.reviewed.csv`` holds the
rows of the reviewed films and ``DIR/<film>.reviewed.png`` the drawing of each.

Every request names a film by its report's name; names with a path separator, ``..`` or a leading
dot are refused, and a report or image that resolves outside ``DIR`` or the image folder is not
read. Reports are read when asked for, never all at start; the library's GSQ (and torch with it) is
imported at the first request that needs it, so that the application starts at once.
"""

import copy
import datetime
import json
import logging
import math
import re
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..files import write_atomic
from ..layout import KEYPOINT_NAMES, order_levels

logger = logging.getLogger(__name__)

REVIEWED_SUFFIX = ".reviewed.json"
CSV_NAME = "vertebrae.reviewed.csv"
COCO_NAME = "reviewed_coco.json"
# JSON files of a predict.py folder that are not film reports.
NOT_REPORTS = {"summary.json", "studies.json", COCO_NAME}
FILM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,199}$")
LEVEL_NAME = re.compile(r"^[A-Za-z0-9]{1,16}$")
MAX_TEXT = 500


class ReviewError(Exception):
    """A request that cannot be carried out: its HTTP status and a message naming the field."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_keypoints(value, size: Tuple[int, int], field: str = "keypoints") -> List[List[float]]:
    """Six ``[x, y]`` finite numbers inside a film of ``size`` (height, width); a 400 naming the field."""
    if not isinstance(value, list) or len(value) != len(KEYPOINT_NAMES):
        n = len(value) if isinstance(value, list) else type(value).__name__
        raise ReviewError(400, f"{field}: expected {len(KEYPOINT_NAMES)} points [x, y] ({', '.join(KEYPOINT_NAMES)}), got {n}")
    height, width = size
    points = []
    for k, (name, p) in enumerate(zip(KEYPOINT_NAMES, value)):
        where = f"{field}[{k}] ({name})"
        if not isinstance(p, list) or len(p) != 2:
            raise ReviewError(400, f"{where}: expected [x, y], got {json.dumps(p)[:60]}")
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p):
            raise ReviewError(400, f"{where}: coordinates must be numbers, got {json.dumps(p)[:60]}")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ReviewError(400, f"{where}: coordinates must be finite, got {p}")
        if not (0 <= x <= width and 0 <= y <= height):
            raise ReviewError(400, f"{where}: ({x:g}, {y:g}) lies outside the film ({width}x{height} pixels)")
        points.append([x, y])
    return points


def _text(body: Dict, field: str, required: bool = True, default: Optional[str] = None) -> Optional[str]:
    value = body.get(field, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ReviewError(400, f"{field}: required")
        return default
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ReviewError(400, f"{field}: expected text of at most {MAX_TEXT} characters")
    return value.strip()


class ReviewStore:
    """The films of ``results`` (reports of ``tools/predict.py``) and their reviewed state.

    Args:
        results: the folder of reports; reviewed files are written there.
        images: the folder of the films; a report's film is looked up there by its file name.
            Without it a film is read from the path its report gives.
        reader: the name recorded for a change whose request names no reader.
    """

    def __init__(self, results: Path, images: Optional[Path] = None, reader: str = "reader"):
        self.results = Path(results)
        if not self.results.is_dir():
            raise ValueError(f"{self.results}: no such folder of reports")
        self.images = Path(images) if images is not None else None
        if self.images is not None and not self.images.is_dir():
            raise ValueError(f"{self.images}: no such image folder")
        self.reader = reader
        self.lock = threading.RLock()
        self._pngs: Dict[str, Tuple[float, bytes]] = {}
        self._worklist: Dict[str, Tuple[Tuple, Dict]] = {}

    # Reading -------------------------------------------------------------------------------------

    def films(self) -> List[str]:
        """The names of the films: the report files of the folder, sorted."""
        names = []
        for path in self.results.glob("*.json"):
            if path.name in NOT_REPORTS or path.name.endswith(REVIEWED_SUFFIX) or path.name.startswith("."):
                continue
            names.append(path.name[: -len(".json")])
        return sorted(names)

    def check_film(self, film: str) -> None:
        """A ReviewError unless ``film`` names a report of the folder (nothing is read)."""
        self._paths(film)

    def _paths(self, film: str) -> Tuple[Path, Path]:
        """The model's report and the reviewed file of ``film``; 400 for a name that is not a film's,
        404 for an unknown film."""
        if not isinstance(film, str) or not FILM_NAME.match(film) or ".." in film:
            raise ReviewError(400, f"film: {film!r} is not a film name (no '/', '..' or leading '.')")
        model = self.results / f"{film}.json"
        if f"{film}.json" in NOT_REPORTS or film.endswith(".reviewed") or not model.is_file():
            raise ReviewError(404, f"film: no report {film}.json in {self.results}")
        if not _inside(model, self.results):
            raise ReviewError(403, f"film: {film}.json lies outside {self.results}")
        return model, self.results / f"{film}{REVIEWED_SUFFIX}"

    @staticmethod
    def _read(path: Path) -> Dict:
        try:
            report = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ReviewError(500, f"{path}: not readable JSON ({exc})") from None
        if not isinstance(report, dict) or not isinstance(report.get("vertebrae"), list):
            raise ReviewError(500, f"{path}: not a report of tools/predict.py (no list of vertebrae)")
        return report

    def report(self, film: str) -> Dict:
        """The current report: the reviewed one if there is one, else the model's re-graded from its
        own points (version 0): each vertebra has the model's grade and the grade of the points."""
        model, reviewed = self._paths(film)
        if reviewed.is_file():
            if not _inside(reviewed, self.results):
                raise ReviewError(403, f"film: {reviewed.name} lies outside {self.results}")
            return self._read(reviewed)
        from ..regrade import regrade

        report = self._read(model)
        errors: List[str] = []
        regrade(report, None, errors)
        for error in errors:
            logger.warning("%s: %s", model, error)
        report.update(film=film, version=0, reviewed=False, audit=[])
        return report

    def worklist(self) -> List[Dict]:
        """Per film: its patient, the worst grade and screening flag of the current report, whether
        it was reviewed, and the model's worst grade and flag; a report that cannot be read is an
        entry with its ``error``. Entries are cached until their files change."""
        out = []
        for film in self.films():
            model, reviewed = self.results / f"{film}.json", self.results / f"{film}{REVIEWED_SUFFIX}"
            stamp = tuple(p.stat().st_mtime_ns if p.exists() else None for p in (model, reviewed))
            cached = self._worklist.get(film)
            if cached and cached[0] == stamp:
                out.append(cached[1])
                continue
            try:
                r = self._worklist_report(film, reviewed)
                entry = {
                    "film": film,
                    "patient_id": r.get("patient_id"),
                    "worst_grade": r["patient"]["worst_grade"],
                    "screening_positive": r["patient"]["screening_positive"],
                    "reviewed": bool(r.get("reviewed")),
                    "model_worst_grade": (r.get("model_patient") or {}).get("worst_grade"),
                    "model_screening_positive": (r.get("model_patient") or {}).get("screening_positive"),
                    "vertebrae": len(r["vertebrae"]),
                    "disagreements": sum(v.get("agrees_with_model") is False for v in r["vertebrae"]),
                }
            except ReviewError as exc:
                entry = {"film": film, "error": exc.message}
            self._worklist[film] = (stamp, entry)
            out.append(entry)
        return out

    def _worklist_report(self, film: str, reviewed: Path) -> Dict:
        """The reviewed report, or for a film not yet reviewed what :meth:`report` would give of it,
        from the model's report alone: its points' crisp grades are already there."""
        if reviewed.is_file():
            return self.report(film)
        from ..patient import reviewed_patient_summary

        model, _ = self._paths(film)
        r = self._read(model)
        points = [{"grade": v.get("gsq_grade"), "agrees_with_model": v.get("gsq_grade") == v.get("grade")}
                  for v in r["vertebrae"]]
        return {**r, "model_patient": r.get("patient"), "patient": reviewed_patient_summary(points), "vertebrae": points}

    def _image_path(self, film: str, report: Dict) -> Path:
        given = Path(str(report.get("image", "")))
        if self.images is not None:
            path = self.images / given.name
            if not given.name or not _inside(path, self.images):
                raise ReviewError(403, f"film: the image {given.name!r} of {film} lies outside {self.images}")
        else:
            path = given
        if not path.is_file():
            raise ReviewError(404, f"film: the image of {film} is not at {path}; give the image folder with --images")
        return path

    def image_png(self, film: str) -> bytes:
        """The film as an 8-bit PNG: a DICOM's modality and VOI LUT applied (:func:`read_film`)."""
        model, reviewed = self._paths(film)
        path = self._image_path(film, self._read(reviewed if reviewed.is_file() else model))
        stamp = path.stat().st_mtime
        cached = self._pngs.get(film)
        if cached and cached[0] == stamp:
            return cached[1]
        from ..radiograph_io import read_film

        try:
            image = read_film(path).image
        except ValueError as exc:
            raise ReviewError(500, str(exc)) from None
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise ReviewError(500, f"{path}: could not be encoded as PNG")
        if len(self._pngs) > 8:
            self._pngs.pop(next(iter(self._pngs)))
        self._pngs[film] = (stamp, png.tobytes())
        return png.tobytes()

    def _size(self, film: str, report: Dict) -> Tuple[int, int]:
        if report.get("image_size"):
            return int(report["image_size"][0]), int(report["image_size"][1])
        image = cv2.imdecode(np.frombuffer(self.image_png(film), np.uint8), cv2.IMREAD_GRAYSCALE)
        return image.shape[0], image.shape[1]

    # Changing ------------------------------------------------------------------------------------

    def _begin(self, film: str, body: Dict) -> Tuple[Dict, str]:
        """The current report after checking the request's version (409 where it is not the
        current one) and its reader."""
        if not isinstance(body, dict):
            raise ReviewError(400, "body: expected a JSON object")
        report = self.report(film)
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ReviewError(400, f"version: required, an integer (the current version is {report['version']})")
        if version != report["version"]:
            raise ReviewError(409, f"version: {version} is not the current version {report['version']} of {film}; "
                                   "reload the film")
        return report, _text(body, "reader", required=False, default=self.reader)

    @staticmethod
    def _vertebra(report: Dict, index) -> Dict:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(report["vertebrae"]):
            raise ReviewError(404, f"index: no vertebra {index} (the film has {len(report['vertebrae'])})")
        return report["vertebrae"][index]

    def _commit(self, film: str, report: Dict, reader: str, action: str, vertebra: Optional[Dict],
                before: Dict, after: Dict) -> Dict:
        """Record the change, re-grade, and write the reviewed JSON, CSV rows and drawing."""
        report["version"] += 1
        report["reviewed"] = True
        report.setdefault("readers", [])
        if reader not in report["readers"]:
            report["readers"].append(reader)
        report["audit"].append({
            "time": _now(), "reader": reader, "action": action, "version": report["version"],
            "vertebra": None if vertebra is None else vertebra.get("index"),
            "level": None if vertebra is None else vertebra.get("level"),
            "model_index": None if vertebra is None else vertebra.get("model_index"),
            "before": before, "after": after,
        })
        from ..regrade import regrade, replace_csv_rows, reviewed_rows

        regrade(report, None, [])  # a vertebra the model gave no points stays ungraded, as it was read
        _, reviewed = self._paths(film)
        write_atomic(reviewed, json.dumps(report, indent=1, allow_nan=False).encode())
        replace_csv_rows(self.results / CSV_NAME, report["image"], reviewed_rows(report))
        report["drawing_error"] = self._draw(film, report)
        return report

    def _draw(self, film: str, report: Dict) -> Optional[str]:
        """Redraw ``<film>.reviewed.png``; the reason where it cannot be drawn (the change is kept)."""
        try:
            from ..radiograph_io import read_film
            from ..visualizer import draw_report

            image = read_film(self._image_path(film, report)).image
            ok, png = cv2.imencode(".png", draw_report(image, report["vertebrae"]))
            if not ok:
                raise ValueError("the drawing could not be encoded as PNG")
            write_atomic(self.results / f"{film}.reviewed.png", png.tobytes())
        except (ReviewError, ValueError, ImportError) as exc:
            message = f"{film}.reviewed.png not drawn: {getattr(exc, 'message', exc)}"
            logger.warning(message)
            return message
        return None

    @staticmethod
    def _points(vertebra: Dict) -> Dict[str, List[float]]:
        return {n: [vertebra["keypoints"][n]["x"], vertebra["keypoints"][n]["y"]] for n in KEYPOINT_NAMES}

    @staticmethod
    def _check_vertebra(candidate: Dict, spacing) -> Dict:
        from ..regrade import regrade_vertebra

        graded = regrade_vertebra(candidate, spacing)
        if not graded["valid"]:
            raise ReviewError(422, f"keypoints: {graded['explanation']}")
        return graded

    def _result(self, report: Dict, vertebra: Optional[Dict]) -> Dict:
        return {"version": report["version"], "vertebra": vertebra, "patient": report["patient"],
                "drawing_error": report.pop("drawing_error", None)}

    def move_points(self, film: str, index, body: Dict) -> Dict:
        """The reader's six points for vertebra ``index``; the re-graded vertebra and patient."""
        with self.lock:
            report, reader = self._begin(film, body)
            vertebra = self._vertebra(report, index)
            points = check_keypoints(body.get("keypoints"), self._size(film, report))
            candidate = copy.deepcopy(vertebra)
            for name, (x, y) in zip(KEYPOINT_NAMES, points):
                candidate["keypoints"][name].update(x=x, y=y)
            self._check_vertebra(candidate, report.get("pixel_spacing_mm"))
            before, after = self._points(vertebra), self._points(candidate)
            moved = [n for n in KEYPOINT_NAMES if before[n] != after[n]]
            change = ({"keypoints": {n: before[n] for n in moved}, "grade": vertebra["grade"]},
                      {"keypoints": {n: after[n] for n in moved}, "grade": candidate["grade"]})
            report["vertebrae"][index] = candidate
            report = self._commit(film, report, reader, "move points", candidate, *change)
            return self._result(report, report["vertebrae"][index])

    def add_vertebra(self, film: str, body: Dict) -> Dict:
        """A vertebra the model missed: ``level`` and six points. Vertebrae stay cranial to caudal."""
        with self.lock:
            report, reader = self._begin(film, body)
            level = body.get("level")
            if not isinstance(level, str) or not LEVEL_NAME.match(level):
                raise ReviewError(400, f"level: expected a level name such as T12 or L1 (letters and digits), got {json.dumps(level)}")
            size = self._size(film, report)
            points = check_keypoints(body.get("keypoints"), size)
            from ..synthetic import vertebra_box

            box = vertebra_box(np.asarray(points), *size)
            vertebra = {
                "index": None, "model_index": None, "level": level, "level_certain": True, "added_by": reader,
                "box": [box[0], box[1], box[0] + box[2], box[1] + box[3]],
                "keypoints": {n: {"x": x, "y": y} for n, (x, y) in zip(KEYPOINT_NAMES, points)},
            }
            self._check_vertebra(vertebra, report.get("pixel_spacing_mm"))
            centre = float(np.mean([p[1] for p in points]))
            at = sum(float(np.mean([v["keypoints"][n]["y"] for n in KEYPOINT_NAMES])) < centre for v in report["vertebrae"])
            report["vertebrae"].insert(at, vertebra)
            self._renumber(report)
            after = {"level": level, "keypoints": self._points(vertebra), "grade": vertebra["grade"]}
            report = self._commit(film, report, reader, "add vertebra", vertebra, {}, after)
            return self._result(report, report["vertebrae"][at])

    def delete_vertebra(self, film: str, index, body: Dict) -> Dict:
        """Remove vertebra ``index`` (a false detection); the audit keeps its points and grade."""
        with self.lock:
            report, reader = self._begin(film, body)
            vertebra = self._vertebra(report, index)
            before = {"level": vertebra.get("level"), "keypoints": self._points(vertebra), "grade": vertebra["grade"]}
            del report["vertebrae"][index]
            self._renumber(report)
            report = self._commit(film, report, reader, "delete vertebra", vertebra, before, {})
            return self._result(report, None)

    def override_grade(self, film: str, index, body: Dict) -> Dict:
        """The reader's grade of vertebra ``index`` with a ``reason``; ``grade: null`` removes the
        override, so that the grade follows the points again."""
        with self.lock:
            report, reader = self._begin(film, body)
            vertebra = self._vertebra(report, index)
            from ..gsq import GRADES
            from ..regrade import regrade_vertebra

            grade = body.get("grade")
            if grade is not None and grade not in GRADES:
                raise ReviewError(400, f"grade: expected one of {', '.join(GRADES)} (or null to remove the override), got {json.dumps(grade)}")
            before = {"grade": vertebra["grade"], "override": vertebra.get("override")}
            if grade is None:
                vertebra.pop("override", None)
            else:
                reason = _text(body, "reason")
                vertebra["override"] = {"grade": grade, "reason": reason, "reader": reader, "time": _now()}
            regrade_vertebra(vertebra, report.get("pixel_spacing_mm"))
            after = {"grade": vertebra["grade"], "override": vertebra.get("override")}
            action = "override grade" if grade is not None else "remove override"
            report = self._commit(film, report, reader, action, vertebra, before, after)
            return self._result(report, report["vertebrae"][index])

    def accept(self, film: str, body: Dict) -> Dict:
        """The reader accepts the film as it stands."""
        with self.lock:
            report, reader = self._begin(film, body)
            report["accepted"] = {"reader": reader, "time": _now()}
            report = self._commit(film, report, reader, "accept film", None, {}, {"accepted": True})
            return self._result(report, None)

    @staticmethod
    def _renumber(report: Dict) -> None:
        for k, v in enumerate(report["vertebrae"]):
            v["index"] = k
            v.setdefault("model_index", None)

    # Export --------------------------------------------------------------------------------------

    def export_coco(self) -> Dict:
        """The reviewed films as one COCO keypoint file of the project, ``DIR/reviewed_coco.json``.

        Each vertebra as ``datasets/convert_points.py`` converts a read one
        (:func:`~xvfa_ext.coco_splits.vertebra_annotation`): graded by the reader where the reader
        overrode the grade, else by the crisp GSQ of the reader's points. Levels the reader did not
        read are absent, for imputation (``datasets/impute_missing.py``) as in a converted dataset.
        """
        from ..coco_splits import coco_file, vertebra_annotation
        from ..gsq import GRADES

        with self.lock:
            images, annotations, views = [], [], set()
            for film in self.films():
                if not (self.results / f"{film}{REVIEWED_SUFFIX}").is_file():
                    continue
                report = self.report(film)
                height, width = self._size(film, report)
                image = {"id": len(images) + 1, "file_name": Path(str(report["image"])).name, "height": height,
                         "width": width, "patient_id": report.get("patient_id") or film}
                images.append(image)
                views.add(report.get("view", "lateral"))
                for v in report["vertebrae"]:
                    if not v.get("valid"):
                        continue
                    points = np.asarray([self._points(v)[n] for n in KEYPOINT_NAMES])
                    override = v.get("override")
                    grade = GRADES.index(override["grade"]) if override else None
                    annotations.append(vertebra_annotation(len(annotations) + 1, image, points, grade, None, v.get("level")))
            if len(views) > 1:
                raise ReviewError(409, f"the reviewed films are of several views ({', '.join(sorted(views))})")
            levels = [a["level"] for a in annotations if a["level"]]
            mean_y = {}
            for a in annotations:
                if a["level"]:
                    mean_y.setdefault(a["level"], []).append(float(np.mean(a["keypoints"][1::3])))
            info = {"description": f"reviewed films of {self.results}", "view": views.pop() if views else "lateral",
                    "levels": order_levels(levels, {k: float(np.mean(y)) for k, y in mean_y.items()}),
                    "middles": "read", "num_images": len(images), "num_vertebrae": len(annotations), "split": "reviewed"}
            path = self.results / COCO_NAME
            write_atomic(path, json.dumps(coco_file(images, annotations, info)).encode())
            return {"written": str(path), "images": len(images), "annotations": len(annotations)}
