"""detectron2's checkpointer for finished XVFA models: any other file is one clear error."""

from pathlib import Path

from detectron2.checkpoint import DetectionCheckpointer

from ..checkpoints import UNREADABLE, unreadable, xvfa_state


class XVFACheckpointer(DetectionCheckpointer):
    """Loads an XVFA checkpoint (``tools/predict.py``, ``--eval-only``) and refuses anything else.

    The file is read once, by detectron2; a missing file, one that is no checkpoint, or a checkpoint
    without XVFA weights raises a ``ValueError`` that names the file, before the model is touched.
    """

    def load(self, path, *args, **kwargs):
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
        return super().load(str(path), *args, **kwargs)

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except UNREADABLE + (AssertionError, AttributeError, KeyError, TypeError) as exc:  # detectron2's formats too
            raise unreadable(filename, exc) from None
        xvfa_state(loaded, filename)
        return loaded
