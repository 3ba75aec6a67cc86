"""Without detectron2 and detrex, the tools say in one line what is missing and how to install it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xvfa_ext.dependencies import INSTALL_COMMAND, detrex_projects_root, missing_detectron2

ROOT = Path(__file__).resolve().parents[1]

# Imported first by Python (via PYTHONPATH), it hides detectron2 and detrex as if never installed.
_HIDE = """import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("detectron2", "detrex"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
"""

TOOL_ARGS = {
    "train_net.py": ["--config-file", "configs/xvfa_dino_r50_smoke.py"],
    "predict.py": ["--config-file", "configs/xvfa_dino_r50.py", "--input", "x.png", "--output", "out"],
    "visualize_data.py": ["--dataset", "xvfa_synthetic_val", "--output", "out"],
    "benchmark.py": ["--iters", "1"],
    "benchmark_accuracy.py": ["--output", "out"],
    "benchmark_training.py": ["--config-file", "configs/xvfa_dino_r50_fine.py", "--keep", "out"],
}


@pytest.mark.parametrize("tool", sorted(TOOL_ARGS))
def test_tool_without_detectron2_exits_2_with_one_line(tool, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(_HIDE)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / tool), *TOOL_ARGS[tool]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(tool) and "missing detectron2, detrex" in lines[0] and INSTALL_COMMAND in lines[0]
    assert not list(tmp_path.glob("out*")), "nothing is written"


def test_detrex_home_overrides_and_names_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("DETREX_HOME", str(tmp_path))
    assert detrex_projects_root() is None
    missing = missing_detectron2()
    assert missing, "a DETREX_HOME without projects/dino leaves DINO missing"
    if "detrex" not in missing:
        assert missing == [f"detrex's projects/dino (not in DETREX_HOME={tmp_path})"]
    (tmp_path / "projects" / "dino").mkdir(parents=True)
    assert detrex_projects_root() == tmp_path


def test_install_rejects_a_source_that_is_no_checkout_before_installing_anything(tmp_path):
    env = dict(os.environ, DETECTRON2_SRC=str(tmp_path), PYTHON="false")  # PYTHON=false: any pip call would fail
    out = subprocess.run(["bash", str(ROOT / "tools" / "install.sh")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == f"install.sh: DETECTRON2_SRC={tmp_path} is not a detectron2 checkout (no setup.py and detectron2/ there)"


def test_install_rejects_an_unknown_option():
    out = subprocess.run(["bash", str(ROOT / "tools" / "install.sh"), "--fast"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "unknown option '--fast'" in out.stderr


def test_detrex_projects_import_without_the_checkout_on_the_path():
    """Only projects/ becomes importable: the checkout's empty detectron2/ folder must not shadow
    detectron2 in a process started from this one (train_net's workers, a subprocess)."""
    if missing_detectron2():
        pytest.skip("needs detrex's checkout")
    code = (
        "import sys\n"
        "from xvfa_ext.dependencies import add_detrex_projects_to_path\n"
        "root = add_detrex_projects_to_path()\n"
        "import projects.dino.modeling\n"
        "assert str(root) not in sys.path, 'the checkout is on sys.path'\n"
        "assert add_detrex_projects_to_path() == root\n"
        "print(projects.dino.modeling.__file__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert str(detrex_projects_root() / "projects" / "dino" / "modeling") in out.stdout
