#!/usr/bin/env python3
"""Train or evaluate XVFA from a LazyConfig inside detectron2's trainer.

    python tools/train_net.py --config-file configs/xvfa_dino_r50.py --num-gpus 2
    python tools/train_net.py --config-file configs/xvfa_dino_r50_smoke.py --num-gpus 2   # CPU: 2 processes
    python tools/train_net.py --config-file C --eval-only train.init_checkpoint=output/.../model_final.pth
    python tools/train_net.py --config-file C --eval-only --weights fold0.pth fold1.pth ...   # an ensemble

Trailing ``key=value`` pairs override the config. On a machine without CUDA, ``--num-gpus N`` starts
N CPU processes that talk over gloo.
"""

import logging
import sys
import time

import torch
from xvfa_ext.checkpoints import split_weights
from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import SimpleTrainer, default_argument_parser, default_setup, default_writers, hooks, launch  # noqa: E402
from detectron2.engine.defaults import create_ddp_model  # noqa: E402
from detectron2.evaluation import inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from xvfa_ext.data import DatasetError, register_from_config  # noqa: E402

logger = logging.getLogger("detectron2")


class Trainer(SimpleTrainer):
    """detectron2's SimpleTrainer with mixed precision on CUDA and gradient-norm clipping."""

    def __init__(self, model, data_loader, optimizer, amp: bool = False, clip_grad_params=None):
        super().__init__(model, data_loader, optimizer)
        self.amp = amp
        self.grad_scaler = torch.amp.GradScaler("cuda") if amp else None
        self.clip_grad_params = clip_grad_params

    def run_step(self):
        assert self.model.training, "the model was put in eval mode during training"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast("cuda", enabled=self.amp):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.amp:
            self.grad_scaler.scale(losses).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            losses.backward()
        if self.clip_grad_params is not None:
            params = [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, **self.clip_grad_params)
        if self.amp:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self._write_metrics(loss_dict, data_time)

    def state_dict(self):
        state = super().state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.grad_scaler is not None and "grad_scaler" in state:
            self.grad_scaler.load_state_dict(state["grad_scaler"])


def build_model(cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return model


def ddp(cfg, model):
    """DistributedDataParallel where there are several processes; CPU processes take no device ids."""
    kwargs = dict(cfg.train.ddp)
    if cfg.train.device == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def do_train(args, cfg, model):
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = ddp(cfg, model)
    trainer = Trainer(
        model,
        train_loader,
        optimizer,
        amp=cfg.train.amp.enabled,
        clip_grad_params=dict(cfg.train.clip_grad.params) if cfg.train.clip_grad.enabled else None,
    )
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def main(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    model = None
    try:
        if not args.eval_only and not args.resume:
            from xvfa_ext.modeling import fetch_weights

            # Weights to download are fetched first: offline, one line and exit 2.
            fetch_weights(cfg.train.init_checkpoint)
        register_from_config(cfg)
        if args.eval_only:
            from xvfa_ext.modeling import as_one_model, load_trained_models

            # Built and loaded before anything is written: a wrong weights file is one line, exit 2.
            model = as_one_model(load_trained_models(lambda: build_model(cfg), args.weights or [cfg.train.init_checkpoint]))
    except (DatasetError, ValueError) as exc:
        print(f"train_net.py: {exc}", file=sys.stderr)
        sys.exit(2)
    if cfg.train.device == "cpu":
        if comm.get_world_size() > 1:
            torch.set_num_threads(1)  # one thread per process: the processes share the cores
        if cfg.train.amp.enabled:
            logging.getLogger(__name__).warning("mixed precision needs CUDA; training in float32 on the CPU")
            cfg.train.amp.enabled = False
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="xvfa_ext")
    if args.eval_only:
        return do_test(cfg, ddp(cfg, model))
    try:
        model = build_model(cfg)  # after default_setup has seeded the initialisation
    except ValueError as exc:  # the keypoint trunk's weights, for one
        print(f"train_net.py: {exc}", file=sys.stderr)
        sys.exit(2)
    do_train(args, cfg, model)


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument(
        "--weights", nargs="+", default=None,
        help="with --eval-only: checkpoints to evaluate instead of train.init_checkpoint; several are an ensemble",
    )
    args = parser.parse_args()
    if args.weights:
        args.weights, args.opts = split_weights(args.weights, args.opts)
    if args.weights and not args.eval_only:
        parser.error("--weights is for --eval-only; training starts from train.init_checkpoint")
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
