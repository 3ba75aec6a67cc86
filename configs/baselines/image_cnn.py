"""Table 2's image-level CNN (paper section 3.4, refs. 17-18): an image's worst grade from the whole image.

The paper used an ImageNet-pretrained Inception-ResNet-v2; torchvision's closest model is Inception-v3
(``xvfa_ext.modeling.ImageGradeCNN``), random-initialised unless ``model.weights`` names a local state
dict. It sees the detector's half-resolution input, batch 16 as in the paper, and
``ImageGradeEvaluator`` scores it per image and per patient (worst image).
"""

import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from xvfa_ext.evaluation import ImageGradeEvaluator
from xvfa_ext.modeling import ImageGradeCNN

from ..xvfa_dino_r50 import dataloader, dataset, train
from ..xvfa_dino_r50_detector import lr_multiplier  # 3% warm-up, cosine decay to 1%

model = L(ImageGradeCNN)(weights=None)
optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4
)
dataloader.train.dataset.names = "xvfa_synthetic_large_train"
dataloader.train.total_batch_size = 16
dataloader.evaluator = L(ImageGradeEvaluator)(
    dataset_name="${..test.dataset.names}", output_dir="${...train.output_dir}"
)
train.max_iter = 600
train.eval_period = train.max_iter
train.checkpointer.period = 200
train.seed = 0
train.clip_grad.enabled = False
train.output_dir = "./output/baselines/image_cnn"
# No fine stage to size an image for.
dataloader.train.mapper.fine_vertebra_height = None
dataloader.test.mapper.fine_vertebra_height = None
