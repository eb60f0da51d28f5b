"""Figures, tables and the paper: quick profile -> figures -> tables -> compiled PDF quoting a generated number."""
import re
import shutil
import subprocess

import pytest

from study import results
from study.report import figures, style
from study.experiments import applicable
from tests.helpers import ENV, ROOT, study


@pytest.fixture(scope="module")
def built(quick_store, tmp_path_factory):
    runs, _, r = quick_store
    assert r.returncode == 0, r.stderr
    work = tmp_path_factory.mktemp("paper")
    (work / "paper").mkdir()
    for f in ("main.tex", "refs.bib"):
        shutil.copy(ROOT / "paper" / f, work / "paper" / f)
    fig = study("figures", "--profile", "quick", "--runs-dir", str(runs), "--out", str(work / "figures"),
                "--tables-out", str(work / "paper" / "generated"))
    return runs, work, fig


def test_every_figure_and_table_is_written(built):
    runs, work, fig = built
    assert fig.returncode == 0, fig.stderr
    for name in figures.FIGURES:
        for ext in ("pdf", "png"):
            assert (work / "figures" / f"{name}.{ext}").stat().st_size > 1000
    for t in ("main_results", "memory", "bench", "steps", "tolerance", "claims", "variants", "numbers"):
        assert (work / "paper" / "generated" / f"{t}.tex").exists(), t
    numbers = (work / "paper" / "generated" / "numbers.tex").read_text()
    assert re.search(r"\\newcommand\{\\BayesAcc\}\{87\.\d\}", numbers)
    assert r"\newcommand{\ParamsResNet}{364{,}236}" in numbers


def test_figures_are_byte_identical_for_identical_runs(built, tmp_path):
    runs, work, _ = built
    view = results.load(runs, "quick")
    for name in ("fig02_main", "fig05_memory", "fig08_convergence"):
        style.save(figures.FIGURES[name][0](view, tmp_path), tmp_path, name)
        for ext in ("pdf", "png"):
            assert (tmp_path / f"{name}.{ext}").read_bytes() == (work / "figures" / f"{name}.{ext}").read_bytes(), name


def test_missing_runs_skip_a_figure_with_one_line(tmp_path, quick_store):
    runs, _, _ = quick_store
    partial = tmp_path / "runs"
    shutil.copytree(runs / "convergence", partial / "convergence")
    r = study("figures", "--profile", "quick", "--runs-dir", str(partial), "--out", str(tmp_path / "f"),
              "--tables-out", str(tmp_path / "g"))
    assert r.returncode == 3
    assert (tmp_path / "f" / "fig08_convergence.pdf").exists()
    assert (f"fig02_main: skipped: experiment 'main' has 0 of {len(applicable('spiral'))} runs; complete it with: "
            f"study run-all --experiments main --profile quick --runs-dir {partial}") in r.stdout
    assert not (tmp_path / "f" / "fig02_main.pdf").exists()


@pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
                    reason="needs latexmk and pdftotext (apt-get install latexmk texlive-... poppler-utils)")
def test_paper_compiles_and_quotes_generated_numbers(built):
    runs, work, fig = built
    r = study("paper", "--paper-dir", str(work / "paper"))
    assert r.returncode == 0, r.stderr + r.stdout
    pdf = work / "paper" / "main.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    numbers = (work / "paper" / "generated" / "numbers.tex").read_text()
    bayes = re.search(r"\\newcommand\{\\BayesAcc\}\{([\d.]+)\}", numbers).group(1)
    euler_test = re.search(r"\\newcommand\{\\EulerTestAcc\}\{([\d.]+)\}", numbers).group(1)
    assert f"{bayes}%" in text.replace(" %", "%")
    assert euler_test in text


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="needs latexmk (apt-get install latexmk texlive-...)")
def test_the_paper_build_is_byte_reproducible(built, tmp_path):
    """Two builds from fresh copies of the same sources, as `make all` on two clones: the same bytes."""
    _, work, _ = built
    pdfs = []
    for copy in ("a", "b"):
        shutil.copytree(work / "figures", tmp_path / copy / "figures")
        shutil.copytree(work / "paper", tmp_path / copy / "paper",
                        ignore=shutil.ignore_patterns("main.pdf", "*.aux", "*.log", "*.fls", "*.fdb_latexmk", "*.bbl", "*.blg", "*.out"))
        r = study("paper", "--paper-dir", str(tmp_path / copy / "paper"))
        assert r.returncode == 0, r.stderr
        pdfs.append((tmp_path / copy / "paper" / "main.pdf").read_bytes())
    assert pdfs[0] == pdfs[1] and b"/CreationDate (D:20260101000000Z)" in pdfs[0]


def test_paper_errors_are_one_line(tmp_path):
    r = study("paper", "--paper-dir", str(tmp_path))
    assert r.returncode == 2 and "main.tex does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_view_selects_the_profiles_runs_only(quick_store, tmp_path):
    """Records of another profile, or of `study run`, in the same directory never leak into a profile's view."""
    runs, _, _ = quick_store
    mixed = tmp_path / "runs"
    shutil.copytree(runs, mixed)
    single = mixed / "single"
    single.mkdir()
    some = next((mixed / "train").glob("*.json"))
    shutil.copy(some, single / some.name)  # a `study run` record with the same hash
    quick = results.load(mixed, "quick")
    full = results.load(mixed, "full")
    assert len(quick.runs("main")) == len(applicable("spiral")) and quick.runs("main")["hash"].is_unique
    assert full.runs("main").empty and full.convergence().empty and full.trajectories().empty
    assert not quick.convergence().empty and set(quick.convergence()["solver"]) == {
        "hand-euler", "hand-midpoint", "hand-rk4", "hand-rk4-38", "tdq-euler", "tdq-midpoint", "tdq-rk4"}


def test_a_task_s_own_items_are_drawn_from_its_runs_alone(built, tmp_path):
    """study figures --tasks T: the task's own table and figures (the generic family from its description among
    them) and nothing that reads another task; numbers.tex and the claims are left as they are."""
    runs, work, _ = built
    assert (work / "paper" / "generated" / "task_density.tex").exists()
    for t in ("spiral", "dynamics", "density", "digits"):
        for kind in ("results", "curves", "cost"):
            assert (work / "figures" / f"task_{t}_{kind}.png").stat().st_size > 1000
    r = study("figures", "--profile", "quick", "--runs-dir", str(runs), "--tasks", "dynamics", "--out",
              str(tmp_path / "f"), "--tables-out", str(tmp_path / "t"))
    assert r.returncode == 0, r.stderr
    drawn = sorted(p.stem for p in (tmp_path / "f").glob("*.png"))
    assert drawn == ["fig16_dynamics_fit", "fig17_dynamics_cost", "fig20_dynamics_training", "task_dynamics_cost",
                     "task_dynamics_curves", "task_dynamics_results"]
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["dynamics.tex", "task_dynamics.tex"]
    table = (tmp_path / "t" / "task_dynamics.tex").read_text()
    assert "Euler (hand)" in table and "trajectory error, reference solve" in table and "1/1" in table


@pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("git") is None,
                    reason="needs latexmk (apt-get install latexmk texlive-...) and git")
def test_the_shipped_figures_tables_readme_and_paper_regenerate_byte_for_byte(tmp_path):
    """`make all`'s report steps on a clone of the committed tree leave `git status` clean: every figure, table,
    README block and the paper's PDF come out byte for byte as committed (on this CPU too: the log axes take the C
    library's logarithm, not numpy's AVX-512 one)."""
    import sys

    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    r = study("figures", "--runs-dir", str(clone / "runs"), "--out", str(clone / "figures"), "--tables-out",
              str(clone / "paper" / "generated"), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    g = clone / "paper" / "generated"
    subprocess.run([sys.executable, "-m", "study.report.findings", str(clone / "README.md"), str(g / "findings.md"),
                    str(g / "performance.md")], check=True, env=ENV, cwd=clone, timeout=120, capture_output=True)
    r = study("paper", "--paper-dir", str(clone / "paper"), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    changed = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert changed == "", changed
