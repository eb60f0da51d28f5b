import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def quick_store(tmp_path_factory):
    """The whole quick profile, run once through the CLI: (runs dir, seconds, completed process)."""
    d = tmp_path_factory.mktemp("quick") / "runs"
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "study", "run-all", "--profile", "quick", "--runs-dir", str(d)],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return d, time.time() - t0, r
