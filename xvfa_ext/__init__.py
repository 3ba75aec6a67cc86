"""Explainable vertebral fracture assessment (XVFA): GSQ rules, keypoint density and screening."""

import importlib

__version__ = "0.1.0"

# Imported when first used, so that a program that needs none of them (the review application's
# start) does not pay for torch.
_EXPORTS = {"GRADES": "layout", "MORPHOLOGIES": "layout", "KEYPOINT_NAMES": "layout", "classify_keypoints": "reports"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
