#!/usr/bin/env python3
"""Predict vertebrae, keypoints with intervals and GSQ fractures on radiographs, with reports.

    python tools/predict.py --config-file configs/xvfa_dino_r50.py --weights model_final.pth \\
        --input scans/ more/*.dcm one.png --output results/ [KEY=VALUE ...]

Inputs are files, folders or globs of PNG, JPEG, TIFF and DICOM. Per image: an annotated PNG and a
JSON report; over all inputs: vertebrae.csv with one row per vertebra. An input that cannot be read
is named in the log and skipped; the exit status is then 1. Trailing KEY=VALUE pairs override the
config, e.g. model.score_threshold=0.5.

Several ``--weights`` (for example the five fold models of ``tools/cross_validate.py``) predict as
an ensemble: the first model's detector finds the vertebrae, every model places their keypoints, and
each vertebra reports the models' mean keypoints and probabilities. Beside each keypoint's interval
``eps_px`` (the models' mean RLE interval: aleatoric) it reports ``epistemic_px``, the spread of the
models' keypoints (root-mean-square distance from their mean), and beside the probabilities
``members_std``; the drawing adds the spread as a dashed circle.

``--boxes FILE`` gives the vertebra boxes instead of the detector (a fine-stage-only model then
works too): a COCO file (``images`` by ``file_name``, ``annotations`` with XYWH ``bbox``) or a CSV
with the header ``image,x,y,width,height``; levels are then assigned as for detected boxes. Images
are matched by file name; an input without boxes there fails like an unreadable one.
"""

import argparse
import csv
import glob
import io
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from xvfa_ext.checkpoints import split_weights
from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from tqdm import tqdm  # noqa: E402

from xvfa_ext.data import dataset_levels, register_from_config  # noqa: E402
from xvfa_ext.layout import VERTEBRA_LEVELS  # noqa: E402
from xvfa_ext.modeling import XVFACheckpointer, XVFAEnsemble  # noqa: E402
from xvfa_ext.radiograph_io import DICOM_SUFFIXES, IMAGE_SUFFIXES, read_radiograph  # noqa: E402
from xvfa_ext.records import vertebra_records  # noqa: E402
from xvfa_ext.reports import CSV_FIELDS, csv_row, patient_summary  # noqa: E402
from xvfa_ext.files import write_atomic  # noqa: E402
from xvfa_ext.layout import levels_by_position  # noqa: E402
from xvfa_ext.visualizer import VertebraVisualizer  # noqa: E402

logger = logging.getLogger("xvfa_ext.predict")


def collect_inputs(patterns):
    """Files named, found in folders (PNG, JPEG, TIFF, DICOM) or matched by globs; unmatched names too."""
    files, missing = [], []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            suffixes = IMAGE_SUFFIXES | DICOM_SUFFIXES
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            files.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            files += matches
            if not matches:
                missing.append(pattern)
    unique = list(dict.fromkeys(files))
    return unique, missing


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


class Predictor:
    """Builds the model from a config and weights and runs it on one grayscale radiograph.

    With ``given_boxes`` the detector is not used: the fine stage runs on the boxes passed in.
    """

    def __init__(self, config_file: str, weights: Sequence[str], overrides, given_boxes: bool = False):
        cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), overrides)
        register_from_config(cfg)
        models = []
        for path in weights:
            model = instantiate(cfg.model).to(cfg.train.device).eval()
            if given_boxes:
                model.detector = None
            elif model.detector is None:
                raise ValueError(f"{config_file}: the model has no detector; give the boxes with --boxes FILE")
            XVFACheckpointer(model).load(path)  # an XVFA checkpoint, or one line naming the file
            models.append(model)
        # Several weights (say the fold models): the first one's detector, every one's fine stage.
        self.model = models[0] if len(models) == 1 else XVFAEnsemble(models).eval()
        self.mapper = instantiate(cfg.dataloader.test.mapper)
        self.metadata = MetadataCatalog.get(cfg.dataloader.test.dataset.names)
        dataset_levels(self.metadata.name)  # the levels that found vertebrae are anchored to

    def __call__(self, gray: np.ndarray, boxes: Optional[List[List[float]]] = None):
        """``boxes``: XYXY in the radiograph's pixels, for a model without a detector."""
        inputs, _ = self.mapper.map_image(np.repeat(gray[:, :, None], 3, axis=2))
        if boxes is not None:
            size = tuple(inputs["image"].shape[1:])
            factor = torch.tensor([size[1] / gray.shape[1], size[0] / gray.shape[0]] * 2)
            inputs["instances"] = Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32) * factor))
        with torch.no_grad():
            out = self.model([dict(inputs, height=gray.shape[0], width=gray.shape[1])])
        return out[0]["instances"].to("cpu")


def _report(path: Path, instances, spacing, patient_id, image_height, metadata) -> Dict:
    """The JSON report of one radiograph: its vertebrae's records, cranial to caudal, and the patient summary."""
    boxes = instances.pred_boxes.tensor.numpy()
    order = np.argsort((boxes[:, 1] + boxes[:, 3]) / 2, kind="stable")  # cranial to caudal, as levels are given
    instances = instances[torch.as_tensor(order, dtype=torch.long)]
    levels, certain = levels_by_position(instances.pred_boxes.tensor.numpy(), image_height, metadata)
    names = metadata.get("levels", None) or VERTEBRA_LEVELS
    vertebrae = vertebra_records(instances, levels, certain, spacing)
    return {
        "image": str(path),
        "patient_id": patient_id or path.stem,
        "pixel_spacing_mm": list(spacing) if spacing else None,
        "levels": (
            f"cranial to caudal, anchored to the dataset's levels {names[0]}-{names[-1]} by their usual position; "
            "level_certain is false where the fit is off by a quarter level or more" if names else None
        ),
        "grades": "grade, morphology and shape: eq. 7's combined probabilities; gsq_grade, gsq_morphology and "
                  "gsq_shape: crisp GSQ of the keypoints, which the explanation describes",
        "vertebrae": vertebrae,
        "patient": patient_summary(vertebrae),
    }


def _unique_stem(path: Path, used: set) -> str:
    stem, k = path.stem, 1
    while stem in used:
        k += 1
        stem = f"{path.stem}_{k}"
    used.add(stem)
    return stem


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", nargs="+", required=True,
                        help="a checkpoint written by tools/train_net.py, or several (an ensemble, e.g. the fold models)")
    parser.add_argument("--input", nargs="+", required=True, help="files, folders or globs")
    parser.add_argument("--output", required=True, help="folder for the PNGs, JSON reports and vertebrae.csv")
    parser.add_argument("--scale", type=float, default=2.0, help="size of the annotated PNGs relative to the input")
    parser.add_argument("--boxes", type=Path, help="vertebra boxes to use instead of the detector (COCO JSON or CSV)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides")
    args = parser.parse_args(argv)
    args.weights, args.opts = split_weights(args.weights, args.opts)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    files, missing = collect_inputs(args.input)
    if not files:
        parser.exit(2, f"predict.py: no radiograph (PNG, JPEG, TIFF or DICOM) in {', '.join(args.input)}\n")
    failed = [f"{m}: no such file, folder or match" for m in missing]
    for message in failed:
        logger.error(message)
    given = None
    if args.boxes is not None:
        try:
            given = read_boxes(args.boxes)
        except ValueError as exc:
            parser.exit(2, f"predict.py: {exc}\n")
    try:
        predictor = Predictor(args.config_file, args.weights, args.opts, given_boxes=given is not None)
    except ValueError as exc:
        parser.exit(2, f"predict.py: {exc}\n")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for path in tqdm(files, desc="radiographs", unit="img"):
        try:
            gray, spacing, patient_id = read_radiograph(path)
        except ValueError as exc:
            logger.error(f"skipped {exc}")
            failed.append(str(exc))
            continue
        boxes = None
        if given is not None:
            if path.name not in given:
                logger.error(f"skipped {path}: no boxes for it in {args.boxes}")
                failed.append(f"{path}: no boxes for it in {args.boxes}")
                continue
            boxes = given[path.name]
        report = _report(path, predictor(gray, boxes), spacing, patient_id, gray.shape[0], predictor.metadata)
        report["weights"] = args.weights
        stem = _unique_stem(path, used)
        vis = VertebraVisualizer(np.repeat(gray[:, :, None], 3, 2), predictor.metadata, scale=args.scale)
        ok, png = cv2.imencode(".png", vis.draw_predictions(report["vertebrae"]).get_image()[:, :, ::-1])
        write_atomic(out / f"{stem}.png", png.tobytes())
        write_atomic(out / f"{stem}.json", json.dumps(report, indent=1, allow_nan=False).encode())
        rows += [csv_row(str(path), v) for v in report["vertebrae"]]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "vertebrae.csv", table.getvalue().encode())
    done = len(files) - (len(failed) - len(missing))
    logger.info(f"{done} of {len(files) + len(missing)} inputs predicted into {out}; {len(failed)} failed")
    for message in failed:
        logger.error(f"failed: {message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
