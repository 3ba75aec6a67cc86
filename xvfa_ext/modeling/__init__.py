"""detectron2/detrex modeling layer: device-safe DINO, the vertebra ROI head, the XVFA model and Table 2's baselines."""

from .baselines import DINOGrade, GradeDINO, ImageGradeCNN
from .checkpointer import XVFACheckpointer, fetch_weights
from .dino import DINO, DINOCriterion, DINOTransformer, DINOTransformerDecoder, DINOTransformerEncoder, cuda_calls_on
from .meta_arch import XVFA, XVFAEnsemble, as_one_model, load_trained_models
from .roi_head import VertebraROIHead

__all__ = [
    "DINO",
    "DINOCriterion",
    "DINOGrade",
    "DINOTransformer",
    "DINOTransformerDecoder",
    "DINOTransformerEncoder",
    "GradeDINO",
    "ImageGradeCNN",
    "VertebraROIHead",
    "XVFA",
    "XVFACheckpointer",
    "XVFAEnsemble",
    "as_one_model",
    "cuda_calls_on",
    "fetch_weights",
    "load_trained_models",
]
