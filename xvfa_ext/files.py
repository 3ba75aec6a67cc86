"""Files are written whole or not at all, so that an interrupted run leaves no half-written output."""

import json
import os
from pathlib import Path
from typing import Any, Type


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_json(path: Path, error: Type[Exception] = ValueError, missing: str = "") -> Any:
    """The JSON in ``path``. A missing or unreadable file raises ``error`` naming the path (``missing``
    is added to the message for a missing file: what to do about it)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such file{missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not readable JSON ({exc})") from None
