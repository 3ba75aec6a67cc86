"""Stage one of the paper's schedule: the detector (DINO-R50, one class) alone, as in Fig. 2.

The detector of ``xvfa_dino_r50_cpu.py``: three quarters of full resolution, a lighter transformer.
The fine stage trains apart (``xvfa_dino_r50_fine.py``); ``tools/combine_weights.py`` puts the two
checkpoints into one model of ``xvfa_dino_r50_cpu.py`` for ``tools/predict.py`` and ``--eval-only``.
Sized for a CPU: what each setting measured is in the README, "The detector".
"""

from .common.schedule import warmup_cosine as lr_multiplier  # noqa: F401
from .xvfa_dino_r50_cpu import dataloader, dataset, model, optimizer, train

model.train_fine = False
# The detector's own boxes are what this stage is measured by (its fine stage is untrained).
model.keypoint_box_padding = None
# From random initialisation: twice detrex's rate for the whole detector, the backbone included (its
# 0.1 factor suits pretrained weights).
optimizer.params.detector_lr = 2e-4
optimizer.params.backbone_lr_factor = 1.0
dataloader.train.dataset.names = "xvfa_synthetic_large_train"
dataloader.train.total_batch_size = 2
train.max_iter = 760
train.eval_period = train.max_iter
train.checkpointer.period = 500
train.seed = 0
train.output_dir = "./output/xvfa_dino_r50_detector"
