"""Explainable vertebral fracture assessment (XVFA): GSQ rules, keypoint density and screening."""

__version__ = "0.1.0"

from .gsq import GRADES, MORPHOLOGIES
from .layout import KEYPOINT_NAMES
from .reports import classify_keypoints

__all__ = ["GRADES", "KEYPOINT_NAMES", "MORPHOLOGIES", "classify_keypoints"]
