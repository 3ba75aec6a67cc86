"""A convolutional trunk prepared for inference: BatchNorm folded in, weights in the compute dtype.

Training runs the trunk as it is; at inference each BatchNorm is an affine map that folds into the
convolution before it, the weights are cast once rather than on every call, and the graph may be
compiled. On a CPU with AMX this runs a ResNet-18 on 224 px crops in bfloat16 about 1.3 times
faster than autocast, and about 2 times faster compiled (``tools/benchmark.py``).
"""

import copy
import logging
from typing import Optional, Tuple

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

logger = logging.getLogger(__name__)


class FoldedTrunk:
    """Runs ``trunk`` in eval mode through a folded copy, refreshed when the trunk's state changes.

    The copy is no submodule of the model (it is neither saved nor trained). Its weights are
    refreshed in place, so a compiled copy is compiled once (``torch.compile`` with dynamic batch
    size: a few seconds to a minute on the first call) and then follows every training step. Where
    compiling fails (no C++ compiler for the CPU, no Triton for CUDA) it says so once and runs the
    folded copy uncompiled. The compiled copy's first answer is checked against the uncompiled
    copy's on the same input: where it is not finite, or further from it than ``tolerance`` times
    the answer's largest magnitude, the compiler has miscompiled (as torch's inductor does on an
    AVX-512 CPU told ``ATEN_CPU_CAPABILITY=avx2``); it says so once and runs uncompiled.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, compile: bool = False, tolerance: float = 0.05):
        self.dtype = dtype
        self.compile = compile
        self.tolerance = tolerance
        self._module: Optional[nn.Module] = None
        self._run = None
        self._key: Optional[Tuple] = None
        self._checked = False  # whether the compiled copy's answer was compared with the uncompiled one

    def _state_key(self, trunk: nn.Module) -> Tuple:
        tensors = list(trunk.parameters()) + list(trunk.buffers())
        return tuple((id(t), t._version, t.device) for t in tensors)

    def _refresh(self, trunk: nn.Module) -> None:
        folded = fuse(copy.deepcopy(trunk).eval()).to(self.dtype)
        folded = folded.to(memory_format=torch.channels_last).requires_grad_(False)
        device = next(trunk.parameters()).device
        if self._module is not None and next(self._module.parameters()).device == device:
            with torch.no_grad():
                for mine, theirs in zip(self._module.state_dict().values(), folded.state_dict().values()):
                    mine.copy_(theirs)
            return
        self._module = folded
        self._run = folded
        if self.compile:
            logger.info("Compiling the keypoint trunk for inference: once, up to a minute")
            self._run = torch.compile(folded, dynamic=True)
            self._checked = False

    def __call__(self, trunk: nn.Module, x: torch.Tensor):
        """``trunk(x)`` for an eval-mode trunk without autograd, in ``dtype``; the result (a tensor
        or a tuple of tensors) in float32."""
        key = self._state_key(trunk)
        if key != self._key:
            self._refresh(trunk)
            self._key = key
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        try:
            out = _float(self._run(x))
        except Exception as exc:  # the compiler's own errors vary by backend and toolchain
            if self._run is self._module:
                raise
            logger.warning(f"Compiling the keypoint trunk failed, it runs uncompiled: {str(exc)[:300]}")
            self._run = self._module
            return _float(self._run(x))
        if self._run is not self._module and not self._checked:
            self._checked = True
            reference = _float(self._module(x))
            problem = _disagreement(out, reference, self.tolerance)
            if problem:
                logger.warning(f"The compiled keypoint trunk {problem} on its first input; it runs uncompiled")
                self._run = self._module
                return reference
        return out


def _float(out):
    return tuple(t.float() for t in out) if isinstance(out, tuple) else out.float()


def _disagreement(out, reference, tolerance: float) -> Optional[str]:
    """How ``out`` (a tensor or tuple of tensors) departs from ``reference``, or None where it does
    not: not finite where the reference is, or further than ``tolerance`` times its largest value."""
    pairs = zip(out, reference) if isinstance(out, tuple) else [(out, reference)]
    for got, want in pairs:
        if not torch.isfinite(got).all() and torch.isfinite(want).all():
            return "gives values that are not finite"
        if not got.numel():
            continue
        scale, distance = float(want.abs().max()), float((got - want).abs().max())
        if distance > tolerance * max(scale, 1e-6):
            return f"differs from the uncompiled one by {distance:.3g} (its values reach {scale:.3g})"
    return None
