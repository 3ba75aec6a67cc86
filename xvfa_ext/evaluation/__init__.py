"""detectron2 evaluation layer: COCO boxes and keypoints with vertebra OKS sigmas, and screening."""

from typing import List, Optional, Sequence

from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator

from ..layout import NUM_KEYPOINTS
from .image_grade_evaluator import ImageGradeEvaluator
from .vfa_evaluator import VFAEvaluator

# COCO's sigma is a keypoint's reader deviation over the object's scale (sqrt of its area). Readers
# deviate about 4.5 px (paper section 3.5) on vertebrae about 90 px across at full resolution:
# 4.5 / 90 = 0.05. No per-keypoint re-reads exist to tell corners from middle points, so one value.
VERTEBRA_OKS_SIGMAS = (0.05,) * NUM_KEYPOINTS


def build_evaluators(
    dataset_name: str,
    output_dir: Optional[str] = None,
    alpha: float = 0.9,
    tasks: Sequence[str] = ("bbox", "keypoints"),
    level_dataset: Optional[str] = None,
) -> List[DatasetEvaluator]:
    """COCO AP of ``tasks`` (box and keypoint; a detector of grades has boxes only) plus the screening
    metrics, for a registered vertebra dataset; found vertebrae get the levels of ``level_dataset``
    (the training data; by default the evaluated one)."""
    DatasetCatalog.get(dataset_name)  # a synthetic dataset is written now, before COCO reads its file
    return [
        COCOEvaluator(dataset_name, tasks=tuple(tasks), output_dir=output_dir, kpt_oks_sigmas=VERTEBRA_OKS_SIGMAS),
        VFAEvaluator(dataset_name, output_dir=output_dir, alpha=alpha, level_dataset=level_dataset),
    ]


__all__ = ["ImageGradeEvaluator", "VERTEBRA_OKS_SIGMAS", "VFAEvaluator", "build_evaluators"]
