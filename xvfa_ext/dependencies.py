"""Whether detectron2 and detrex (with its ``projects/dino``) are there, found without importing them.

pip installs detrex's library but not its repository's ``projects/`` folder, where DINO lives. It is
looked for next to the installed detrex source (``tools/install.sh`` installs detrex editable, so the
checkout is there), or under ``DETREX_HOME``, which overrides.
"""

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional

INSTALL_COMMAND = "bash tools/install.sh"


def _origin(name: str) -> Optional[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def detrex_projects_root() -> Optional[Path]:
    """The folder holding detrex's ``projects/dino``: ``$DETREX_HOME``, or the installed detrex checkout."""
    home = os.environ.get("DETREX_HOME")
    if home:
        return Path(home) if (Path(home) / "projects" / "dino").is_dir() else None
    detrex = _origin("detrex")
    if detrex is not None and (detrex.parent.parent / "projects" / "dino").is_dir():
        return detrex.parent.parent
    return None


def missing_detectron2() -> List[str]:
    """What of detectron2, detrex and detrex's ``projects/dino`` cannot be found (empty when all can)."""
    missing = [name for name in ("detectron2", "detrex") if _origin(name) is None]
    if "detrex" not in missing and detrex_projects_root() is None:
        where = f"DETREX_HOME={os.environ['DETREX_HOME']}" if os.environ.get("DETREX_HOME") else "the detrex checkout"
        missing.append(f"detrex's projects/dino (not in {where})")
    return missing


def require_detectron2(program: Optional[str] = None) -> None:
    """Exit with status 2 and one line naming what is missing and how to install it, unless all is there."""
    missing = missing_detectron2()
    if missing:
        program = program or Path(sys.argv[0]).name
        sys.stderr.write(f"{program}: needs detectron2 and detrex; missing {', '.join(missing)}. Install: {INSTALL_COMMAND}\n")
        sys.exit(2)


def add_detrex_projects_to_path() -> Path:
    """Make ``projects.dino`` importable from the detrex checkout; its folder, or ImportError naming the fix.

    Only the checkout's ``projects/`` folder becomes the package ``projects``: the checkout itself
    stays off ``sys.path``, since its (often empty) ``detectron2/`` submodule folder would stand in
    for detectron2 in any process started from this one.
    """
    root = detrex_projects_root()
    if root is None:
        raise ImportError(
            "detrex's DINO (projects/dino in the detrex repository) was not found next to the installed detrex "
            f"or under DETREX_HOME; install detrex from its checkout ({INSTALL_COMMAND}) or set DETREX_HOME"
        )
    folder = str(root / "projects")
    package = sys.modules.get("projects")
    if package is None:
        spec = importlib.machinery.ModuleSpec("projects", None, is_package=True)
        spec.submodule_search_locations = [folder]
        sys.modules["projects"] = importlib.util.module_from_spec(spec)
    elif folder not in list(getattr(package, "__path__", [])):
        if not hasattr(package, "__path__"):
            raise ImportError(f"a module named 'projects' ({package!r}) hides detrex's projects/ folder {folder}")
        package.__path__.append(folder)
    return root
