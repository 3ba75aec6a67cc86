"""detectron2's checkpointer for finished XVFA models: any other file is one clear error."""

from pathlib import Path

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..checkpoints import UNREADABLE, unreadable, xvfa_state


class XVFACheckpointer(DetectionCheckpointer):
    """Loads an XVFA checkpoint (``tools/predict.py``, ``--eval-only``) and refuses anything else.

    The file is read once, by detectron2; a missing file, one that is no checkpoint, or a checkpoint
    without XVFA weights raises a ``ValueError`` that names the file, before the model is touched.
    So does a checkpoint whose weights do not fit the model (another config's: a tensor of another
    shape, or one the model has and the file lacks), after detectron2 has tried it, where detectron2
    alone would log a warning and leave those weights random.
    """

    def load(self, path, *args, **kwargs):
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
        self._path = path
        return super().load(str(path), *args, **kwargs)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        problems = [f"{key}: {tuple(theirs)} in the file, {tuple(ours)} in the model"
                    for key, theirs, ours in incompatible.incorrect_shapes]
        problems += [f"{key}: not in the file" for key in incompatible.missing_keys]
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise ValueError(
                f"{self._path}: its weights do not fit this config's model ({shown}); load it with the "
                "config it was trained with (two-stage weights of xvfa_dino_r50_detector.py and "
                "xvfa_dino_r50_fine.py load into xvfa_dino_r50_cpu.py)"
            )
        return incompatible

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except UNREADABLE + (AssertionError, AttributeError, KeyError, TypeError) as exc:  # detectron2's formats too
            raise unreadable(filename, exc) from None
        xvfa_state(loaded, filename)
        return loaded


def fetch_weights(path: str) -> str:
    """A local file for initial weights given as a file, a URL or a ``detectron2://`` name (which
    detectron2 downloads once into its cache); without network, one clear error saying how to give a
    local copy. An empty path stays empty (random initialisation)."""
    if not path:
        return path
    if "://" not in str(path):
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file (train.init_checkpoint)")
        return str(path)
    try:
        local = PathManager.get_local_path(str(path))
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ValueError(
            f"{path}: cannot be downloaded ({reason}); fetch it on a machine with internet and give "
            "train.init_checkpoint=/path/to/a/local/copy"
        ) from None
    if not Path(local).is_file():
        raise ValueError(f"{path}: cannot be downloaded (nothing at {local}); give train.init_checkpoint=/path/to/a/local/copy")
    return local
