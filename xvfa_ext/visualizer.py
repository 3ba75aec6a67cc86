"""detectron2's Visualizer for vertebrae: boxes, keypoints with intervals, heights and GSQ labels."""

from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.utils.visualizer import Visualizer
from matplotlib.patches import Circle, Ellipse

from .gsq import GRADES, INVALID, morphometry, shape_word
from .layout import ENDPLATES, HEIGHTS
from .records import keypoint_array

# Label colours by grade: normal, mild, moderate, severe; grey for an invalid vertebra.
SEVERITY_COLORS = ((0.2, 0.8, 0.2), (1.0, 0.85, 0.1), (1.0, 0.5, 0.0), (0.9, 0.1, 0.1))
INVALID_COLOR = (0.6, 0.6, 0.6)
HEIGHT_COLOR = (0.1, 0.7, 1.0)
EPISTEMIC_COLOR = (0.85, 0.2, 0.85)  # an ensemble's spread between models


def vertebra_label(level: Optional[str], grade: str, shape: str, probability: Optional[float]) -> str:
    """For example 'L1 moderate wedge 0.82'."""
    if grade == "invalid":
        return f"{level or ''} invalid".strip()
    parts = [level or "", grade, shape]
    if probability is not None:
        parts.append(f"{probability:.2f}")
    return " ".join(p for p in parts if p)


class VertebraVisualizer(Visualizer):
    """Draws each vertebra's box, its six keypoints with an uncertainty ellipse, the posterior,
    middle and anterior heights, and a label coloured by severity."""

    def draw_vertebra(
        self,
        keypoints: np.ndarray,
        label: str,
        grade: int,
        box: Optional[Sequence[float]] = None,
        eps: Optional[np.ndarray] = None,
        scale: Optional[np.ndarray] = None,
        epistemic: Optional[np.ndarray] = None,
    ):
        """``eps`` (6,): each keypoint's interval radius, drawn as an ellipse stretched like its
        ``scale`` (6, 2); ``epistemic`` (6,): an ensemble's spread between models, a dashed circle."""
        color = SEVERITY_COLORS[grade] if grade != INVALID else INVALID_COLOR
        kps = np.asarray(keypoints, dtype=float)
        if box is not None:
            self.draw_box(box, edge_color=color, alpha=0.8)
        for i, j in ENDPLATES:
            self.draw_line(kps[[i, j], 0], kps[[i, j], 1], color=color, linewidth=1)
        for i, j in HEIGHTS:
            self.draw_line(kps[[i, j], 0], kps[[i, j], 1], color=HEIGHT_COLOR, linewidth=1.5)
        for k, (x, y) in enumerate(kps):
            if eps is not None:
                # An ellipse of the eps disc's area, stretched like the keypoint's scale.
                stretch = np.sqrt(scale[k] / scale[k][::-1]) if scale is not None else np.ones(2)
                width, height = 2 * eps[k] * stretch
                self.output.ax.add_patch(
                    Ellipse((x, y), width, height, fill=False, edgecolor=color, linewidth=0.6, alpha=0.6)
                )
            if epistemic is not None:
                self.output.ax.add_patch(
                    Circle((x, y), epistemic[k], fill=False, edgecolor=EPISTEMIC_COLOR, linewidth=0.8, linestyle="--")
                )
            self.draw_circle((x, y), color=color, radius=max(1.5, self._default_font_size / 5))
        anterior = kps[[2, 5]].mean(0)
        posterior = kps[[0, 3]].mean(0)
        away = anterior + (anterior - posterior) * 0.6
        self.draw_text(label, tuple(away), color=color, horizontal_alignment="center", font_size=self._default_font_size * 0.8)
        return self.output

    def draw_predictions(self, records: List[Dict]):
        """Every vertebra of :func:`~xvfa_ext.records.vertebra_records`: its grade and shape, and its
        level, marked '?' where uncertain; an ensemble's spread between models too. A reviewed
        record (:func:`~xvfa_ext.regrade.regrade`) is drawn with the reader's grade, without the
        model's probability, and a vertebra the reader added without intervals."""
        for r in records:
            level = r["level"] if r["level"] is None or r.get("level_certain", True) else f"{r['level']}?"
            reviewed = "grade_source" in r
            probability = None if reviewed else r["grade_probabilities"]["combined"][r["grade"]]
            first = next(iter(r["keypoints"].values()))
            self.draw_vertebra(
                keypoint_array(r),
                vertebra_label(level, r["grade"], r["shape"], probability),
                GRADES.index(r["grade"]) if r["grade"] in GRADES else INVALID,
                r.get("box"),
                keypoint_array(r, "eps_px") if "eps_px" in first else None,
                keypoint_array(r, "scale_px") if "scale_px" in first else None,
                keypoint_array(r, "epistemic_px") if "epistemic_px" in first else None,
            )
        return self.output

    def draw_ground_truth(self, record: Dict):
        """A dataset dict's vertebrae with their annotated grade and morphology."""
        from detectron2.structures import BoxMode

        for ann in record.get("annotations", []):
            kps = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)[:, :2]
            box = BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
            tag = " (imputed)" if ann.get("imputed") else ""
            grade, morphology = int(ann["grade"]), int(ann["morphology"])
            m = morphometry(kps)
            shape = shape_word(morphology, float(m["ha"]), float(m["hp"]))
            label = vertebra_label(ann.get("level"), GRADES[grade] if grade != INVALID else "invalid", shape, None) + tag
            self.draw_vertebra(kps, label, grade, box)
        return self.output


DRAWING_LONG_SIDE = 1200


def drawing_scale(image_shape, long_side: int = DRAWING_LONG_SIDE) -> float:
    """The drawing's size relative to a film: its long side ``long_side`` pixels, at most twice the film's."""
    return min(2.0, long_side / max(image_shape[:2]))


def draw_report(gray: np.ndarray, vertebrae: List[Dict], scale: Optional[float] = None) -> np.ndarray:
    """A film (H, W) uint8 with a report's vertebrae drawn by :class:`VertebraVisualizer`, as BGR,
    ``scale`` times the film's size (by default :func:`drawing_scale`)."""
    scale = drawing_scale(gray.shape) if scale is None else scale
    vis = VertebraVisualizer(np.repeat(gray[:, :, None], 3, 2), None, scale=scale)
    return np.ascontiguousarray(vis.draw_predictions(vertebrae).get_image()[:, :, ::-1])
