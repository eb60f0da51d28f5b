"""The package's shape: the report layer never imports torch, functions stay short, imports have no side effects."""
import ast
import subprocess
import sys

from tests.helpers import ENV, ROOT


def test_the_report_layer_and_the_registry_do_not_import_torch():
    code = ("import sys; import study.results, study.report.figures, study.report.tables, study.report.claims, "
            "study.variants, study.experiments, study.config, study.records, study.store, study.runners; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert not any(m.startswith('study.engine') for m in sys.modules), 'engine imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr


def test_no_function_in_the_package_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "study").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_importing_the_package_changes_no_global_state():
    """Warnings filters and the matplotlib backend belong to the entry points, not to imports
    (the libraries' own import-time filters are in place before the package is imported)."""
    code = ("import warnings, matplotlib, matplotlib.pyplot, torch, torchdiffeq, pandas, seaborn, scipy.stats; before = (list(warnings.filters), matplotlib.get_backend()); "
            "import study.engine.models, study.engine.train, study.report.style, study.report.figures, study.executor; "
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
