"""A file that is not an XVFA checkpoint gets one line naming it, exit status 2, and nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import requires_detectron2

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"


@pytest.fixture
def predictions_file(tmp_path):
    """Like the evaluator's instances_predictions.pth beside the checkpoints: a list, not a model."""
    path = tmp_path / "instances_predictions.pth"
    torch.save([{"image_id": 1, "instances": [{"bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.9}]}], path)
    return path


def _one_line(result, path):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].endswith(
        f"{path}: not an XVFA checkpoint (a list without detector.* or roi_head.* weights); "
        "give a model_*.pth written by tools/train_net.py or tools/combine_weights.py"
    )
    assert "Traceback" not in result.stderr


def test_combine_weights(predictions_file, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "combine_weights.py"), "--detector", str(predictions_file),
                             "--fine", str(predictions_file), "--output", str(tmp_path / "out.pth")],
                            capture_output=True, text=True, timeout=120)
    _one_line(result, predictions_file)
    assert not (tmp_path / "out.pth").exists()


@requires_detectron2
def test_predict(predictions_file, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), "--config-file", str(SMOKE), "--weights",
                             str(predictions_file), "--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    _one_line(result, predictions_file)
    assert not (tmp_path / "out").exists()


@requires_detectron2
def test_eval_only(predictions_file, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(SMOKE), "--eval-only",
                             f"train.init_checkpoint={predictions_file}", f"train.output_dir={tmp_path / 'out'}"],
                            capture_output=True, text=True, timeout=300)
    _one_line(result, predictions_file)
    assert not (tmp_path / "out").exists()


@requires_detectron2
def test_weights_of_another_config_are_refused(tmp_path):
    """detectron2 alone would warn and leave the mismatched tensors random; XVFACheckpointer stops."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    from xvfa_ext.modeling import XVFACheckpointer

    cfg = LazyConfig.load(str(SMOKE))
    narrow = LazyConfig.apply_overrides(LazyConfig.load(str(SMOKE)), ["model.detector.transformer.encoder.feedforward_dim=64"])
    DetectionCheckpointer(instantiate(narrow.model), save_dir=str(tmp_path)).save("narrow")
    path = tmp_path / "narrow.pth"
    with pytest.raises(ValueError) as raised:
        XVFACheckpointer(instantiate(cfg.model)).load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: its weights do not fit this config's model (")
    assert "detector.transformer.encoder.layers.0.ffns.0.layers.0.0.weight: (64, 256) in the file, (2048, 256) in the model" in message
    # A fine-stage checkpoint has no detector: the main config's detector would stay random.
    fine = torch.load(path, weights_only=False)
    fine["model"] = {k: v for k, v in fine["model"].items() if k.startswith("roi_head.")}
    torch.save(fine, path)
    with pytest.raises(ValueError, match=r"detector\.backbone\.stem\.conv1\.weight: not in the file; .*and \d+ more\)"):
        XVFACheckpointer(instantiate(cfg.model)).load(path)
    # Its own config's model loads it.
    XVFACheckpointer(instantiate(LazyConfig.load(str(ROOT / "configs" / "xvfa_dino_r50_fine.py")).model)).load(path)
