"""A folder of reports as tools/predict.py writes them, for the review application's tests.

Two PNG films and a DICOM film; each report is built by the predictor's own report code from the
films' true points (as a model that found them exactly would give them), and one more film is
predicted by the smoke model with random weights, written by the cohort writer itself.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from synthetic_dicom import write_dicom
from xvfa_ext.gsq import GRADES, MORPHOLOGIES
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed, vertebra_box
from xvfa_ext.uncertainty import COVERAGE_LEVELS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"
FILM_SIZE = (640, 480)


def _instances(vertebrae, height: int, width: int):
    """detectron2 Instances of ``vertebrae`` with every prediction field, the points exact."""
    from detectron2.structures import Boxes, Instances

    n = len(vertebrae)
    kps = torch.tensor(np.stack([v.keypoints for v in vertebrae]), dtype=torch.float32)
    boxes = [vertebra_box(v.keypoints, height, width) for v in vertebrae]
    inst = Instances((height, width))
    inst.pred_boxes = Boxes(torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=torch.float32))
    inst.scores = torch.full((n,), 0.95)
    inst.pred_classes = torch.zeros(n, dtype=torch.long)
    inst.pred_keypoints = torch.cat([kps, torch.ones(n, 6, 1)], -1)
    inst.pred_keypoint_scale = torch.full((n, 6, 2), 2.0)
    inst.pred_keypoint_eps = torch.full((n, 6), 4.0)
    inst.pred_keypoint_eps_levels = torch.full((n, 6, len(COVERAGE_LEVELS)), 4.0)
    grades = torch.tensor([v.grade for v in vertebrae])
    shapes = torch.tensor([v.morphology for v in vertebrae])
    for task, labels, k in (("grade", grades, len(GRADES)), ("morphology", shapes, len(MORPHOLOGIES))):
        p = torch.nn.functional.one_hot(labels, k).float() * 0.8 + 0.2 / k
        for suffix in ("", "_kps", "_img", "_mean"):
            inst.set(f"{task}_probs{suffix}", p)
        inst.set(f"{task}_probs_std", torch.full_like(p, 0.05))
    return inst


def write_review_folder(root: Path) -> dict:
    """Films in ``root/films`` and reports in ``root/results``; returns the paths and the predictor."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    from xvfa_ext.predictor import CohortOptions, VFAPredictor, predict_cohort
    from xvfa_ext.radiograph_io import read_film

    films, results = root / "films", root / "results"
    films.mkdir(parents=True)
    results.mkdir()
    model = instantiate(LazyConfig.load(str(SMOKE)).model)
    DetectionCheckpointer(model, save_dir=str(root)).save("weights")
    predictor = VFAPredictor.from_config(str(SMOKE), [str(root / "weights.pth")],
                                         overrides=["model.score_threshold=0.0", "model.max_vertebrae=13"])
    cfg = SyntheticConfig(height=FILM_SIZE[0], width=FILM_SIZE[1])
    truth = {}
    for name, seed in (("film_a.png", 1), ("film_b.png", 2), ("film_c.dcm", 3)):
        image, vertebrae = generate_image(image_seed(31, seed), cfg)
        if name.endswith(".dcm"):
            write_dicom(films / name, image, spacing=(0.3, 0.25), patient_id="P0003")
        else:
            cv2.imwrite(str(films / name), image)
        film = read_film(films / name)
        report = predictor.report(film, _instances(vertebrae, *image.shape))
        (results / f"{Path(name).stem}.json").write_text(json.dumps(report, indent=1, allow_nan=False))
        truth[Path(name).stem] = vertebrae
    cv2.imwrite(str(films / "film_model.png"), generate_image(image_seed(31, 9), cfg)[0])
    summary = predict_cohort(predictor, [films / "film_model.png"], CohortOptions(output=results))
    assert not summary["failed"], summary
    return {"films": films, "results": results, "truth": truth}
