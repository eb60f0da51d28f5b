"""study audit end to end: both worked examples at the quick budget (run side by side, one core each), their reports,
figures and records, a second run that resumes, and bad input as one line with exit code 2."""
import json
import subprocess
import sys

from tests.helpers import ENV, ROOT

EXAMPLES = {"lotka-volterra": "examples/lotka_volterra/problem.py",
            "moons-classifier": "examples/moons_classifier/problem.py"}
QUESTIONS = ("| which solver |", "| which gradient to avoid |", "| is the trained model an ODE |", "| stiffness |")


def _audit(*args):
    return subprocess.Popen([sys.executable, "-m", "study", "audit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def test_both_worked_examples_audit_at_the_quick_budget_and_resume(tmp_path):
    procs = {name: _audit(path, "--budget", "quick", "--out", str(tmp_path / name)) for name, path in EXAMPLES.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, (name, out[-2000:], err[-2000:])
        assert f"audit of {name}: 20 cells" in out and "  solver " in out and "  gradient " in out, out
        report = (tmp_path / name / "report.md").read_text()
        assert all(q in report for q in QUESTIONS), report[:2000]
        assert "Fewer than 3 seeds per cell" in report
        html = (tmp_path / name / "report.html").read_text()
        assert "<table>" in html and "<img src='cost.png'" in html
        for png in ("cost.png", "workprecision.png", "nfe.png", "stiffness.png"):
            assert (tmp_path / name / png).stat().st_size > 10_000, (name, png)
        recs = [json.loads(p.read_text()) for p in (tmp_path / name / "runs").rglob("*.json")]
        assert len(recs) == 20 and all(r["kind"] == "audit" and r["status"] == "ok" for r in recs)
        assert {r["config"]["cell"]["gradient"] for r in recs} == {"direct", "checkpoint", "adjoint"}
        assert all(r["env"].get("cpu") for r in recs)
    lv = [json.loads(p.read_text()) for p in (tmp_path / "lotka-volterra" / "runs").rglob("*.json")]
    assert all(r["metrics"]["field_err"] is not None for r in lv)  # the example gives its true field
    again = _audit(EXAMPLES["moons-classifier"], "--out", str(tmp_path / "moons-classifier"))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "20 runs (20 already in" in out, out + err


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom study.audit import Problem\n"
                   "class F(torch.nn.Module):\n"
                   "    def __init__(self):\n        super().__init__()\n        self.l = torch.nn.Linear(2, 3)\n"
                   "    def forward(self, t, y):\n        return self.l(y)\n"
                   "PROBLEM = Problem(field=F, inputs=torch.randn(10, 2), times=torch.tensor([0., 1.]), "
                   "targets=torch.randn(10, 2, 2))\n")
    for args, message in (([str(tmp_path / "missing.py")], "no such file"),
                          ([str(bad)], "the field returned torch.float32 (2, 3)"),
                          ([EXAMPLES["lotka-volterra"], "--seeds", "0"], "--seeds must be"),
                          ([EXAMPLES["lotka-volterra"], "--budget", "huge"], "huge"),
                          ([EXAMPLES["lotka-volterra"], "--device", "tpu"], "unknown device")):
        p = _audit(*args, "--out", str(tmp_path / "out"))
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2 and message in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
