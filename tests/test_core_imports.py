"""The core stands on torch alone: importing every core module loads neither detectron2 nor detrex."""

import subprocess
import sys

CORE = [
    "xvfa_ext",
    "xvfa_ext.random_forest",
    "xvfa_ext.classification",
    "xvfa_ext.crops",
    "xvfa_ext.files",
    "xvfa_ext.gsq",
    "xvfa_ext.keypoint_head",
    "xvfa_ext.layout",
    "xvfa_ext.learning_curve",
    "xvfa_ext.metrics",
    "xvfa_ext.radiograph_io",
    "xvfa_ext.refine",
    "xvfa_ext.reports",
    "xvfa_ext.rle",
    "xvfa_ext.synthetic",
    "xvfa_ext.synthetic_dataset",
    "xvfa_ext.uncertainty",
    "xvfa_ext.vertebra_head",
]


def test_core_does_not_import_detectron2():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(sorted(m for m, mod in sys.modules.items() if mod is not None and m.split('.')[0] in ('detectron2', 'detrex')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
