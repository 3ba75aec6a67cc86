"""Shared test setup: the detectron2/detrex skip marker, its loud count, and measured numbers."""

import os
import tempfile

import pytest
import torch

from xvfa_ext.dependencies import missing_detectron2

# Synthetic datasets registered by xvfa_ext.data are written here, never into the checkout.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    # The suite runs in two pytest-xdist workers (setup.cfg), one per core: each computes on one
    # thread, and the programs the tests start inherit that, so that the two never contend for a core.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    # Each worker writes its own synthetic datasets: two workers never write one folder at once.
    os.environ["XVFA_DATASETS"] = tempfile.mkdtemp(prefix=f"xvfa_datasets_{_WORKER}_")
else:
    os.environ.setdefault("XVFA_DATASETS", tempfile.mkdtemp(prefix="xvfa_datasets_"))


_MISSING = missing_detectron2()
DETECTRON2_SKIP_REASON = f"needs detectron2 and detrex; missing: {', '.join(_MISSING)}"

requires_detectron2 = pytest.mark.skipif(bool(_MISSING), reason=DETECTRON2_SKIP_REASON)


class _Measured:
    """Where a test puts the numbers it measured: each goes into its report (pytest's
    ``record_property``), whichever worker ran it, and the run's summary prints them."""

    def __init__(self, record_property):
        self._record = record_property

    def __setitem__(self, key, value):
        self._record(f"measured {key}", value)


@pytest.fixture
def measured(record_property):
    """Tests put numbers they measured here; the run prints them at the end."""
    return _Measured(record_property)


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
    measured = {
        key: value
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        for key, value in getattr(report, "user_properties", ())
        if key.startswith("measured ")
    }
    for key, value in sorted(measured.items()):
        terminalreporter.write_line(f"{key}: {value}")
