"""Ablation (paper Table 1): lambda_kps=0, lambda_img=1 on the fine stage."""

from ..xvfa_dino_r50_fine import dataloader, dataset, lr_multiplier, model, optimizer, train

model.roi_head.head.lambda_kps = 0.0
model.roi_head.head.lambda_img = 1.0
train.output_dir = "./output/ablations/xvfa_fine_image"
