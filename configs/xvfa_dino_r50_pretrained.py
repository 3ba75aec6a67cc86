"""The main config from ImageNet weights: what to prefer on a small dataset, as the paper trained.

The detector's ResNet-50 starts from detectron2's ImageNet R-50 (MSRA), which detectron2's
checkpointer downloads once into its cache, with detrex's settings for it (FrozenBN, the stem frozen,
the backbone at a tenth of the rate); the keypoint trunk starts from torchvision's ImageNet ResNet-18,
which torchvision downloads once. Offline, training stops with one line naming the file and how to
give a local copy: ``train.init_checkpoint=/path/R-50.pkl`` and ``model.roi_head.head.weights=/path/resnet18.pth``.
"""

from .xvfa_dino_r50 import dataloader, dataset, lr_multiplier, model, optimizer, train

train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
model.detector.backbone.stem.norm = "FrozenBN"
model.detector.backbone.stages.norm = "FrozenBN"
model.detector.backbone.freeze_at = 1
model.roi_head.head.weights = "torchvision"
train.output_dir = "./output/xvfa_dino_r50_pretrained"
