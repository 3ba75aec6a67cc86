"""The fine stage alone: keypoints, RLE and GSQ on ground-truth boxes, no detector (20 degree rotation).

Stage two of the paper's schedule: crops come from the full-resolution radiograph, as in the joint
model, and the checkpoint joins a detector trained by ``xvfa_dino_r50_detector.py``
(``tools/combine_weights.py``). The recipe and what each part of it measured: README, "The fine stage".
"""

from .common.schedule import warmup_cosine as lr_multiplier  # noqa: F401
from .xvfa_dino_r50 import dataloader, dataset, model, optimizer, train

model.detector = None
model.train_detector = False
# Table 4's 5e-5 fine-tunes a pretrained trunk; from random initialisation it needs a larger rate.
optimizer.params.fine_lr = 1e-3
train.max_iter = 2400
# The classification losses join once the keypoints are placed.
model.roi_head.classification_warmup_iters = 500
train.eval_period = train.max_iter
train.checkpointer.period = 500
train.seed = 0
# Fresh synthetic radiographs with every vertebra read, instead of the 140 training images.
dataloader.train.dataset.names = "xvfa_synthetic_large_train"
dataloader.train.mapper.augmentations.rotation = 20.0
# 64 vertebra crops per step (suppl. Table 4): eight images, eight vertebrae each.
dataloader.train.total_batch_size = 8
dataloader.test.mapper.keep_annotations = True
train.output_dir = "./output/xvfa_dino_r50_fine"
