"""Stage one of the paper's schedule: the detector (DINO-R50, one class) alone, as in Fig. 2.

The fine stage trains apart (``xvfa_dino_r50_fine.py``); ``tools/combine_weights.py`` puts the two
checkpoints into one model for ``tools/predict.py`` and ``--eval-only``.
"""

from .xvfa_dino_r50 import dataloader, lr_multiplier, model, optimizer, train

model.train_fine = False
train.output_dir = "./output/xvfa_dino_r50_detector"
