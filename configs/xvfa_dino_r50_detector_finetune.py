"""The detector's fine-tuning on fully read images (paper section 3.2).

Stage one (``xvfa_dino_r50_detector.py``) trains on every level, the missing ones filled by
``datasets/impute_missing.py``; this config goes on from its weights with only the images whose
readers read every vertebra, at a quarter of its rate. On the synthetic data every image of the
detector's training set is fully read, so it only trains longer.
"""

from detectron2.config import LazyCall as L

from xvfa_ext.data import fully_read_dataset_dicts

from .xvfa_dino_r50_detector import dataloader, dataset, lr_multiplier, model, optimizer, train

dataloader.train.dataset = L(fully_read_dataset_dicts)(names=dataloader.train.dataset.names)
train.init_checkpoint = "./output/xvfa_dino_r50_detector/model_final.pth"
optimizer.params.detector_lr = 1e-4
train.max_iter = 300
train.eval_period = train.max_iter
train.output_dir = "./output/xvfa_dino_r50_detector_finetune"
