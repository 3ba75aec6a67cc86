"""Shared test setup: the detectron2/detrex skip marker, its loud count, and measured numbers."""

import os
import tempfile

import pytest

from xvfa_ext.dependencies import missing_detectron2

# Synthetic datasets registered by xvfa_ext.data are written here, never into the checkout.
os.environ.setdefault("XVFA_DATASETS", tempfile.mkdtemp(prefix="xvfa_datasets_"))


_MISSING = missing_detectron2()
DETECTRON2_SKIP_REASON = f"needs detectron2 and detrex; missing: {', '.join(_MISSING)}"

requires_detectron2 = pytest.mark.skipif(bool(_MISSING), reason=DETECTRON2_SKIP_REASON)

_MEASURED = {}


@pytest.fixture
def measured():
    """Tests put numbers they measured here; the run prints them at the end."""
    return _MEASURED


@pytest.fixture(scope="session")
def review_folder(tmp_path_factory):
    """Films and their reports for the review application's tests (``review_data``), written once;
    each test works on a copy of ``results``."""
    from review_data import write_review_folder

    return write_review_folder(tmp_path_factory.mktemp("review"))


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if DETECTRON2_SKIP_REASON in str(r.longrepr)]
    terminalreporter.section("xvfa_ext")
    if _MISSING:
        terminalreporter.write_line(
            f"SKIPPED {len(skipped)} tests because detectron2/detrex are missing ({', '.join(_MISSING)})", red=True
        )
    else:
        terminalreporter.write_line("detectron2 and detrex found: 0 tests skipped for their absence")
    for key, value in sorted(_MEASURED.items()):
        terminalreporter.write_line(f"measured {key}: {value}")
