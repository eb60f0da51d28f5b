"""The study's optimisers are torch's, without the compiler's wrappers: the same weights bit for bit, and no
import of torch._dynamo (a second of every run's start-up) or torchdiffeq for a hand-engine run."""
import subprocess
import sys

import pytest
import torch

from study.engine import optim
from tests.helpers import ENV


@pytest.mark.parametrize("name,kwargs", [("Adam", {"lr": 0.01, "fused": True}), ("Adam", {"lr": 0.01}),
                                         ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "fused": True}),
                                         ("RMSprop", {"lr": 0.01, "weight_decay": 0.01})])
def test_the_eager_optimiser_steps_as_torch_s_does(name, kwargs):
    def train(cls):
        g = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.randn(7, 5, generator=g))
        x = torch.randn(32, 7, generator=g)
        opt = cls([w], **kwargs)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
        for _ in range(20):
            opt.zero_grad()
            (x @ w).tanh().pow(2).mean().backward()
            opt.step()
            sched.step()
        return w.detach(), opt.state_dict()["state"][0]

    ours, theirs = train(getattr(optim, name)), train(getattr(torch.optim, name))
    assert torch.equal(ours[0], theirs[0])
    assert all(torch.equal(ours[1][k], theirs[1][k]) for k in theirs[1])


def test_a_hand_engine_run_imports_neither_the_compiler_nor_torchdiffeq():
    """The spiral's `study run euler`, and the dynamics task's training loop (its metrics' reference solve is
    torchdiffeq's dopri5)."""
    code = ("import sys; from study.config import Protocol, run_config; from study.variants import variant_config; "
            "from study.tasks import spiral, dynamics; from study.provenance import environment; "
            "c = run_config(variant_config('euler', steps=4), Protocol(epochs=1, n_train=128, n_test=100, "
            "curve_test_points=100), 0, 'cpu', {'variant': 'euler'}); spiral.train([c]); environment('cpu'); "
            "P = dynamics.Protocol(iterations=2, n_points=50, eval_every=1, grid=4); "
            "dynamics.fit(dynamics.model_config('euler'), P, [0], 'cpu', None); "  # training alone: its metrics
            "bad = [m for m in ('torch._dynamo', 'torchdiffeq') if m in sys.modules]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
