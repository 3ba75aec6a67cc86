"""detectron2/detrex modeling layer: device-safe DINO, the vertebra ROI head and the XVFA model."""

from .checkpointer import XVFACheckpointer
from .dino import DINO, DINOCriterion, DINOTransformer, DINOTransformerDecoder, DINOTransformerEncoder, cuda_calls_on
from .meta_arch import XVFA, XVFAEnsemble
from .roi_head import VertebraROIHead

__all__ = [
    "DINO",
    "DINOCriterion",
    "DINOTransformer",
    "DINOTransformerDecoder",
    "DINOTransformerEncoder",
    "VertebraROIHead",
    "XVFA",
    "XVFACheckpointer",
    "XVFAEnsemble",
    "cuda_calls_on",
]
