"""Reading XVFA checkpoints with a clear error for any other file (torch only)."""

import pickle
from pathlib import Path
from typing import Dict, List, Tuple

import torch

PARTS = {"detector": "detector.", "fine": "roi_head."}


_HINT = "give a model_*.pth written by tools/train_net.py or tools/combine_weights.py"
# What torch.load raises on a file that is no checkpoint at all.
UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)


def unreadable(path, exc: BaseException, what: str = "an XVFA checkpoint", hint: str = _HINT, error=ValueError) -> ValueError:
    """The one-line error for a file that cannot be read as ``what`` (by default a checkpoint)."""
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return error(f"{path}: not {what} (cannot be read as one: {reason}); {hint}")


def load_plain(path, what: str = "an XVFA checkpoint", hint: str = _HINT, error=ValueError):
    """``torch.load`` of a file of tensors and plain types (``weights_only``: no code runs), or
    ``error`` in one line naming the file: missing, or not readable as ``what``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as exc:
        raise unreadable(path, exc, what, hint, error) from None


def xvfa_state(checkpoint, path) -> Dict[str, torch.Tensor]:
    """The model state of a loaded XVFA checkpoint; ValueError naming ``path`` for anything else,
    for example the evaluator's ``instances_predictions.pth`` that sits beside the checkpoints."""
    # detectron2's checkpointer wraps whatever torch.load gave in {"model": ...}; name what was inside.
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict) or not any(str(k).startswith(tuple(PARTS.values())) for k in state):
        raise ValueError(
            f"{path}: not an XVFA checkpoint (a {type(state).__name__} without detector.* or roi_head.* "
            f"weights); {_HINT}"
        )
    return state


def read_xvfa_state(path) -> Dict[str, torch.Tensor]:
    """The model state of an XVFA checkpoint file (``model_*.pth`` of ``tools/train_net.py`` or
    ``tools/combine_weights.py``); ValueError naming the file for anything else."""
    return xvfa_state(load_plain(path), path)


def model_part(path, part: str) -> Dict[str, torch.Tensor]:
    """The ``part`` ("detector" or "fine") weights of an XVFA checkpoint."""
    prefix = PARTS[part]
    weights = {k: v for k, v in read_xvfa_state(path).items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{path}: holds no {part} weights (no key starts with '{prefix}')")
    return weights


def split_weights(values: List[str], opts: List[str]) -> Tuple[List[str], List[str]]:
    """``--weights A B KEY=VALUE ...``: argparse gives the trailing overrides to ``--weights``; the
    files, and the overrides put back in front of ``opts``."""
    overrides = [v for v in values if "=" in v and not Path(v).exists()]
    return [v for v in values if v not in overrides], overrides + list(opts)
