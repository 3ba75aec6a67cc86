"""tools/combine_weights.py: a detector checkpoint and a fine-stage checkpoint as one XVFA model."""

import subprocess
import sys
from pathlib import Path

import torch

from conftest import requires_detectron2

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "xvfa_dino_r50_smoke.py"


def combine(detector, fine, output):
    cmd = [sys.executable, str(ROOT / "tools" / "combine_weights.py"), "--detector", str(detector), "--fine", str(fine),
           "--output", str(output)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_a_checkpoint_without_the_part_is_named(tmp_path):
    detector_only = tmp_path / "detector.pth"
    torch.save({"model": {"detector.w": torch.ones(2)}, "iteration": 5}, detector_only)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    result = combine(detector_only, detector_only, tmp_path / "out.pth")
    assert result.returncode == 2
    assert f"{detector_only}: holds no fine weights" in result.stderr
    result = combine(broken, detector_only, tmp_path / "out.pth")
    assert result.returncode == 2 and f"{broken}: not an XVFA checkpoint (cannot be read as one" in result.stderr
    assert not (tmp_path / "out.pth").exists()


@requires_detectron2
def test_combined_weights_load_into_the_joint_model(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(SMOKE))
    models = {}
    for name, seed in (("detector", 0), ("fine", 1)):
        torch.manual_seed(seed)
        models[name] = instantiate(cfg.model)
        DetectionCheckpointer(models[name], save_dir=str(tmp_path)).save(name)
    # A fine-stage checkpoint has no detector at all (configs/xvfa_dino_r50_fine.py).
    fine = torch.load(tmp_path / "fine.pth", weights_only=False)
    fine["model"] = {k: v for k, v in fine["model"].items() if k.startswith("roi_head.")}
    torch.save(fine, tmp_path / "fine.pth")

    result = combine(tmp_path / "detector.pth", tmp_path / "fine.pth", tmp_path / "both.pth")
    assert result.returncode == 0, result.stderr[-2000:]
    torch.manual_seed(2)
    joint = instantiate(cfg.model)
    DetectionCheckpointer(joint).load(str(tmp_path / "both.pth"))
    sources = {"detector.": models["detector"].state_dict(), "roi_head.": models["fine"].state_dict()}
    for key, value in joint.state_dict().items():
        prefix = key.split(".")[0] + "."
        assert torch.equal(value, sources[prefix][key]), key
