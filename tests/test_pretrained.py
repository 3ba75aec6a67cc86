"""configs/xvfa_dino_r50_pretrained.py: ImageNet weights where they can be had, one clear line where not."""

import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import requires_detectron2
from xvfa_ext.keypoint_head import load_resnet18

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "configs" / "xvfa_dino_r50_pretrained.py"
# An address that refuses at once, whatever the network: what an offline machine sees.
UNREACHABLE = "http://127.0.0.1:9/ImageNetPretrained/MSRA/R-50.pkl"


def stopped_train_net(config, init_checkpoint, tmp_path) -> str:
    """Runs ``train_net.py`` from ``init_checkpoint``, which must stop it: exit 2, no traceback,
    nothing written. Returns its last line of stderr."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(config),
         f"train.init_checkpoint={init_checkpoint}", f"train.output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    return result.stderr.strip().splitlines()[-1]


def test_torchvision_weights_load_from_a_local_copy_in_torchs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        reference.conv1.weight.fill_(0.25)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / Path(url).name)
    trunk = load_resnet18("torchvision")
    assert torch.equal(trunk.conv1.weight, reference.conv1.weight)


def test_torchvision_weights_offline_are_one_line_naming_the_url_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ValueError) as info:
        load_resnet18("torchvision")
    message = str(info.value)
    assert "\n" not in message and torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url in message
    assert "Name or service not known" in message and "model.roi_head.head.weights=" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


@requires_detectron2
def test_detector_weights_offline_are_one_line_and_a_local_file_is_taken(tmp_path):
    from xvfa_ext.modeling import fetch_weights

    with pytest.raises(ValueError) as info:
        fetch_weights(UNREACHABLE)
    assert str(info.value).startswith(f"{UNREACHABLE}: cannot be downloaded") and "train.init_checkpoint=" in str(info.value)
    with pytest.raises(ValueError, match="no such file"):
        fetch_weights(str(tmp_path / "R-50.pkl"))
    local = tmp_path / "R-50.pkl"
    local.write_bytes(b"weights")
    assert fetch_weights(str(local)) == str(local) and fetch_weights("") == ""


@requires_detectron2
def test_the_pretrained_config_stops_in_one_line_without_network(tmp_path):
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(str(PRETRAINED))
    assert cfg.train.init_checkpoint == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    assert cfg.model.detector.backbone.stem.norm == cfg.model.detector.backbone.stages.norm == "FrozenBN"
    assert cfg.model.detector.backbone.freeze_at == 1 and cfg.model.roi_head.head.weights == "torchvision"
    last = stopped_train_net(PRETRAINED, UNREACHABLE, tmp_path)
    assert last.startswith(f"train_net.py: {UNREACHABLE}: cannot be downloaded")


@requires_detectron2
@pytest.mark.parametrize("variant, first", [
    ("xvfa_dino_r50_fine_from_synthetic.py", "xvfa_dino_r50_fine.py"),
    ("xvfa_dino_r50_detector_from_synthetic.py", "xvfa_dino_r50_detector.py"),
])
def test_a_from_synthetic_config_starts_where_its_synthetic_run_ends(variant, first, tmp_path):
    from detectron2.config import LazyConfig

    cfg, synthetic = LazyConfig.load(str(ROOT / "configs" / variant)), LazyConfig.load(str(ROOT / "configs" / first))
    assert Path(cfg.train.init_checkpoint) == Path(synthetic.train.output_dir) / "model_final.pth"
    assert cfg.train.output_dir != synthetic.train.output_dir
    # The same model, data and schedule: only where it starts and where it writes differ.
    for key in ("model", "optimizer", "dataset"):
        assert LazyConfig.to_py(cfg[key]) == LazyConfig.to_py(synthetic[key]), key
    assert LazyConfig.to_py(cfg.dataloader.train) == LazyConfig.to_py(synthetic.dataloader.train)
    assert cfg.train.max_iter == synthetic.train.max_iter
    missing = tmp_path / "model_final.pth"
    last = stopped_train_net(ROOT / "configs" / variant, missing, tmp_path)
    assert last == f"train_net.py: {missing}: no such file (train.init_checkpoint)"
