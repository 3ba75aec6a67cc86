"""The fine stage on a user's films, started from the synthetic fine stage's weights.

Run ``xvfa_dino_r50_fine.py`` once as it stands (the bundled synthetic films), then this config
with only ``dataset.*`` set. Without network, the synthetic weights are what the trunk starts
from instead of ImageNet's: what it measured on real films is in the README, "Real films: AASCE 2019".
"""

from .xvfa_dino_r50_fine import dataloader, dataset, lr_multiplier, model, optimizer, train

train.init_checkpoint = "./output/xvfa_dino_r50_fine/model_final.pth"
train.output_dir = "./output/xvfa_dino_r50_fine_from_synthetic"
