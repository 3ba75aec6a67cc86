"""Explainable vertebral fracture assessment (XVFA): GSQ rules, keypoint density and screening."""

from .gsq import GRADES, MORPHOLOGIES
from .layout import KEYPOINT_NAMES

__all__ = ["GRADES", "KEYPOINT_NAMES", "MORPHOLOGIES"]
