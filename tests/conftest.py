"""Shared test setup: the detectron2/detrex skip marker, its loud count, and measured numbers."""

import os
import tempfile

# The suite runs in two pytest-xdist workers (setup.cfg), one per core: each computes on one thread,
# and the programs the tests start inherit that, so that the two never contend for a core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from xvfa_ext.dependencies import missing_detectron2  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    # Each worker writes its own synthetic datasets: two workers never write one folder at once.
    os.environ["XVFA_DATASETS"] = tempfile.mkdtemp(prefix=f"xvfa_datasets_{os.environ['PYTEST_XDIST_WORKER']}_")
# Synthetic datasets registered by xvfa_ext.data are written here, never into the checkout.
os.environ.setdefault("XVFA_DATASETS", tempfile.mkdtemp(prefix="xvfa_datasets_"))


_MISSING = missing_detectron2()
DETECTRON2_SKIP_REASON = f"needs detectron2 and detrex; missing: {', '.join(_MISSING)}"

requires_detectron2 = pytest.mark.skipif(bool(_MISSING), reason=DETECTRON2_SKIP_REASON)


class _Measured(dict):
    """A test's measured numbers, also kept in its report, so that they reach the run's summary from
    whichever worker ran the test."""

    def __init__(self, node):
        super().__init__()
        self._node = node

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._node.user_properties.append((f"measured {key}", value))


@pytest.fixture
def measured(request):
    """Tests put numbers they measured here; the run prints them at the end."""
    return _Measured(request.node)


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
