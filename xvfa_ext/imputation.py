"""k-nearest-neighbour imputation of missing vertebrae (paper section 3.2).

A spine is an image's read vertebrae: level -> six keypoints ``(6, 2)``. To fill level ``L`` of a
spine, every reference spine that has ``L`` read and shares read levels with it is aligned onto it by
the similarity transform (rotation, a mirror where the patient faces the other way, uniform scale and
shift) that best maps its shared levels' keypoints onto the spine's. The neighbours are the ``k``
references whose aligned keypoints lie closest, as a fraction of the spine's own extent; the fill is
the mean of their level-``L`` keypoints carried by the same transforms.
"""

from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence

import numpy as np

Spine = Dict[str, np.ndarray]


@dataclass
class Fill:
    """Level ``level``'s six keypoints ``(6, 2)``, from ``neighbours`` (their keys) at these distances."""

    level: str
    keypoints: np.ndarray
    neighbours: List[Hashable]
    distances: List[float]


def similarity_transform(src: np.ndarray, dst: np.ndarray):
    """The least-squares ``x -> scale * x @ rotation.T + shift`` taking ``src`` ``(N, 2)`` onto ``dst``.

    The orthogonal part may be a mirror: a lateral film of a patient facing the other way is the
    mirror image of a spine. Returns the map and the RMS residual.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a)
    rotation = u @ vt
    var = (a ** 2).sum()
    scale = sigma.sum() / var if var > 0 else 1.0
    shift = mu_d - scale * mu_s @ rotation.T

    def apply(x: np.ndarray) -> np.ndarray:
        return scale * np.asarray(x) @ rotation.T + shift

    residual = float(np.sqrt(((apply(src) - dst) ** 2).sum(1).mean()))
    return apply, residual


def impute_spine(
    spine: Spine,
    references: Dict[Hashable, Spine],
    levels: Sequence[str],
    k: int = 5,
    exclude: Optional[Hashable] = None,
) -> Dict[str, Fill]:
    """Fills for the ``levels`` ``spine`` lacks, from its ``k`` nearest ``references`` for each.

    A reference must share at least two read levels with the spine (one, if the spine has only one)
    besides the level it fills. ``exclude`` is the spine's own key among the references. A level no
    reference can fill is absent from the result.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not spine:
        return {}
    need = min(2, len(spine))
    extent = {}
    fills = {}
    for level in levels:
        if level in spine:
            continue
        candidates = []
        for key, ref in references.items():
            if key == exclude or level not in ref:
                continue
            shared = sorted(set(spine) & set(ref))
            if len(shared) < need:
                continue
            dst = np.concatenate([spine[s] for s in shared])
            if tuple(shared) not in extent:
                extent[tuple(shared)] = float(np.sqrt(((dst - dst.mean(0)) ** 2).sum(1).mean()))
            apply, residual = similarity_transform(np.concatenate([ref[s] for s in shared]), dst)
            candidates.append((residual / max(extent[tuple(shared)], 1e-9), key, apply(ref[level])))
        if not candidates:
            continue
        candidates.sort(key=lambda c: c[0])
        best = candidates[:k]
        fills[level] = Fill(level, np.mean([c[2] for c in best], axis=0), [c[1] for c in best], [c[0] for c in best])
    return fills
