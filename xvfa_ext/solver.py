"""Optimizer parameter groups: the detector and the fine stage learn at their own rates (suppl. Table 4)."""

from typing import Dict, List

from detectron2.solver.build import get_default_optimizer_params
from torch import nn


def xvfa_optimizer_params(
    model: nn.Module,
    detector_lr: float,
    detector_weight_decay: float,
    fine_lr: float,
    fine_weight_decay: float,
    backbone_lr_factor: float = 0.1,
) -> List[Dict]:
    """Parameter groups of the parts that train; norms carry no weight decay, as in detrex."""
    groups = []
    if model.detector is not None and model.train_detector:
        groups += get_default_optimizer_params(
            model.detector,
            base_lr=detector_lr,
            weight_decay=detector_weight_decay,
            weight_decay_norm=0.0,
            lr_factor_func=lambda name: backbone_lr_factor if name.startswith("backbone") else 1.0,
        )
    if model.train_fine:
        groups += get_default_optimizer_params(
            model.roi_head, base_lr=fine_lr, weight_decay=fine_weight_decay, weight_decay_norm=0.0
        )
    return groups
