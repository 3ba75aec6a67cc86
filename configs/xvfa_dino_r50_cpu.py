"""The main config with a detector sized for a CPU: what the two-stage schedule's joined weights load into.

DINO-R50 sees the radiograph with its median vertebra 19.75 px tall (three quarters of full
resolution for the synthetic films; the main config: half), with three
encoder layers instead of six and a feed-forward width of 1024 instead of 2048 in the encoder and the
decoder, which keeps its training within the hour on two cores. ``xvfa_dino_r50_detector.py`` trains
this detector, ``xvfa_dino_r50_fine.py`` the keypoint stage, and ``tools/combine_weights.py`` joins
them into a checkpoint of this config (``--eval-only``, ``tools/predict.py``). What each setting
measured: README, "The detector".
"""

from .xvfa_dino_r50 import dataloader, dataset, lr_multiplier, model, optimizer, train

dataloader.train.mapper.detector_vertebra_height = 19.75
dataloader.test.mapper.detector_vertebra_height = 19.75
model.detector.transformer.encoder.num_layers = 3
model.detector.transformer.encoder.feedforward_dim = 1024
model.detector.transformer.decoder.feedforward_dim = 1024
# Channels-last convolutions: a CPU training step a tenth cheaper, the same results up to rounding.
model.detector.channels_last = True
# This detector places its boxes better than the box around the fine stage's keypoints does (README,
# "Boxes from keypoints"): its own boxes are the output.
model.keypoint_box_padding = None
train.output_dir = "./output/xvfa_dino_r50_cpu"
