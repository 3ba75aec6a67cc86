"""XVFA: DINO-R50 (one class) for vertebra boxes, then the ResNet-18 keypoint, RLE and GSQ head."""

import copy

import torch.nn as nn
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet
from detrex.layers import PositionEmbeddingSine
from detrex.modeling.matcher import HungarianMatcher
from detrex.modeling.neck import ChannelMapper

from xvfa_ext.gsq import DEFAULT_TEMPERATURE, DEFAULT_THRESHOLDS, FuzzyGSQ
from xvfa_ext.modeling import (
    DINO,
    XVFA,
    DINOCriterion,
    DINOTransformer,
    DINOTransformerDecoder,
    DINOTransformerEncoder,
    VertebraROIHead,
)
from xvfa_ext.vertebra_head import VertebraHead

detector = L(DINO)(
    # BatchNorm: a randomly initialised ResNet-50 trains with it, where FrozenBN (an identity until
    # pretrained statistics are loaded) leaves it unnormalised. With ImageNet weights
    # (train.init_checkpoint=R-50.pkl) set both norms to "FrozenBN", as detrex does.
    backbone=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
        stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=False, norm="BN"),
        out_features=["res3", "res4", "res5"],
        freeze_at=0,  # random initialisation: the stem learns too (1 with pretrained weights)
    ),
    position_embedding=L(PositionEmbeddingSine)(num_pos_feats=128, temperature=10000, normalize=True, offset=-0.5),
    neck=L(ChannelMapper)(
        input_shapes={
            "res3": ShapeSpec(channels=512),
            "res4": ShapeSpec(channels=1024),
            "res5": ShapeSpec(channels=2048),
        },
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        num_outs=4,
        kernel_size=1,
        norm_layer=L(nn.GroupNorm)(num_groups=32, num_channels=256),
    ),
    transformer=L(DINOTransformer)(
        encoder=L(DINOTransformerEncoder)(
            embed_dim=256,
            num_heads=8,
            feedforward_dim=2048,
            attn_dropout=0.0,
            ffn_dropout=0.0,
            num_layers=6,
            post_norm=False,
            num_feature_levels="${..num_feature_levels}",
            use_checkpoint=False,
        ),
        decoder=L(DINOTransformerDecoder)(
            embed_dim=256,
            num_heads=8,
            feedforward_dim=2048,
            attn_dropout=0.0,
            ffn_dropout=0.0,
            num_layers=6,
            return_intermediate=True,
            num_feature_levels="${..num_feature_levels}",
            use_checkpoint=False,
        ),
        num_feature_levels=4,
        two_stage_num_proposals="${..num_queries}",
    ),
    embed_dim=256,
    num_classes=1,
    # At most thirteen vertebrae per image: 100 queries are plenty.
    num_queries=100,
    select_box_nums_for_evaluation=50,
    aux_loss=True,
    criterion=L(DINOCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(
            cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, cost_class_type="focal_loss_cost", alpha=0.25, gamma=2.0
        ),
        # lambda_iou 2 and lambda_l1 5 (suppl. Table 4).
        weight_dict={
            "loss_class": 1,
            "loss_bbox": 5.0,
            "loss_giou": 2.0,
            "loss_class_dn": 1,
            "loss_bbox_dn": 5.0,
            "loss_giou_dn": 2.0,
        },
        loss_class_type="focal_loss",
        alpha=0.25,
        gamma=2.0,
        two_stage_binary_cls=False,
    ),
    dn_number=100,
    label_noise_ratio=0.5,
    box_noise_scale=1.0,
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    vis_period=0,
    input_format="RGB",
    device="cpu",
)

# Auxiliary losses of the encoder and every decoder layer, weighted like the final ones.
_base = copy.deepcopy(detector.criterion.weight_dict)
_aux = {k + "_enc": v for k, v in _base.items()}
for _i in range(detector.transformer.decoder.num_layers - 1):
    _aux.update({k + f"_{_i}": v for k, v in _base.items()})
detector.criterion.weight_dict.update(_aux)

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
    ),
    train_detector=True,
    train_fine=True,
    score_threshold=0.2,
    max_vertebrae=20,
    # Neighbouring vertebrae's boxes overlap little; two boxes over IoU 0.5 are one vertebra.
    nms_threshold=0.5,
)
