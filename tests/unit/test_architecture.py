"""The package's shape: the report layer never imports torch, the store, the engine and the solve layer import no task
and no runner, modules and functions stay short, imports have no side effects."""
import ast
import subprocess
import sys

from tests.helpers import ENV, ROOT


def test_the_report_layer_and_the_registry_do_not_import_torch():
    report = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                    for p in (ROOT / "study" / "report").rglob("*.py"))  # every module, each family's too
    code = ("import sys; import study.results, study.report.figures, study.report.tables, study.report.claims, "
            "study.variants, study.experiments, study.config, study.records, study.store, study.runners, "
            + ", ".join(report) + "; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert not any(m.startswith('study.engine') for m in sys.modules), 'engine imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr


def _longer_than(limit: int, folder) -> list[str]:
    long = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    return long


def test_no_function_in_the_package_is_longer_than_60_lines_and_no_module_than_400():
    long = _longer_than(60, ROOT / "study")
    assert not long, long
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for p in sorted((ROOT / "study").rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > 400]
    assert not big, big


def _imported(path, root=ROOT) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function, as an absolute name."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


LOWER_LAYERS = ["study/store.py", "study/records.py", "study/provenance.py", "study/engine"]


def test_the_store_the_engine_and_the_solve_layer_import_no_task_and_no_runner():
    files = [p for entry in LOWER_LAYERS for p in ([ROOT / entry] if entry.endswith(".py")
                                                  else sorted((ROOT / entry).rglob("*.py")))]
    assert any(p.name == "solve.py" for p in files) and len(files) > 20
    bad = sorted(f"{p.relative_to(ROOT)} imports {m}" for p in files for m in _imported(p)
                 if m.startswith(("study.tasks", "study.runners", "study.report", "study.experiments")))
    assert not bad, bad
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in files]
    code = ("import sys; import " + ", ".join(modules) + "; "
            "loaded = [m for m in sys.modules if m.startswith(('study.tasks', 'study.runners'))]; assert not loaded, loaded")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_import_scan_sees_relative_imports_inside_functions(tmp_path):
    """The scan above catches a lazy, relative import of a task or a runner from the engine."""
    probe = tmp_path / "study" / "engine" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import torch\n\n\ndef f():\n    from ..tasks import spiral\n    from ..runners.train import run\n")
    assert {"torch", "study.tasks", "study.tasks.spiral", "study.runners.train"} <= _imported(probe, tmp_path)


def test_no_function_in_the_report_layer_is_longer_than_60_lines():
    """The report layer is one module per figure or table family, each figure or table a few short functions."""
    assert (ROOT / "study" / "report" / "figures" / "__init__.py").exists()
    long = _longer_than(60, ROOT / "study" / "report")
    assert not long, long


def test_importing_the_package_changes_no_global_state():
    """Warnings filters and the matplotlib backend belong to the entry points, not to imports
    (the libraries' own import-time filters are in place before the package is imported)."""
    code = ("import warnings, matplotlib, matplotlib.pyplot, torch, torchdiffeq, pandas, seaborn, scipy.stats; before = (list(warnings.filters), matplotlib.get_backend()); "
            "import study.engine.models, study.tasks.classification, study.report.style, study.report.figures, study.executor; "
            "after = (list(warnings.filters), matplotlib.get_backend()); assert before == after, (before, after)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**ENV, "MPLBACKEND": "pdf"},
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_every_record_kind_has_a_runner_with_the_runner_interface():
    from study import runners

    for kind in runners.KINDS:
        module = runners.get(kind)
        assert module.KIND == kind and isinstance(module.ALONE, bool) and isinstance(module.BATCHED, bool)
        assert callable(module.run) and callable(module.cost)
