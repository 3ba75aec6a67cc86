"""XVFA with DINO-R50 on the synthetic dataset, trained jointly: the paper's settings (suppl. Table 4).

Random initialisation by default; ``train.init_checkpoint=/path/R-50.pkl`` loads local ImageNet
weights into the detector's backbone, ``model.roi_head.head.weights=/path/resnet18.pth`` into the
keypoint trunk.
"""

import torch
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from detrex.config import get_config
from fvcore.common.param_scheduler import MultiStepParamScheduler

from xvfa_ext.solver import xvfa_optimizer_params

from .data.vertebra_synthetic import dataloader, dataset
from .models.xvfa_dino_r50 import model

train = get_config("common/train.py").train
train.device = "cuda" if torch.cuda.is_available() else "cpu"
model.detector.device = train.device
train.output_dir = "./output/xvfa_dino_r50"
train.init_checkpoint = ""
train.max_iter = 6000
train.eval_period = 1000
train.log_period = 20
train.checkpointer.period = 1000
train.clip_grad.enabled = True
train.clip_grad.params.max_norm = 0.1
train.clip_grad.params.norm_type = 2
# Some parts get no gradient in some set-ups (a frozen detector, a zero lambda).
train.ddp.find_unused_parameters = True
train.amp.enabled = False  # True for mixed precision on GPU

# Detector: 1e-4 (backbone x0.1) and weight decay 1e-6; keypoint stage: 5e-5 and 5e-5 (Table 4).
optimizer = L(torch.optim.AdamW)(
    params=L(xvfa_optimizer_params)(
        detector_lr=1e-4, detector_weight_decay=1e-6, fine_lr=5e-5, fine_weight_decay=5e-5, backbone_lr_factor=0.1
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-6,
)

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[5000], num_updates=6000),
    warmup_length=100 / 6000,
    warmup_method="linear",
    warmup_factor=0.001,
)

dataloader.train.total_batch_size = 8
