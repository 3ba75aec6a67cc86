"""The fine stage alone: keypoints, RLE and GSQ on ground-truth boxes, no detector (20 degree rotation).

Stage two of the paper's schedule: crops come from the full-resolution radiograph, as in the joint
model, and the checkpoint joins a detector trained by ``xvfa_dino_r50_detector.py``
(``tools/combine_weights.py``).
"""

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from .xvfa_dino_r50 import dataloader, model, optimizer, train

model.detector = None
model.train_detector = False
# Table 4's 5e-5 fine-tunes a pretrained trunk; from random initialisation it needs a larger rate.
optimizer.params.fine_lr = 1e-3
# Warm-up, then a cosine decay over whatever train.max_iter is set to.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.01),
    warmup_length=0.05,
    warmup_method="linear",
    warmup_factor=0.01,
)
# The classification losses wait 100 iterations for the keypoints, then join over the next 100.
model.roi_head.classification_warmup_iters = 100
# 22 to 38 minutes on two CPU cores (README: what it reaches).
train.max_iter = 1000
train.eval_period = 1000
train.checkpointer.period = 500
dataloader.train.mapper.augmentations.rotation = 20.0
# 64 vertebra crops per step (suppl. Table 4): eight images, eight vertebrae each.
dataloader.train.total_batch_size = 8
dataloader.test.mapper.keep_annotations = True
train.output_dir = "./output/xvfa_dino_r50_fine"
