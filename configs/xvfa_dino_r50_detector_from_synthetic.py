"""The detector on a user's films, started from the synthetic detector's weights.

Run ``xvfa_dino_r50_detector.py`` once as it stands (the bundled synthetic films), then this config
with only ``dataset.*`` set. Without network, the synthetic weights are what DINO starts from
instead of ImageNet's: what it measured on real films is in the README, "Real films: AASCE 2019".
"""

from .xvfa_dino_r50_detector import dataloader, dataset, lr_multiplier, model, optimizer, train

train.init_checkpoint = "./output/xvfa_dino_r50_detector/model_final.pth"
train.output_dir = "./output/xvfa_dino_r50_detector_from_synthetic"
