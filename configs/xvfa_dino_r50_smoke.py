"""A few iterations of the joint model on small synthetic images: about a minute on a CPU machine."""

from .xvfa_dino_r50 import dataloader, dataset, lr_multiplier, model, optimizer, train

dataloader.train.dataset.names = "xvfa_synthetic_small_train"
dataloader.test.dataset.names = "xvfa_synthetic_small_val"
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0
model.roi_head.crop_size = 32  # vertebrae about 13 px tall at 256x192
# Half resolution, as the main config sees its films.
dataloader.train.mapper.detector_vertebra_height = 6.6
dataloader.test.mapper.detector_vertebra_height = 6.6
model.roi_head.num_samples = 200
model.roi_head.head.compile_inference = False  # a few predictions: compiling would cost more than it saves
model.score_threshold = 0.0
train.max_iter = 6
train.eval_period = 6
train.log_period = 1
train.checkpointer.period = 3
lr_multiplier.scheduler.milestones = [5]
lr_multiplier.scheduler.num_updates = 6
lr_multiplier.warmup_length = 0.0
train.output_dir = "./output/xvfa_dino_r50_smoke"
