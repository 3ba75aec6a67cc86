"""The schedule of the stage-wise CPU recipes: 3% linear warm-up, then cosine decay to 1% of the rate."""

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

warmup_cosine = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.01),
    warmup_length=0.03,
    warmup_method="linear",
    warmup_factor=0.01,
)
