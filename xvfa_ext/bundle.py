"""A trained model as one file (``*.xvfa``): config, weights, levels, scale and operating points (torch only).

``tools/export_model.py`` writes it; :class:`xvfa_ext.predictor.VFAPredictor` reads it, so that a
colleague needs nothing else to predict. The file is a ``torch.save`` of plain types and tensors,
read with ``weights_only=True``: loading it runs no code from it.
"""

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from . import __version__
from .checkpoints import load_plain
from .files import write_atomic
from .metrics import GRADE_TASKS, SCORES

FORMAT = "xvfa-model"
FORMAT_VERSION = 1
_KEYS = ("format", "format_version", "config", "weights", "levels", "level_positions", "view", "vertebra_height",
         "operating_points", "versions", "sources", "hash")


class BundleError(ValueError):
    """A file that is not a model bundle, or one this version cannot read."""


def operating_points(metrics: Dict, source: str = "vfa_metrics.json") -> Dict:
    """The Youden operating point of every screening task and score, per vertebra and per patient.

    Args:
        metrics: the ``vfa_metrics.json`` that ``VFAEvaluator`` wrote.

    Returns:
        ``{"headline": score, level: {score: {task: {threshold, sensitivity, specificity}}}}`` for
        ``level`` in ``vertebra`` and ``patient`` (where the evaluation had patients); a task whose
        evaluation data had one class only has no threshold and is left out.
    """
    try:
        screening = metrics["screening"]
        headline = metrics["scores"]["headline"]
    except (KeyError, TypeError):
        raise BundleError(f"{source}: no screening metrics (expected the vfa_metrics.json of an evaluation)") from None
    out: Dict = {"headline": headline}
    for level in ("vertebra", "patient"):
        per_score = {}
        for score in SCORES:
            tasks = screening.get(level, {}).get("grade") if score == headline else \
                screening.get("scores", {}).get(score, {}).get(level)
            chosen = {
                task: {k: float(v[k]) for k in ("threshold", "sensitivity", "specificity")}
                for task, v in (tasks or {}).items()
                if task in GRADE_TASKS and v.get("threshold") is not None
            }
            if chosen:
                per_score[score] = chosen
        if per_score:
            out[level] = per_score
    if "vertebra" not in out:
        raise BundleError(f"{source}: no screening task with a threshold (every evaluated vertebra had one class)")
    return out


def _digest(bundle: Dict) -> str:
    """SHA-256 over everything but the hash: the JSON of the plain fields, then every tensor's bytes."""
    h = hashlib.sha256()
    plain = {k: v for k, v in bundle.items() if k not in ("weights", "hash")}
    h.update(json.dumps(plain, sort_keys=True, allow_nan=False).encode())
    for state in bundle["weights"]:
        for name in sorted(state):
            tensor = state[name].detach().cpu().contiguous()
            h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def make_bundle(
    config: str,
    weights: Sequence[Dict[str, torch.Tensor]],
    levels: Sequence[str],
    level_positions: Optional[Dict[str, float]],
    view: str,
    vertebra_height: Optional[float],
    operating_points: Optional[Dict] = None,
    sources: Optional[Dict] = None,
) -> Dict:
    """The bundle as a dict, with its content ``hash``.

    Args:
        config: the resolved LazyConfig as YAML text.
        weights: one model state per member (several: an ensemble).
        levels, level_positions: the training data's levels cranial to caudal, and each one's usual
            vertical position (fraction of the film's height).
        view: ``lateral`` or ``frontal``.
        vertebra_height: the training data's median posterior height in pixels (sets the input scale).
        operating_points: :func:`operating_points` of an evaluation, or None.
        sources: where the parts came from (file names), for the record.
    """
    if not weights:
        raise BundleError("a model bundle needs at least one set of weights")
    bundle = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "weights": [{k: v.detach().cpu() for k, v in state.items()} for state in weights],
        "levels": list(levels),
        "level_positions": {k: float(v) for k, v in (level_positions or {}).items()},
        "view": view,
        "vertebra_height": None if vertebra_height is None else float(vertebra_height),
        "operating_points": operating_points,
        "versions": {"xvfa_ext": str(__version__), "torch": str(torch.__version__)},
        "sources": sources or {},
    }
    bundle["hash"] = _digest(bundle)
    return bundle


def write_bundle(path, bundle: Dict) -> None:
    """Write ``bundle`` (of :func:`make_bundle`) to ``path`` atomically."""
    import io

    buffer = io.BytesIO()
    torch.save(bundle, buffer)
    write_atomic(Path(path), buffer.getvalue())


def read_bundle(path) -> Dict:
    """The bundle in ``path``; :class:`BundleError` in one line for a file that is not one, was
    written by an incompatible version, or whose content does not match its hash."""
    path = Path(path)
    bundle = load_plain(path, "an xvfa model", "write one with tools/export_model.py", BundleError)
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise BundleError(f"{path}: not an xvfa model (no '{FORMAT}' format mark); write one with tools/export_model.py")
    version = bundle.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: an xvfa model of format {version} (xvfa_ext {bundle.get('versions', {}).get('xvfa_ext')}); "
            f"this xvfa_ext {__version__} reads format {FORMAT_VERSION}: export it again with this version"
        )
    missing = [k for k in _KEYS if k not in bundle]
    if missing:
        raise BundleError(f"{path}: an xvfa model without {', '.join(missing)}")
    if _digest(bundle) != bundle["hash"]:
        raise BundleError(f"{path}: the model's content does not match its hash (the file was altered or damaged)")
    return bundle


def bundle_summary(bundle: Dict) -> List[str]:
    """Lines that describe a bundle, for a log."""
    ops = bundle["operating_points"]
    members = len(bundle["weights"]) if "weights" in bundle else bundle["members"]
    return [
        f"model {bundle['hash'][:12]}: {members} set(s) of weights, view {bundle['view']}, "
        f"levels {bundle['levels'][0] + '-' + bundle['levels'][-1] if bundle['levels'] else 'none'}, "
        f"median vertebra {bundle['vertebra_height']} px",
        "operating points: " + (f"Youden thresholds of {ops['headline']}" if ops else "none (the most likely grade flags)"),
    ]
