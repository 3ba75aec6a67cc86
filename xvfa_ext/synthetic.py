"""Synthetic low-dose lateral spine radiographs with GSQ-labelled vertebrae: the embedded default data.

Each image shows the thirteen vertebrae T4-L4 (or the config's levels) along a kyphotic and lordotic curve. Fractures are made
by reducing heights, and every label is the crisp GSQ (:func:`xvfa_ext.gsq.classify`) of the
noise-free keypoints; the annotated keypoints carry a few pixels of reader noise on top.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch

from .gsq import DEFAULT_THRESHOLDS, classify
from .layout import VERTEBRA_LEVELS

# Grade frequencies (normal, mild, moderate, severe) and fracture shapes (wedge, crush, concave).
# "paper" is the SUPERB cohort (paper suppl. Table 3); "enriched" fractures about 30% of vertebrae.
PREVALENCE_PRESETS = {
    "paper": {"grades": (10962, 260, 269, 114), "shapes": (356, 231, 56)},
    "enriched": {"grades": (70, 10, 12, 8), "shapes": (45, 25, 30)},
}
# Reduction bands sampled for each grade, kept clear of the thresholds by a small margin.
_BANDS = ((0.0, 0.14), (0.205, 0.245), (0.26, 0.39), (0.41, 0.6))
_REFERENCE_HEIGHT = 512  # image height at which the pixel constants below hold


@dataclass
class SyntheticConfig:
    """What one synthetic radiograph looks like; pixel amounts scale with ``height``."""

    height: int = 512
    width: int = 384
    prevalence: str = "paper"
    annotation_noise: float = 1.0  # reader noise (pixels at height 512; about 4 at full resolution)
    imputation_noise: float = 4.0  # error of imputed keypoints (pixels at height 512)
    labelled_fraction: float = 0.25  # 1 + Binomial(12, p) labelled vertebrae per image
    max_rotation: float = 8.0  # degrees
    levels: Tuple[str, ...] = VERTEBRA_LEVELS  # cranial to caudal; the spine's length is shared among them

    def __post_init__(self):
        if self.prevalence not in PREVALENCE_PRESETS:
            raise ValueError(f"prevalence must be one of {sorted(PREVALENCE_PRESETS)}, got {self.prevalence!r}")
        if len(self.levels) < 2:
            raise ValueError(f"a spine needs at least two levels, got {self.levels!r}")
        if self.height < 128 or self.width < 96:
            raise ValueError(f"images must be at least 128x96 pixels, got {self.height}x{self.width}")


@dataclass
class SyntheticVertebra:
    level: str
    keypoints: np.ndarray  # (6, 2) noise-free
    annotated: np.ndarray  # (6, 2) as a reader (or the imputation) placed them
    grade: int
    morphology: int
    imputed: bool


def _normalised(counts) -> np.ndarray:
    p = np.asarray(counts, dtype=float)
    return p / p.sum()


def _heights(rng: np.random.Generator, base: float, grade: int, shape: int) -> Tuple[float, float, float]:
    """Anterior, middle and posterior heights for a target grade and shape (0 wedge, 1 crush, 2 concave)."""
    d = rng.uniform(*_BANDS[grade])
    if grade == 0:
        ha, hm, hp = base * (1 - rng.uniform(0, d, size=3))
        return ha, hm * rng.uniform(1.0, 1.06), hp
    if shape == 2:
        ha, hp = base * (1 - rng.uniform(0, 0.05, size=2))
        return ha, max(ha, hp) * (1 - d), hp
    full, reduced = base, base * (1 - d)
    middle = reduced + (full - reduced) * rng.uniform(0.3, 0.7)
    return (reduced, middle, full) if shape == 0 else (full, middle, reduced)


def _vertebra_keypoints(centre, tangent, anterior, depth, ha, hm, hp) -> np.ndarray:
    post, ant = centre - depth / 2 * anterior, centre + depth / 2 * anterior
    return np.stack(
        [
            post - hp / 2 * tangent,
            centre - hm / 2 * tangent,
            ant - ha / 2 * tangent,
            post + hp / 2 * tangent,
            centre + hm / 2 * tangent,
            ant + ha / 2 * tangent,
        ]
    )


def _spine_curve(rng: np.random.Generator, cfg: SyntheticConfig, facing: float):
    """Dense centreline points and cumulative arc length: thoracic kyphosis, lumbar lordosis."""
    u = np.linspace(0, 1, 800)
    split = rng.uniform(0.58, 0.66)
    kyphosis = rng.uniform(0.04, 0.09) * cfg.width
    lordosis = rng.uniform(0.03, 0.08) * cfg.width
    # Positive offset is posterior; ``facing`` is +1 when anterior points to the image's right.
    offset = np.where(u < split, kyphosis * np.sin(np.pi * u / split), -lordosis * np.sin(np.pi * (u - split) / (1 - split)))
    top, bottom = rng.uniform(0.05, 0.09) * cfg.height, rng.uniform(0.9, 0.95) * cfg.height
    x = cfg.width * rng.uniform(0.45, 0.55) - facing * offset
    y = top + u * (bottom - top)
    points = np.stack([x, y], axis=1)
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    return points, arc


def _spine(rng: np.random.Generator, cfg: SyntheticConfig) -> Tuple[List[SyntheticVertebra], Dict]:
    preset = PREVALENCE_PRESETS[cfg.prevalence]
    facing = rng.choice([-1.0, 1.0])
    points, arc = _spine_curve(rng, cfg, facing)
    growth = 1 + 0.45 * np.linspace(0, 1, len(cfg.levels))  # caudal vertebrae are taller
    disc = rng.uniform(0.22, 0.3)
    unit = arc[-1] / (growth.sum() * (1 + disc))
    grades = rng.choice(4, size=len(cfg.levels), p=_normalised(preset["grades"]))
    shapes = rng.choice(3, size=len(cfg.levels), p=_normalised(preset["shapes"]))
    num_labelled = 1 + rng.binomial(len(cfg.levels) - 1, cfg.labelled_fraction)
    labelled = set(rng.choice(len(cfg.levels), size=num_labelled, replace=False).tolist())
    scale = cfg.height / _REFERENCE_HEIGHT
    vertebrae, bodies, position = [], [], unit * disc / 2
    for i, level in enumerate(cfg.levels):
        height = unit * growth[i]
        s = position + height / 2
        position += height * (1 + disc)
        j = min(np.searchsorted(arc, s), len(arc) - 2)
        centre = points[j]
        tangent = points[j + 1] - points[j]
        tangent /= np.linalg.norm(tangent)
        anterior = facing * np.array([-tangent[1], tangent[0]])
        depth = height * rng.uniform(1.2, 1.4) * (1 + 0.15 * i / len(cfg.levels))
        kps = _vertebra_keypoints(centre, tangent, anterior, depth, *_heights(rng, height, grades[i], shapes[i]))
        imputed = i not in labelled
        noise = (cfg.imputation_noise if imputed else cfg.annotation_noise) * scale
        vertebrae.append(SyntheticVertebra(level, kps, kps + rng.normal(0, noise, size=kps.shape), 0, 0, imputed))
        bodies.append((centre, tangent, anterior, depth, height))
    return vertebrae, {"facing": facing, "bodies": bodies, "unit": unit}


def _rotate(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _endplate(a: np.ndarray, m: np.ndarray, b: np.ndarray, n: int = 12) -> np.ndarray:
    """The quadratic through a, m, b (at 0, 1/2, 1): an endplate bent through its middle keypoint."""
    t = np.linspace(0, 1, n)[:, None]
    return a * (1 - t) * (1 - 2 * t) + m * 4 * t * (1 - t) + b * t * (2 * t - 1)


def _outline(kps: np.ndarray) -> np.ndarray:
    upper = _endplate(kps[0], kps[1], kps[2])
    lower = _endplate(kps[5], kps[4], kps[3])
    return np.concatenate([upper, lower])


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return field / (field.std() + 1e-6)


def _render(rng: np.random.Generator, cfg: SyntheticConfig, vertebrae, info, matrix) -> np.ndarray:
    h, w, scale = cfg.height, cfg.width, cfg.height / _REFERENCE_HEIGHT
    img = 0.22 + 0.06 * _smooth_noise(rng, (h, w), 40 * scale)  # soft tissue
    unit = info["unit"]

    def poly(points, value, thickness=None):
        pts = np.round(_rotate(points, matrix) * 16).astype(np.int32)[None]
        if thickness is None:
            cv2.fillPoly(img, pts, float(value), lineType=cv2.LINE_AA, shift=4)
        else:
            cv2.polylines(img, pts, True, float(value), max(1, int(round(thickness))), cv2.LINE_AA, shift=4)

    # Lungs behind the thoracic spine (darker), abdomen lower down.
    first, last_thoracic = info["bodies"][0], info["bodies"][8]
    lung_centre = (first[0] + last_thoracic[0]) / 2 + first[2] * unit * rng.uniform(2.5, 3.5)
    lung = cv2.ellipse2Poly(tuple(int(v) for v in lung_centre), (int(unit * 2.2), int(unit * 5)), 0, 0, 360, 10)
    poly(lung.astype(float), 0.12)
    texture = _smooth_noise(rng, (h, w), 1.5 * scale)
    body_mask = np.zeros((h, w), np.float32)
    arch_mask = np.zeros((h, w), np.float32)
    rim_mask = np.zeros((h, w), np.float32)
    for v, (centre, tangent, anterior, depth, height) in zip(vertebrae, info["bodies"]):
        outline = _rotate(_outline(v.keypoints), matrix)
        pts = np.round(outline * 16).astype(np.int32)[None]
        cv2.fillPoly(body_mask, pts, 1.0, lineType=cv2.LINE_AA, shift=4)
        # Pedicle over the body's posterior upper part, as a lateral view projects it, and the arch
        # behind: the overlap tells posterior from anterior even in a tight crop of the body.
        root = centre - anterior * depth * 0.3
        pedicle = np.stack([root - tangent * height * 0.4, root + tangent * height * 0.05])
        arch = pedicle - anterior * depth * rng.uniform(0.5, 0.6)
        spinous = arch[1] - anterior * depth * rng.uniform(0.3, 0.5) + tangent * height * 0.5
        element = np.round(_rotate(np.stack([pedicle[0], pedicle[1], arch[1], spinous, arch[0]]), matrix) * 16)
        cv2.fillPoly(arch_mask, element.astype(np.int32)[None], 1.0, lineType=cv2.LINE_AA, shift=4)
        cv2.polylines(rim_mask, pts, True, 1.0, max(1, int(round(2.5 * scale))), cv2.LINE_AA, shift=4)
    bone = rng.uniform(0.18, 0.3)
    img += (body_mask + 0.7 * arch_mask) * (bone + 0.04 * texture) + rim_mask * rng.uniform(0.12, 0.2)
    # Ribs crossing the thoracic spine, then clutter: wires, gas, an outline of the skin.
    for k in range(int(rng.integers(5, 9))):
        centre, tangent, anterior, _, _ = info["bodies"][min(8, k + int(rng.integers(0, 3)))]
        start = centre - anterior * unit * rng.uniform(2.0, 3.0) - tangent * unit * rng.uniform(-1, 1)
        end = centre + anterior * unit * rng.uniform(2.0, 4.0) + tangent * unit * rng.uniform(0.5, 2.0)
        mid = (start + end) / 2 + tangent * unit * rng.uniform(-0.8, 0.8)
        poly(_endplate(start, mid, end, 20), 0.3 + 0.1 * rng.random(), thickness=rng.uniform(3, 6) * scale)
    for _ in range(int(rng.integers(0, 4))):
        a, b = rng.uniform([0, 0], [w, h]), rng.uniform([0, 0], [w, h])
        cv2.line(img, tuple(int(x) for x in a), tuple(int(x) for x in b), float(rng.uniform(0.4, 0.9)), max(1, int(2 * scale)))
    for _ in range(int(rng.integers(1, 4))):
        c = info["bodies"][int(rng.integers(9, 13))][0] + info["bodies"][0][2] * unit * rng.uniform(2, 4)
        axes = (int(unit * rng.uniform(0.5, 1.5)), int(unit * rng.uniform(0.3, 1.0)))
        cv2.ellipse(img, tuple(int(x) for x in c), axes, float(rng.uniform(0, 180)), 0, 360, 0.08, -1, cv2.LINE_AA)

    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.3) * scale)
    gamma = rng.uniform(0.7, 1.4)
    img = np.clip(img, 0, 1) ** gamma
    # Low dose: Poisson counts of the transmitted photons, then detector noise.
    dose = rng.uniform(30, 150)
    counts = rng.poisson((1.05 - img) * dose)
    img = 1.05 - counts / dose + rng.normal(0, rng.uniform(0.01, 0.04), img.shape)
    low, high = np.percentile(img, [rng.uniform(0.5, 3), rng.uniform(97, 99.5)])
    img = (img - low) / max(high - low, 1e-3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def generate_image(rng: np.random.Generator, cfg: Optional[SyntheticConfig] = None) -> Tuple[np.ndarray, List[SyntheticVertebra]]:
    """One radiograph (uint8, H x W) and its thirteen vertebrae, labelled by crisp GSQ."""
    cfg = cfg or SyntheticConfig()
    vertebrae, info = _spine(rng, cfg)
    angle = rng.uniform(-cfg.max_rotation, cfg.max_rotation)
    matrix = cv2.getRotationMatrix2D((cfg.width / 2, cfg.height / 2), angle, 1.0)
    image = _render(rng, cfg, vertebrae, info, matrix)
    for v in vertebrae:
        v.keypoints = _rotate(v.keypoints, matrix)
        v.annotated = _rotate(v.annotated, matrix)
    grades, morphologies = classify(np.stack([v.keypoints for v in vertebrae]), DEFAULT_THRESHOLDS)
    for v, g, m in zip(vertebrae, grades.tolist(), morphologies.tolist()):
        v.grade, v.morphology = g, m
    return image, vertebrae


def vertebra_box(keypoints: np.ndarray, height: int, width: int, margin=0.1) -> List[float]:
    """XYWH box around a vertebra's keypoints, padded by ``margin`` of its size (a number, or (2,) per
    axis) and clipped to the image."""
    lo, hi = keypoints.min(0), keypoints.max(0)
    pad = (hi - lo) * margin
    lo = np.maximum(lo - pad, 0)
    hi = np.minimum(hi + pad, [width, height])
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def image_seed(seed: int, index: int) -> np.random.Generator:
    """Each image has its own stream, so any image can be made again alone."""
    return np.random.default_rng([seed, index])



def synthetic_vertebrae(seed: int, num_images: int, cfg: Optional[SyntheticConfig] = None) -> Dict[str, torch.Tensor]:
    """Images and their vertebrae as tensors, for training and timing a head without a detector.

    Returns ``images`` (B, 1, H, W) in [0, 1], and per vertebra ``boxes`` (N, 4, XYXY), annotated
    ``keypoints`` (N, 6, 2), ``image_index``, ``grade``, ``morphology`` and ``imputed`` (N,).
    """
    cfg = cfg or SyntheticConfig()
    images, rows = [], []
    for i in range(num_images):
        image, vertebrae = generate_image(image_seed(seed, i), cfg)
        images.append(torch.from_numpy(image)[None].float() / 255)
        for v in vertebrae:
            x, y, w, h = vertebra_box(v.annotated, cfg.height, cfg.width)
            rows.append(([x, y, x + w, y + h], v.annotated, i, v.grade, v.morphology, v.imputed))
    boxes, kps, index, grade, morphology, imputed = zip(*rows)
    return {
        "images": torch.stack(images),
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "keypoints": torch.tensor(np.array(kps), dtype=torch.float32),
        "image_index": torch.tensor(index),
        "grade": torch.tensor(grade),
        "morphology": torch.tensor(morphology),
        "imputed": torch.tensor(imputed),
    }
