"""Extending the study as a user would, in a scratch copy of the package: Heun's method is a tableau, a row of the
method table and a variant (README, "Extending the study"), and the shipped store then misses only the new runs."""
import re
import shutil
import subprocess
import sys

from tests.helpers import ENV, ROOT

TABLEAU = '''        _tableau("heun", [0, 1], [[], [1]], [F(1, 2), F(1, 2)], order=2),  # Heun's method (explicit trapezoid)
'''
METHOD = '''    Method("heun", 2, 2, "Heun", "Heun", tableau="heun"),
'''
VARIANT = '''    Variant("heun", "Heun (hand)", "Heun", {"model": "ode", "backend": "hand", "method": "heun", "steps": 20}),
'''


def _insert_after(path, anchor: str, text: str) -> None:
    source = path.read_text()
    assert source.count(anchor) == 1, anchor
    path.write_text(source.replace(anchor, anchor + text))


def _heun_package(tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(ROOT / "study", pkg / "study", ignore=shutil.ignore_patterns("__pycache__"))
    _insert_after(pkg / "study/engine/solvers.py", '        _tableau("euler", [0], [[]], [1], order=1),\n', TABLEAU)
    _insert_after(pkg / "study/config.py", '    Method("euler", 1, 1, "Euler", "Euler", tableau="euler", torchdiffeq="euler"),\n',
                  METHOD)
    _insert_after(pkg / "study/variants.py", '''    Variant("euler", "Euler (hand)", "Euler", {"model": "ode", "backend": "hand", "method": "euler", "steps": 20}),
''', VARIANT)
    return pkg


def _study(pkg, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=timeout,
                          env={**ENV, "PYTHONPATH": str(pkg)}, cwd=pkg)


def test_a_new_solver_adds_runs_to_the_shipped_store_and_renames_none(tmp_path):
    pkg = _heun_package(tmp_path)
    r = _study(pkg, "variants")
    assert r.returncode == 0 and re.search(r"^heun\s+ode\s+hand\s+heun\s+20 steps", r.stdout, re.M), r.stdout + r.stderr
    r = _study(pkg, "status", "--runs-dir", str(ROOT / "runs"))
    assert r.returncode == 0, r.stderr
    table = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in r.stdout.splitlines()[1:] if line.strip()}
    # experiment -> runs, done, missing, stale, diverged, failed, corrupt
    assert all(row[3] == 0 for row in table.values()), r.stdout  # nothing stale: no record was renamed
    missing = {name: row[2] for name, row in table.items() if row[2]}
    # the new variant's own training runs, the transfer runs of every trained model under Heun, work-precision's
    # Heun solution on every task and its convergence run: nothing else
    for name in ("main", "transfer", "convergence", "work-precision", "dynamics/main", "dynamics/transfer",
                 "dynamics/work-precision", "density/main", "density/transfer", "density/work-precision",
                 "digits/main", "digits/transfer", "digits/work-precision"):
        assert missing.pop(name, 0) > 0, (name, r.stdout)
    assert missing.pop("timing", 0) == 1  # the timing experiment times every variant: the new one's step
    assert not missing, missing
    assert table["work-precision"][2] == 1 and table["convergence"][2] == 1
    assert [table[f"{t}main"][2] for t in ("", "dynamics/", "density/", "digits/")] == [5] * 4  # its seeds
    assert table["transfer"][2] == 20  # the spiral's 4 transferred variants x 5 seeds, solved by Heun
    r = _study(pkg, "run", "heun", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 0 and "heun on spiral, seed 0: ok" in r.stdout, r.stderr
