"""One torch thread everywhere: two threads on a busy 2-core machine are many times slower than one."""
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
