"""A solver method is a tableau, a row of the method table and a variant: the report layer takes its colour, marker,
label and macro names from the registry, so a method added there is drawn and named with no edit to the report
layer (issue 31: Heun's method failed seven figures and tables with ``KeyError: 'heun'``).  And a figure or table
that fails says where: its one line names the file and line that raised."""
import re
from fractions import Fraction as F
from pathlib import Path

import pandas as pd
import pytest

from study import config, experiments, tasks, variants
from study.config import Method, solver_label
from study.report import style
from study.report.numbers import Numbers
from study.report.results import Outcome, attempt, failure

HEUN = Method("heun", 2, 2, "Heun", "Heun", tableau="heun")


@pytest.fixture
def heun(monkeypatch):
    """Heun's method (explicit trapezoid: c = [0, 1], a = [[], [1]], b = [1/2, 1/2], order 2) registered as a new
    method would be: its tableau, its row of METHODS and a hand variant solving with it."""
    from study.engine import solvers

    tableau = solvers._tableau("heun", [0, 1], [[], [1]], [F(1, 2), F(1, 2)], order=2)
    monkeypatch.setitem(solvers.TABLEAUS, "heun", tableau)
    monkeypatch.setitem(config.METHODS, "heun", HEUN)
    fixed = tuple(n for n, m in config.METHODS.items() if not m.adaptive and m.implicit is None)
    monkeypatch.setattr(config, "FIXED_METHODS", fixed)
    monkeypatch.setattr(experiments, "FIXED_METHODS", fixed)
    extra = variants.Variant("heun", "Heun (hand)", "Heun",
                             {"model": "ode", "backend": "hand", "method": "heun", "steps": 20})
    monkeypatch.setattr(variants, "VARIANTS", variants._entries(*variants.VARIANTS.values(), extra))
    assert solvers.get_tableau("heun").stages == HEUN.stages and variants.variant_config("heun").stages == 2
    return "heun"


def test_the_studys_methods_keep_their_colours_markers_and_lines():
    """Every existing figure stays as it was: the given colours, markers and lines are the ones looked up."""
    for method, colour in style.METHOD_COLOURS.items():
        assert style.method_colour(method) == colour
    for family, marker in style.BACKEND_MARKERS.items():
        assert style.family_marker(family) == marker and style.family_line(family) == style.BACKEND_LINES[family]
    assert style.colour("tdq-rk4") == "#D55E00" and style.marker("adjoint-dopri5-seminorm") == "v"


def test_a_new_method_has_a_style_of_its_own_and_its_names_from_the_registry(heun):
    from study.report.tables.common import _solver_macro
    from study.report.tables.kinds import _solver_word

    colour = style.colour(heun)
    others = {style.method_colour(m) for m in [*config.METHODS, "resnet", "none"] if m != heun}
    assert colour == style.EXTRA_COLOURS[0] and colour not in others  # the first colour no method has
    assert style.method_colour(heun) == colour  # deterministic
    assert style.marker(heun) == style.marker("euler") and style.line(heun) == style.line("euler")  # hand backprop
    assert style.label(heun) == "Heun (hand)" and style.method_label(heun) == "Heun"
    assert style.method_macro(heun) == "Heun" and style.ordered([heun, "euler"]) == ["euler", heun]
    assert _solver_macro("hand", heun) == "Heun" and _solver_macro("hand-checkpoint", heun) == "CkptHeun"
    words = [_solver_word(solver_label(s)) for s in experiments.transfer_solvers(20)]
    assert words == ["Euler", "Midpoint", "RKfour", "RKtte", "Heun", "DopriTolThree", "DopriTolSix", "Ref"]
    with pytest.raises(ValueError, match="not in the study's method table"):
        style.method_macro("rk5")


def test_methods_and_families_added_later_take_the_next_unused_style_in_registry_order(heun, monkeypatch):
    monkeypatch.setitem(config.METHODS, "ralston", Method("ralston", 2, 2, "Ralston", "Ralston", tableau="ralston"))
    assert [style.method_colour(m) for m in ("heun", "ralston")] == list(style.EXTRA_COLOURS[:2])
    assert style.method_colour("unregistered") == style.method_colour("unregistered")  # a colour, never a KeyError
    monkeypatch.setattr(config, "BACKENDS", (*config.BACKENDS, "hand-new"))
    assert style.family_marker("hand-new") == style.EXTRA_MARKERS[0]
    assert style.family_marker("hand-new") not in style.BACKEND_MARKERS.values()
    assert style.family_line("hand-new") == style.EXTRA_LINES[0]
    assert style.family_line("hand-new") not in style.BACKEND_LINES.values()


class _KindsView:
    """The transfer and work-precision frames every task's records would give, Heun's among them."""

    def __init__(self):
        solvers = [solver_label(s) for s in experiments.transfer_solvers(20)]
        self._transfer = pd.DataFrame([{"variant": v, "seed": 0, "status": "ok", "solver": s, "value": 0.9}
                                       for v in ("euler", "heun") for s in solvers])
        solution = [{"field": "trained", "what": "solution", "backend": "hand", "method": "heun", "nfe": n,
                     "error": 1e-2 * (10 / n) ** 2, "nfe_backward": None} for n in (10, 20, 40, 80)]
        gradient = [{"field": "trained", "what": "gradient", "backend": "hand-checkpoint", "method": "heun", "nfe": n,
                     "error": e, "nfe_backward": n} for n, e in ((10, 1e-4), (20, 1e-5))]
        self._wp = pd.DataFrame(solution + gradient)

    def transfer(self, experiment):
        return self._transfer

    def workprecision(self, experiment):
        return self._wp

    def workprecision_reference_errors(self, experiment):
        return [{"trained": 1e-9}]


def test_a_new_methods_tables_and_figures_build(heun, tmp_path):
    from study.report.figures.kinds import fig_transfer, fig_work_precision
    from study.report.tables.kinds import transfer_numbers, workprecision_numbers

    view, N = _KindsView(), Numbers()
    tex = transfer_numbers(view, N)
    assert N.items["TrSpiralHeunHeun"] == "90.0" and N.items["TrSpiralEulerHeun"] == "90.0"
    assert N.items["TrSpiralHeunDopriTolThree"] == "90.0" and "Heun (hand) &" in tex
    workprecision_numbers(view, N)
    assert N.items["WpSpiralHeunOrder"] == "2.00" and N.items["WpSpiralCkptHeunBestGrad"] == "1.0e-05"
    assert N.items["WpSpiralEulerOrder"] == "n/a"  # no rows for it here
    import matplotlib.pyplot as plt

    for draw in (fig_transfer, fig_work_precision):
        plt.close(draw(view, tmp_path))


def test_a_new_method_is_drawn_in_the_main_figure(heun, tmp_path):
    import matplotlib.pyplot as plt

    from study.report.figures.accuracy import fig_main
    from tests.unit.test_tables import train_record, view_of

    recs = [train_record(v, s, 0.85 + 0.01 * s, 0.9) for v in ("euler", heun) for s in range(3)]
    fig = fig_main(view_of("main", recs), tmp_path)
    try:
        drawn = {line.get_color() for ax in fig.axes for line in ax.get_lines()}
        assert style.colour(heun) in drawn and style.colour("euler") in drawn
    finally:
        plt.close(fig)


def _source_line(where: str) -> str:
    path, line = where.rsplit(":", 1)
    return (Path(style.__file__).resolve().parents[2] / path).read_text().splitlines()[int(line) - 1]


def test_a_failed_item_is_one_line_naming_the_file_and_line_that_raised():
    from study.report.figures.kinds import transfer_matrix

    outcome, lines = Outcome(), []
    assert attempt("fig99_example", lambda: style.colour("no-such-variant"), outcome, lines.append) is None
    (line,) = lines
    assert outcome.failed == [line]
    m = re.fullmatch(r"fig99_example: failed: KeyError: \"unknown variant 'no-such-variant'; .*\" "
                     r"\((study/variants\.py:\d+)\)", line)
    assert m and "raise KeyError" in _source_line(m[1])  # where it was raised, not where attempt called it
    # raised inside pandas: the innermost frame in the study package, the line that asked pandas
    attempt("table.tex", lambda: transfer_matrix(pd.DataFrame({"x": [1]})), outcome, lines.append)
    m = re.fullmatch(r"table\.tex: failed: KeyError: 'status' \((study/report/figures/kinds\.py:\d+)\)", lines[-1])
    assert m and 'df["status"]' in _source_line(m[1])
    # a message of several lines stays one line; code outside the package is named by its own file
    attempt("fig98", lambda: (_ for _ in ()).throw(ValueError("first\nsecond")), outcome, lines.append)
    assert re.fullmatch(r"fig98: failed: ValueError: first second \(tests/unit/test_new_method\.py:\d+\)", lines[-1])
    assert len(outcome.failed) == 3 and not outcome.skipped


def test_failure_names_an_exception_without_a_message():
    try:
        style.ordered(None)
    except TypeError as exc:
        assert re.fullmatch(r"TypeError: .+ \(study/report/style\.py:\d+\)", failure(exc))
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        assert re.fullmatch(r"KeyboardInterrupt \(tests/unit/test_new_method\.py:\d+\)", failure(exc))
