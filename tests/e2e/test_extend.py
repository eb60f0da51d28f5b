"""Extending the study as a user would, in a scratch copy of the package (README, "Extending the study"): Heun's
method is a tableau, a row of the method table and a variant; a damped pendulum fitted from its trajectory is one
folder (examples/extending/pendulum.py, no hand-written VJP), its name in the task registry and its profile lines.
The shipped store then misses only the new runs; the new task runs, gets its own table and figures, and Heun
appears in its work-precision."""
import json
import re
import shutil
import subprocess
import sys

from tests.helpers import ENV, ROOT

TABLEAU = '''        _tableau("heun", [0, 1], [[], [1]], [F(1, 2), F(1, 2)], order=2),  # Heun's method (explicit trapezoid)
'''
METHOD = '''    Method("heun", 2, 2, "Heun", "Heun", tableau="heun", real_limit=2.0),
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
    _insert_after(pkg / "study/config.py", '    Method("euler", 1, 1, "Euler", "Euler", tableau="euler", torchdiffeq="euler", '
                                           'real_limit=2.0),\n', METHOD)
    _insert_after(pkg / "study/variants.py", '''    Variant("euler", "Euler (hand)", "Euler", {"model": "ode", "backend": "hand", "method": "euler", "steps": 20}),
''', VARIANT)
    return pkg


EXAMPLE = ROOT / "examples/extending"


def _pendulum_package(tmp_path):
    pkg = _heun_package(tmp_path)
    folder = pkg / "study/tasks/pendulum"
    folder.mkdir()
    shutil.copy(EXAMPLE / "pendulum.py", folder / "__init__.py")
    assert len((folder / "__init__.py").read_text().splitlines()) <= 60
    path = pkg / "study/tasks/__init__.py"
    source = path.read_text()
    anchor = 'TASKS = ("spiral", "dynamics", "density", "digits", "stiff")'
    assert source.count(anchor) == 1
    path.write_text(source.replace(anchor, 'TASKS = ("spiral", "dynamics", "density", "digits", "stiff", "pendulum")'))
    lines: dict = {}
    exec((EXAMPLE / "pendulum_profiles.py").read_text(), lines)
    path = pkg / "study/profiles.py"
    source = path.read_text()
    for profile, spec in (("full", lines["FULL"]), ("quick", lines["QUICK"])):  # each a line of TASK_SPEC[profile]
        at = source.index(f'    "{profile}": {{\n', source.index("TASK_SPEC: dict")) + len(f'    "{profile}": {{\n')
        source = source[:at] + f'        "pendulum": {spec["pendulum"]!r},\n' + source[at:]
    path.write_text(source)
    return pkg


def _study(pkg, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=timeout,
                          env={**ENV, "PYTHONPATH": str(pkg)}, cwd=pkg)


def test_a_new_solver_and_a_new_task_add_runs_to_the_shipped_store_and_rename_none(tmp_path):
    pkg = _pendulum_package(tmp_path)
    r = _study(pkg, "variants")
    assert r.returncode == 0 and re.search(r"^heun\s+ode\s+hand\s+heun\s+2\s+explicit\s+20 steps", r.stdout, re.M), r.stdout + r.stderr
    r = _study(pkg, "status", "--runs-dir", str(ROOT / "runs"))
    assert r.returncode == 0, r.stderr
    table = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in r.stdout.splitlines()[1:] if line.strip()}
    # experiment -> runs, done, missing, stale, diverged, failed, corrupt
    assert all(row[3] == 0 for row in table.values()), r.stdout  # nothing stale: no record was renamed
    missing = {name: row[2] for name, row in table.items() if row[2]}
    for name in ("pendulum/main", "pendulum/transfer", "pendulum/work-precision", "pendulum/task-bench"):
        assert table[name][1] == 0 and missing.pop(name) == table[name][0] > 0, (name, r.stdout)  # all of them
    # the new variant's own training runs, the transfer runs of every trained model under Heun, work-precision's
    # Heun solution on every task and its convergence run: nothing else
    for name in ("main", "transfer", "convergence", "work-precision", "dynamics/main", "dynamics/transfer",
                 "dynamics/work-precision", "density/main", "density/transfer", "density/work-precision",
                 "digits/main", "digits/transfer", "digits/work-precision", "stiff/main", "stiff/transfer",
                 "stiff/work-precision"):
        assert missing.pop(name, 0) > 0, (name, r.stdout)
    assert missing.pop("timing", 0) == 1  # the timing experiment times every variant: the new one's step
    assert not missing, missing
    assert table["work-precision"][2] == 1 and table["convergence"][2] == 1
    assert [table[f"{t}main"][2] for t in ("", "dynamics/", "density/", "digits/", "stiff/")] == [5] * 5  # its seeds
    assert table["transfer"][2] == 20  # the spiral's 4 transferred variants x 5 seeds, solved by Heun
    r = _study(pkg, "run", "heun", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 0 and "heun on spiral, seed 0: ok" in r.stdout, r.stderr


def test_the_new_task_runs_and_gets_its_own_table_and_figures_with_heun_in_its_work_precision(tmp_path):
    pkg = _pendulum_package(tmp_path)
    runs, figs, tabs = tmp_path / "runs", tmp_path / "figures", tmp_path / "tables"
    r = _study(pkg, "tasks")
    assert r.returncode == 0 and "pendulum" in r.stdout, r.stdout + r.stderr
    r = _study(pkg, "run-all", "--tasks", "pendulum", "--profile", "quick", "--runs-dir", str(runs), "--workers", "2",
               timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = _study(pkg, "status", "--profile", "quick", "--runs-dir", str(runs))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:] if line.strip()}
    assert all(rows[n][2] == "0" for n in rows if n.startswith("pendulum/")), r.stdout  # none missing
    wp = [json.loads(p.read_text()) for p in runs.rglob("*.json")]
    wp = [rec for rec in wp if rec.get("kind") == "workprecision" and rec["config"].get("task") == "pendulum"]
    assert {"heun", "rk4", "dopri5"} <= {rec["config"]["measure"]["method"] for rec in wp}
    r = _study(pkg, "figures", "--tasks", "pendulum", "--profile", "quick", "--runs-dir", str(runs), "--out",
               str(figs), "--tables-out", str(tabs))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("task_pendulum_results", "task_pendulum_curves", "task_pendulum_cost"):
        assert (figs / f"{name}.png").stat().st_size > 10_000, name
    table = (tabs / "task_pendulum.tex").read_text()
    assert "Heun" in table and "RK4" in table


def test_the_readme_shows_both_extensions_exactly_as_these_tests_make_them():
    readme = (ROOT / "README.md").read_text()
    for snippet in (TABLEAU, METHOD, VARIANT):
        assert snippet.strip() in readme, snippet
    for name in ("pendulum.py", "pendulum_profiles.py"):
        assert (EXAMPLE / name).read_text().strip() in readme, name
