"""Table 2's "DINO" (paper section 3.4): DINO-R50 with the four grades as its categories, no keypoints.

The detector's config (``xvfa_dino_r50_detector.py``), its settings and schedule, with each box's class
probabilities as its grade probabilities (``xvfa_ext.modeling.DINOGrade``). ``VFAEvaluator`` scores
them as the ``box`` score; COCO AP is of boxes only.
"""

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from xvfa_ext.gsq import GRADES
from xvfa_ext.modeling import DINOGrade, GradeDINO

from ..xvfa_dino_r50_detector import dataloader, dataset, lr_multiplier, model, optimizer, train

detector = model.detector
detector._target_ = GradeDINO
detector.num_classes = len(GRADES)
model = L(DINOGrade)(
    detector=detector,
    score_threshold=model.score_threshold,
    nms_threshold=model.nms_threshold,
    max_vertebrae=model.max_vertebrae,
)
# The whole detector at the detector config's rate (its backbone too, from random initialisation).
optimizer.params = L(get_default_optimizer_params)(
    base_lr=optimizer.params.detector_lr, weight_decay=optimizer.params.detector_weight_decay, weight_decay_norm=0.0
)
dataloader.evaluator.tasks = ("bbox",)
dataloader.evaluator.alpha = 0.9  # no keypoints: no intervals to cover
train.output_dir = "./output/baselines/dino_grade"
# No fine stage to size an image for.
dataloader.train.mapper.fine_vertebra_height = None
dataloader.test.mapper.fine_vertebra_height = None
