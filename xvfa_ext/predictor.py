"""Prediction on new films: a model file (or a config and weights) to one report per film.

    predictor = VFAPredictor.from_file("model.xvfa")
    reports = predictor.predict(["scan1.dcm", "scan2.png"])

:func:`predict_cohort` runs a predictor over a cohort: films read by a DataLoader with workers,
batches of films through the model, the input list sharded over the processes of detectron2's
``launch``, reports written film by film (JSON, drawing, ``vertebrae.csv`` rows, and optionally a
DICOM SR and Secondary Capture), failures named and counted, and ``resume`` skipping films already
reported by the same model. ``tools/predict.py`` is the command line around it.
"""

import csv
import fcntl
import io
import json
import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from tqdm import tqdm

from .bundle import BundleError, make_bundle, operating_points, read_bundle
from .data import dataset_levels, register_from_config
from .data.catalog import vertebra_metadata
from .files import read_json, write_atomic
from .gsq import GRADES
from .layout import levels_by_position
from .modeling import as_one_model, load_trained_models
from .radiograph_io import Film, read_film
from .records import vertebra_records
from .patient import SCREENING_GRADE, patient_summary
from .reports import CSV_FIELDS, csv_row, screening_rule, vertebra_positive

logger = logging.getLogger(__name__)

BoxesByFilm = Dict[str, List[List[float]]]


def config_to_yaml(cfg) -> str:
    """A LazyConfig as the YAML text that ``LazyConfig.save`` writes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        LazyConfig.save(cfg, str(path))
        return path.read_text()


def config_from_yaml(text: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        return LazyConfig.load(str(path))


def bundle_from_training(config_file: str, weights: Sequence[str], overrides: Sequence[str] = (), metrics_file=None) -> Dict:
    """A model bundle (:func:`xvfa_ext.bundle.make_bundle`) from a training config and its checkpoints.

    The config's datasets are registered to read the training data's levels, view and vertebra size;
    each checkpoint is loaded into the config's model (one line naming a file that is not one), and
    ``metrics_file`` (a ``vfa_metrics.json``) gives the operating points.
    """
    cfg = LazyConfig.apply_overrides(LazyConfig.load(str(config_file)), list(overrides))
    register_from_config(cfg)
    names = cfg.dataloader.train.dataset.names
    name = names if isinstance(names, str) else list(names)[0]
    levels, positions = dataset_levels(name)
    view = MetadataCatalog.get(name).get("view", "lateral")
    height = cfg.get("dataset", {}).get("vertebra_height", None)
    states = [model.state_dict() for model in load_trained_models(lambda: instantiate(cfg.model), weights)]
    # New films need no dataset: the scale is the training data's, the flip map the view's.
    cfg.dataloader.test.mapper.dataset_names = None
    cfg.dataloader.test.mapper.vertebra_height = height
    points = operating_points(read_json(metrics_file), str(metrics_file)) if metrics_file else None
    return make_bundle(
        config_to_yaml(cfg), states, levels, positions, view, height, points,
        sources={"config": str(config_file), "weights": [str(w) for w in weights],
                 "metrics": str(metrics_file) if metrics_file else None},
    )


@dataclass
class FilmItem:
    """A film as the DataLoader gives it: read and mapped, or the reason it could not be."""

    index: int
    path: Path
    film: Optional[Film] = None
    inputs: Optional[Dict] = None
    error: Optional[str] = None


class FilmDataset(torch.utils.data.Dataset):
    """Films read (:func:`~xvfa_ext.radiograph_io.read_film`) and mapped to model inputs in the
    DataLoader's workers; a film that fails is an item with its ``error``, never an exception."""

    def __init__(self, paths: Sequence[Path], indices: Sequence[int], mapper, boxes: Optional[BoxesByFilm] = None, boxes_file=None):
        self.paths, self.indices, self.mapper = list(paths), list(indices), mapper
        self.boxes, self.boxes_file = boxes, boxes_file

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> FilmItem:
        path = Path(self.paths[k])
        item = FilmItem(self.indices[k], path)
        try:
            if self.boxes is not None and path.name not in self.boxes:
                raise ValueError(f"{path}: no boxes for it in {self.boxes_file}")
            item.film = read_film(path)
            item.inputs = map_film(self.mapper, item.film, self.boxes[path.name] if self.boxes is not None else None)
        except Exception as exc:  # noqa: BLE001 - a film's failure is reported, the cohort goes on
            item.error = str(exc) if str(path) in str(exc) else f"{path}: {type(exc).__name__}: {exc}"
        return item


def read_boxes(path: Path) -> Dict[str, List[List[float]]]:
    """XYXY boxes by image file name; errors name the file and the line or annotation id."""
    def box(x, y, w, h, where):
        values = [float(v) for v in (x, y, w, h)]
        if not np.isfinite(values).all() or values[2] <= 0 or values[3] <= 0:
            raise ValueError(f"{where}: box {values} is not a box of positive size")
        return [values[0], values[1], values[0] + values[2], values[1] + values[3]]

    out: Dict[str, List] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the boxes ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            coco = json.loads(text)
            names = {img["id"]: Path(img["file_name"]).name for img in coco["images"]}
            anns = coco["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a COCO file with images and annotations ({exc})") from None
        for a in anns:
            where = f"{path}: annotation {a.get('id')}"
            if a.get("image_id") not in names:
                raise ValueError(f"{where}: image {a.get('image_id')} is not among the file's images")
            try:
                xyxy = box(*a["bbox"][:4], where)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(str(exc) if str(exc).startswith(where) else f"{where}: no valid bbox") from None
            out.setdefault(names[a["image_id"]], []).append(xyxy)
        return out
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    reader = csv.DictReader(lines[first:] if first is not None else [])
    need = {"image", "x", "y", "width", "height"}
    if first is None or not need <= set(reader.fieldnames or []):
        raise ValueError(f"{path}: expected a CSV with the header image,x,y,width,height")
    for k, row in enumerate(reader):
        where = f"{path}, line {first + 2 + k}"
        try:
            xyxy = box(row["x"], row["y"], row["width"], row["height"], where)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc) if str(exc).startswith(where) else f"{where}: a box value is not a number") from None
        out.setdefault(Path(row["image"]).name, []).append(xyxy)
    return out


def map_film(mapper, film: Film, boxes: Optional[List[List[float]]] = None) -> Dict:
    """The model input of one film; ``boxes`` (XYXY in the film's pixels) replace the detector."""
    gray = film.image
    inputs, _ = mapper.map_image(gray)
    inputs.update(height=gray.shape[0], width=gray.shape[1])
    if boxes is not None:
        size = tuple(inputs["image"].shape[1:])
        factor = torch.tensor([size[1] / gray.shape[1], size[0] / gray.shape[0]] * 2)
        inputs["instances"] = Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) * factor))
    return inputs


class VFAPredictor:
    """A trained model on new films: detector (or given boxes), keypoints, GSQ and probabilities, and
    one report per film.

    Args:
        bundle: a model bundle (:func:`xvfa_ext.bundle.read_bundle`, :func:`bundle_from_training`).
        given_boxes: the fine stage runs on boxes passed to :meth:`predict`; the detector is not used.
        threshold: how ``screening_positive`` is decided (:func:`xvfa_ext.reports.screening_rule`).
        device: where the model runs; by default CUDA where available.
        overrides: KEY=VALUE config overrides (for example ``model.score_threshold=0.5``).
        source: what errors name: the model file, or the config.
    """

    def __init__(self, bundle: Dict, given_boxes: bool = False, threshold="grade", device=None, overrides: Sequence[str] = (),
                 source: str = "the model"):
        cfg = LazyConfig.apply_overrides(config_from_yaml(bundle["config"]), list(overrides))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg.train.device = device
        if cfg.model.get("detector") is not None:
            cfg.model.detector.device = device
        self.bundle = {k: v for k, v in bundle.items() if k != "weights"}
        self.bundle["members"] = len(bundle["weights"])
        self.hash = bundle["hash"]
        self.rule = screening_rule(threshold, bundle["operating_points"])
        models = []
        for state in bundle["weights"]:
            model = instantiate(cfg.model)
            if given_boxes:
                model.detector = None
                state = {k: v for k, v in state.items() if not k.startswith("detector.")}
            elif model.detector is None:
                raise ValueError(f"{source}: the model has no detector; give the boxes with --boxes FILE")
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise BundleError(f"the model's weights do not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
            models.append(model.to(device).eval())
        # Several weights (an ensemble): the first one's detector, every one's fine stage.
        self.model = as_one_model(models).eval()
        self.given_boxes = given_boxes
        cfg.dataloader.test.mapper.dataset_names = None
        cfg.dataloader.test.mapper.vertebra_height = bundle["vertebra_height"]
        self.mapper = instantiate(cfg.dataloader.test.mapper)
        self.metadata = Metadata(
            name=f"xvfa_model_{self.hash[:12]}",
            levels=list(bundle["levels"]),
            level_positions=dict(bundle["level_positions"]) or None,
            **vertebra_metadata(bundle["view"]),
        )

    @classmethod
    def from_file(cls, path, **kwargs) -> "VFAPredictor":
        """The predictor of a model file written by ``tools/export_model.py``."""
        predictor = cls(read_bundle(path), source=str(path), **kwargs)
        predictor.bundle["file"] = str(path)
        return predictor

    @classmethod
    def from_config(cls, config_file: str, weights: Sequence[str], overrides: Sequence[str] = (), **kwargs) -> "VFAPredictor":
        """The predictor of a training config and its checkpoints (their datasets are registered)."""
        return cls(bundle_from_training(config_file, weights, overrides), overrides=(), source=str(config_file), **kwargs)

    @torch.no_grad()
    def run(self, inputs: List[Dict]) -> List[Instances]:
        """The model on a batch of mapped films (:func:`map_film`); per film its vertebrae, on CPU."""
        return [out["instances"].to("cpu") for out in self.model(inputs)]

    def report(self, film: Film, instances: Instances) -> Dict:
        """The JSON report of one film: its vertebrae's records cranial to caudal, and the patient summary."""
        boxes = instances.pred_boxes.tensor.numpy()
        order = np.argsort((boxes[:, 1] + boxes[:, 3]) / 2, kind="stable")  # cranial to caudal, as levels are given
        instances = instances[torch.as_tensor(order, dtype=torch.long)]
        levels, certain = levels_by_position(instances.pred_boxes.tensor.numpy(), film.image.shape[0], self.metadata)
        names = self.metadata.levels
        vertebrae = vertebra_records(instances, levels, certain, film.pixel_spacing)
        for v in vertebrae:
            v["screening_positive"] = vertebra_positive(v, self.rule)
        return {
            "image": str(film.path),
            "patient_id": film.patient_id or film.path.stem,
            **film.uids,
            "image_size": list(film.image.shape[:2]),
            "pixel_spacing_mm": list(film.pixel_spacing) if film.pixel_spacing else None,
            "model": {"hash": self.hash, "file": self.bundle.get("file"), "versions": self.bundle["versions"],
                      "weights": self.bundle["sources"].get("weights")},
            "screening": self.rule,
            "levels": (
                f"cranial to caudal, aligned to the dataset's levels {names[0]}-{names[-1]} by their usual positions and "
                "spacing (a box that fits none has no level); level_certain is false where another level fits nearly "
                "as well" if names else None
            ),
            "grades": "grade, morphology and shape: eq. 7's combined probabilities; gsq_grade, gsq_morphology and "
                      "gsq_shape: crisp GSQ of the keypoints, which the explanation describes",
            "vertebrae": vertebrae,
            "patient": patient_summary(vertebrae, self.rule),
        }

    def predict(self, films: Sequence[Union[str, Path, np.ndarray, Film]], boxes: Optional[Sequence] = None) -> List[Dict]:
        """One report per film: paths (PNG, JPEG, TIFF, DICOM), grayscale arrays (H, W) or :class:`Film`s.

        ``boxes``: per film a list of XYXY boxes in its pixels, for a predictor with ``given_boxes``.
        """
        if self.given_boxes and (boxes is None or len(boxes) != len(films)):
            raise ValueError("this predictor runs on given boxes: pass one list of boxes per film")
        read = []
        for k, f in enumerate(films):
            if isinstance(f, Film):
                read.append(f)
            elif isinstance(f, np.ndarray):
                if f.ndim != 2 or f.dtype != np.uint8:
                    raise ValueError(f"film {k}: expected a 2D uint8 grayscale array, got {f.dtype} {f.shape}")
                read.append(Film(Path(f"film_{k}"), f))
            else:
                read.append(read_film(f))
        inputs = [map_film(self.mapper, f, boxes[k] if self.given_boxes else None) for k, f in enumerate(read)]
        return [self.report(f, inst) for f, inst in zip(read, self.run(inputs))]

    def draw(self, film: Film, report: Dict, scale: Optional[float] = None) -> np.ndarray:
        """The film with its vertebrae drawn (:class:`~xvfa_ext.visualizer.VertebraVisualizer`), BGR;
        ``scale`` relative to the film, by default :func:`~xvfa_ext.visualizer.drawing_scale`."""
        from .visualizer import draw_report

        return draw_report(film.image, report["vertebrae"], scale)


def unique_stems(paths: Sequence[Path]) -> List[str]:
    """An output name per film: its stem, numbered where two films share one."""
    used, stems = set(), []
    for path in paths:
        stem, k = Path(path).stem, 1
        while stem in used:
            k += 1
            stem = f"{Path(path).stem}_{k}"
        used.add(stem)
        stems.append(stem)
    return stems


@dataclass
class CohortOptions:
    """What :func:`predict_cohort` writes and how it reads.

    ``batch_size`` films go through the model at once; ``num_workers`` DataLoader processes read them;
    ``resume`` skips films whose report exists for the same model; ``dicom_out`` adds a DICOM SR and
    a Secondary Capture per film; ``boxes`` (by file name) replace the detector; ``scale`` is the
    drawing's size relative to the film (by default :func:`~xvfa_ext.visualizer.drawing_scale`).
    """

    output: Path
    batch_size: int = 1
    num_workers: int = 0
    scale: Optional[float] = None
    resume: bool = False
    dicom_out: bool = False
    boxes: Optional[BoxesByFilm] = None
    boxes_file: Optional[str] = None
    failures: List[str] = field(default_factory=list)


CSV_NAME = "vertebrae.csv"


def _csv_text(rows: List[Dict], header: bool) -> str:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return table.getvalue()


def _append_rows(path: Path, rows: List[Dict]) -> None:
    """Append one film's rows under a lock (several processes share the file), flushed at once."""
    with open(path, "a", newline="") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(_csv_text(rows, header=False))
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)


def _existing_report(path: Path, model_hash: str) -> Optional[Dict]:
    """The report at ``path`` if it is complete JSON written by the model ``model_hash``."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("model", {}).get("hash") == model_hash else None


def _rows(report: Dict) -> List[Dict]:
    return [csv_row(report["image"], v) for v in report["vertebrae"]]


def study_summaries(reports: Sequence[Dict]) -> List[Dict]:
    """One patient-level summary per study: the films of a DICOM study together (a film without a
    study UID is a study of its own). A level seen on several films counts once, at its worst grade."""
    studies: Dict[str, List[Dict]] = defaultdict(list)
    for r in reports:
        studies[r.get("study_uid") or r["image"]].append(r)
    out = []
    for films in studies.values():
        by_level: Dict[str, int] = {}
        unlevelled = []
        positive = False
        for r in films:
            positive |= bool(r["patient"]["screening_positive"])
            for v in r["vertebrae"]:
                g = GRADES.index(v["grade"])
                if v.get("level"):
                    by_level[v["level"]] = max(by_level.get(v["level"], 0), g)
                else:
                    unlevelled.append(g)
        grades = list(by_level.values()) + unlevelled
        worst = max(grades, default=0)
        out.append({
            "study_uid": films[0].get("study_uid"),
            "patient_id": films[0]["patient_id"],
            "films": [r["image"] for r in films],
            "vertebrae": len(grades),
            "worst_grade": GRADES[worst],
            "moderate_or_severe": sum(g >= SCREENING_GRADE for g in grades),
            "screening_positive": positive,
        })
    return out


def predict_cohort(predictor: VFAPredictor, files: Sequence[Path], options: CohortOptions) -> Dict:
    """Predict every film of ``files`` into ``options.output``, sharded over the processes of the
    current detectron2 ``launch`` (rank r takes films r, r + N, ...).

    Per film: ``<stem>.json`` (the report), ``<stem>.png`` (the drawing), its rows appended to
    ``vertebrae.csv`` and flushed, and with ``dicom_out`` ``<stem>.sr.dcm`` and ``<stem>.sc.dcm``.
    A film that fails, for any reason, is logged with the reason and counted; the others go on. At
    the end, the first process rewrites ``vertebrae.csv`` in input order, writes ``studies.json``
    (one summary per study) and ``summary.json``, and returns the summary: ``films``,
    ``predicted``, ``skipped`` (resumed), ``failed`` (messages).
    """
    out = Path(options.output)
    rank, world = comm.get_rank(), comm.get_world_size()
    stems = unique_stems(files)
    csv_path = out / CSV_NAME
    kept: Dict[int, Dict] = {}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if options.resume:
            kept = {i: r for i, s in enumerate(stems) if (r := _existing_report(out / f"{s}.json", predictor.hash)) is not None}
        write_atomic(csv_path, _csv_text([row for r in kept.values() for row in _rows(r)], header=True).encode())
    # Every process learns which films are reported already (and waits for the CSV's header).
    done = set(comm.all_gather(sorted(kept))[0])
    mine = list(range(rank, len(files), world))
    skipped = [i for i in mine if i in done]
    todo = [i for i in mine if i not in done]
    dataset = FilmDataset([files[i] for i in todo], todo, predictor.mapper, options.boxes, options.boxes_file)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=options.batch_size, num_workers=options.num_workers, collate_fn=list, shuffle=False
    )
    failed: List[str] = []
    predicted = 0
    with tqdm(total=len(todo), desc=f"films (process {rank + 1}/{world})", unit="film", disable=rank != 0 and world > 1) as bar:
        for batch in loader:
            lost = [item.error for item in batch if item.error is not None]
            for item, instances in _run_batch(predictor, [i for i in batch if i.error is None], lost):
                try:
                    _write_film(predictor, item, instances, out / stems[item.index], csv_path, options)
                    predicted += 1
                except Exception as exc:  # noqa: BLE001 - a film's failure is reported, the cohort goes on
                    lost.append(f"{item.path}: {type(exc).__name__}: {exc}")
            for message in lost:
                logger.error(f"skipped {message}")
            failed += lost
            bar.update(len(batch))
    counts = comm.gather({"predicted": predicted, "skipped": len(skipped), "failed": failed}, dst=0)
    comm.synchronize()
    if rank != 0:
        return {}
    reports = [r for s in stems if (r := _existing_report(out / f"{s}.json", predictor.hash)) is not None]
    write_atomic(csv_path, _csv_text([row for r in reports for row in _rows(r)], header=True).encode())
    write_atomic(out / "studies.json", json.dumps(study_summaries(reports), indent=1).encode())
    summary = {
        "films": len(files),
        "predicted": sum(c["predicted"] for c in counts),
        "skipped": sum(c["skipped"] for c in counts),
        "failed": options.failures + [m for c in counts for m in c["failed"]],
        "processes": world,
        "model": predictor.hash,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=1).encode())
    return summary


def _write_film(predictor: VFAPredictor, item: FilmItem, instances: Instances, stem: Path, csv_path: Path, options) -> None:
    """A film's outputs, the report last, so that a report on disk means a finished film."""
    report = predictor.report(item.film, instances)
    ok, png = cv2.imencode(".png", predictor.draw(item.film, report, options.scale))
    if not ok:
        raise ValueError("the drawing could not be encoded as PNG")
    write_atomic(stem.with_name(f"{stem.name}.png"), png.tobytes())
    if options.dicom_out and item.film.uids.get("sop_uid"):  # a PNG has no study to report into
        from .dicom_io import write_dicom_outputs

        write_dicom_outputs(item.film, report, predictor.draw(item.film, report, 1.0), stem)
    # The rows before the report: a film with a report always has its rows (a resumed run rewrites the
    # CSV from the reports, so the rows of a film killed before its report was written go).
    _append_rows(csv_path, _rows(report))
    write_atomic(stem.with_name(f"{stem.name}.json"), json.dumps(report, indent=1, allow_nan=False).encode())


def _run_batch(predictor: VFAPredictor, items: List[FilmItem], failed: List[str]):
    """``(item, instances)`` of every film of the batch that the model ran on; a batch that fails is
    run film by film, so that only the film at fault is lost."""
    if not items:
        return []
    try:
        return list(zip(items, predictor.run([i.inputs for i in items])))
    except Exception as exc:  # noqa: BLE001 - a film's failure is reported, the cohort goes on
        if len(items) == 1:
            failed.append(f"{items[0].path}: {type(exc).__name__}: {exc}")
            return []
        return [r for item in items for r in _run_batch(predictor, [item], failed)]
