"""The review application's HTTP API and page (Flask), over a :class:`ReviewStore`.

    GET    /                                        the page
    GET    /api/films                               the worklist
    GET    /api/films/<film>                        the current report, with its version
    GET    /api/films/<film>/image                  the film as PNG
    PUT    /api/films/<film>/vertebrae/<index>      {keypoints, version, reader}: move points
    POST   /api/films/<film>/vertebrae              {level, keypoints, version, reader}: add
    DELETE /api/films/<film>/vertebrae/<index>?version=v[&reader=NAME]: delete
    PUT    /api/films/<film>/vertebrae/<index>/grade {grade, reason, version, reader}: override
    POST   /api/films/<film>/accept                 {version, reader}: accept the film
    GET    /api/export/coco                         write the reviewed films as COCO

Every answer is JSON (but the page and the image); an error is ``{"error": message}`` with a 4xx
status, and nothing is written. A version other than the current one is 409.
"""

from pathlib import Path

from flask import Flask, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from .store import ReviewError, ReviewStore

STATIC = Path(__file__).resolve().parent / "static"


def _body():
    body = request.get_json(silent=True)
    if body is None:
        raise ReviewError(400, "body: expected a JSON object (Content-Type: application/json)")
    return body


def create_app(store: ReviewStore) -> Flask:
    """The Flask application serving ``store``; the page and its scripts come from the package."""
    app = Flask(__name__, static_folder=None)
    app.config["JSON_SORT_KEYS"] = False

    @app.errorhandler(ReviewError)
    def review_error(exc: ReviewError):
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code

    @app.get("/")
    def page():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)  # safe_join: nothing outside the package's folder

    @app.get("/api/config")
    def config():
        return jsonify(reader=store.reader, results=str(store.results))

    @app.get("/api/films")
    def films():
        return jsonify(store.worklist())

    @app.get("/api/films/<film>")
    def film_report(film: str):
        return jsonify(store.report(film))

    @app.get("/api/films/<film>/image")
    def film_image(film: str):
        return app.response_class(store.image_png(film), mimetype="image/png")

    @app.put("/api/films/<film>/vertebrae/<int(signed=True):index>")
    def move_points(film: str, index: int):
        return jsonify(store.move_points(film, index, _body()))

    @app.post("/api/films/<film>/vertebrae")
    def add_vertebra(film: str):
        return jsonify(store.add_vertebra(film, _body())), 201

    @app.delete("/api/films/<film>/vertebrae/<int(signed=True):index>")
    def delete_vertebra(film: str, index: int):
        version = request.args.get("version")
        try:
            version = int(version) if version is not None else None
        except ValueError:
            raise ReviewError(400, f"version: expected an integer, got {version!r}") from None
        body = {"version": version, "reader": request.args.get("reader")}
        return jsonify(store.delete_vertebra(film, index, body))

    @app.put("/api/films/<film>/vertebrae/<int(signed=True):index>/grade")
    def override_grade(film: str, index: int):
        return jsonify(store.override_grade(film, index, _body()))

    @app.post("/api/films/<film>/accept")
    def accept(film: str):
        return jsonify(store.accept(film, _body()))

    @app.route("/api/films/<path:film>", methods=["GET", "PUT", "POST", "DELETE"])
    def not_a_film(film: str):
        """A film name with '/' is named as such; an unknown path below a known film is a 404."""
        try:
            store.check_film(film.split("/")[0])
        except ReviewError:
            store.check_film(film)
        raise ReviewError(404, f"no such request: {request.method} {request.path}")

    @app.get("/api/export/coco")
    def export_coco():
        return jsonify(store.export_coco())

    return app
