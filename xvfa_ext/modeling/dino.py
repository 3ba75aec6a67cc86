"""detrex's DINO on any device: its denoising methods hard-code CUDA, these versions do not.

DINO lives in detrex's ``projects/dino``, which pip does not install; it is imported from the
installed detrex's checkout, or from ``DETREX_HOME`` (see ``xvfa_ext.dependencies``).
"""

import contextlib

import torch

from ..dependencies import add_detrex_projects_to_path


def _import_dino():
    try:
        add_detrex_projects_to_path()
    except ImportError:
        pass  # projects/dino may still be on PYTHONPATH
    try:
        from projects.dino import modeling
    except ImportError:
        add_detrex_projects_to_path()  # raises, naming where it looked and the fix
        raise
    return modeling


_dino = _import_dino()
DINOTransformer = _dino.DINOTransformer
DINOTransformerDecoder = _dino.DINOTransformerDecoder
DINOTransformerEncoder = _dino.DINOTransformerEncoder


@contextlib.contextmanager
def cuda_calls_on(device: torch.device):
    """Within the block, ``tensor.cuda()`` and ``tensor.to("cuda")`` go to ``device`` instead.

    A no-op on CUDA devices, where the stock code already does the right thing.
    """
    device = torch.device(device)
    if device.type == "cuda":
        yield
        return
    original_cuda, original_to = torch.Tensor.cuda, torch.Tensor.to

    def is_cuda(arg):
        return (isinstance(arg, str) and arg.startswith("cuda")) or (
            isinstance(arg, torch.device) and arg.type == "cuda"
        )

    def to(self, *args, **kwargs):
        args = tuple(device if is_cuda(a) else a for a in args)
        if is_cuda(kwargs.get("device")):
            kwargs["device"] = device
        return original_to(self, *args, **kwargs)

    def cuda(self, *args, **kwargs):
        return original_to(self, device)

    torch.Tensor.cuda, torch.Tensor.to = cuda, to
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.Tensor.to = original_cuda, original_to


class DINO(_dino.DINO):
    """detrex's DINO whose contrastive denoising queries are made on the model's device.

    With ``channels_last=True`` the convolution weights (backbone and neck) are kept channels-last,
    so that the convolutions run on images in that layout (their results differ from the default
    layout's by rounding alone): on a CPU, oneDNN's channels-last kernels make a training step of
    the CPU detector about a tenth cheaper (README, "Time per stage"). Every other argument is
    detrex's.
    """

    def __init__(self, *args, channels_last: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def prepare_for_cdn(self, targets, *args, **kwargs):
        with cuda_calls_on(self.label_enc.weight.device):
            return super().prepare_for_cdn(targets, *args, **kwargs)


class DINOCriterion(_dino.DINOCriterion):
    """detrex's DINO criterion whose denoising losses stay on the targets' device."""

    def compute_dn_loss(self, dn_metas, targets, aux_num, num_boxes):
        device = targets[0]["labels"].device if targets else torch.device("cpu")
        with cuda_calls_on(device):
            return super().compute_dn_loss(dn_metas, targets, aux_num, num_boxes)
