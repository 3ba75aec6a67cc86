"""Reading XVFA checkpoints with a clear error for any other file (torch only)."""

import pickle
from pathlib import Path
from typing import Dict

import torch

PARTS = {"detector": "detector.", "fine": "roi_head."}


def read_xvfa_state(path) -> Dict[str, torch.Tensor]:
    """The model state of an XVFA checkpoint (``model_*.pth`` of ``tools/train_net.py`` or
    ``tools/combine_weights.py``); ValueError naming the file for anything else, for example the
    evaluator's ``instances_predictions.pth`` that sits beside the checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    hint = "give a model_*.pth written by tools/train_net.py or tools/combine_weights.py"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not an XVFA checkpoint (cannot be read as one: {reason}); {hint}") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(str(k).startswith(tuple(PARTS.values())) for k in state):
        raise ValueError(
            f"{path}: not an XVFA checkpoint (a {type(checkpoint).__name__} without detector.* or roi_head.* "
            f"weights); {hint}"
        )
    return state


def model_part(path, part: str) -> Dict[str, torch.Tensor]:
    """The ``part`` ("detector" or "fine") weights of an XVFA checkpoint."""
    prefix = PARTS[part]
    weights = {k: v for k, v in read_xvfa_state(path).items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{path}: holds no {part} weights (no key starts with '{prefix}')")
    return weights
