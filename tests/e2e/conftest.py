"""End-to-end fixtures: the quick profile, run once through the CLI and shared by the e2e tests."""
import time

import pytest

from tests.helpers import study


@pytest.fixture(scope="session")
def quick_store(tmp_path_factory):
    """The whole quick profile, run once through the CLI: (runs dir, seconds, completed process)."""
    d = tmp_path_factory.mktemp("quick") / "runs"
    t0 = time.time()
    r = study("run-all", "--profile", "quick", "--runs-dir", str(d), timeout=900)
    return d, time.time() - t0, r
