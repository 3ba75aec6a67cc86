"""XVFA: DINO-R50 (one class) for vertebra boxes, then the ResNet-18 keypoint, RLE and GSQ head.

The detector is detrex's own ``projects/dino/configs/models/dino_r50.py``, loaded from the installed
detrex checkout, with its classes swapped for their device-safe subclasses and a few settings
overridden for vertebrae.
"""

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

from xvfa_ext.dependencies import add_detrex_projects_to_path
from xvfa_ext.gsq import DEFAULT_TEMPERATURE, DEFAULT_THRESHOLDS, FuzzyGSQ
from xvfa_ext.modeling import XVFA, DINOCriterion, VertebraROIHead
from xvfa_ext.modeling import DINO as DeviceSafeDINO
from xvfa_ext.vertebra_head import VertebraHead

detector = LazyConfig.load(str(add_detrex_projects_to_path() / "projects/dino/configs/models/dino_r50.py")).model
# detrex's DINO and criterion hard-code CUDA in their denoising; these subclasses do not.
detector._target_ = DeviceSafeDINO
detector.criterion._target_ = DINOCriterion
# BatchNorm: a randomly initialised ResNet-50 trains with it, where FrozenBN (an identity until
# pretrained statistics are loaded) leaves it unnormalised. With ImageNet weights
# (train.init_checkpoint=R-50.pkl) set both norms back to "FrozenBN" and freeze_at to 1, as detrex has them.
detector.backbone.stem.norm = "BN"
detector.backbone.stages.norm = "BN"
detector.backbone.freeze_at = 0  # random initialisation: the stem learns too
detector.num_classes = 1
# At most seventeen vertebrae per lateral film: 100 queries are plenty (detrex: 900).
detector.num_queries = 100
detector.select_box_nums_for_evaluation = 50
detector.device = "cpu"  # the main config sets the training device

model = L(XVFA)(
    detector=detector,
    roi_head=L(VertebraROIHead)(
        head=L(VertebraHead)(
            weights=None,  # a local ResNet-18 state dict file, if any
            base="laplace",
            # tau (gsq.DEFAULT_TEMPERATURE, 0.05 of a height ratio) lets GSQ's gradient reach keypoints
            # a few pixels from a threshold; at 0.01 it is a spike that knocks them off while they learn.
            gsq=L(FuzzyGSQ)(thresholds=DEFAULT_THRESHOLDS, temperature=DEFAULT_TEMPERATURE, trainable=False),
            lambda_rle=1.0,
            lambda_kps=1.0,
            lambda_img=1.0,
            grade_weights=None,
            morphology_weights=None,
            imputed_weight=1e-3,
            # bfloat16 where the hardware runs it natively (AMX or AVX-512 BF16 CPUs, CUDA), else
            # float32: on an AVX2-only CPU bfloat16 is emulated and many times slower.
            trunk_dtype="auto",
            regressor="heatmap",
            heatmap_stride=4,  # or 2: finer heatmaps from the stem's features
            # Inference through a compiled copy of the trunk: 1.3 times faster on CPU than folded
            # eager (tools/benchmark.py); compiled once, on the first prediction.
            compile_inference=True,
        ),
        # The paper resizes each box to 224 px, about 2.5 times its vertebrae at half resolution;
        # at the synthetic default (vertebrae about 26 px tall) 64 px gives that and costs twelve
        # times less (README, "The fine stage"). Scale it with your vertebrae's size in pixels.
        crop_size=64,
        box_scale=0.35,
        box_shift=10.0,
        alpha=0.9,
        num_samples=1000,
        # 64 crops per step at 8 images (suppl. Table 4's keypoint batch).
        crops_per_image=8,
        # A cascade that refines each keypoint from a patch around it (xvfa_ext.refine): off, or
        # the patch's pixels, e.g. 32, with refine_fraction of the crop box's height on a side.
        refine_patch=None,
        refine_fraction=0.4,
        # A second look at each found vertebra on the box around its first keypoints, padded as the
        # annotations pad theirs (0.1), or None: README, "A second look".
        recrop_padding=None,
    ),
    train_detector=True,
    train_fine=True,
    score_threshold=0.2,
    max_vertebrae=20,
    # Neighbouring vertebrae's boxes overlap little; two boxes over IoU 0.5 are one vertebra.
    nms_threshold=0.5,
    # A found vertebra's output box is the box around its predicted keypoints, padded as the
    # annotations pad theirs (a tenth of the extent: datasets/convert_points.py, the synthetic data).
    keypoint_box_padding=0.1,
)
