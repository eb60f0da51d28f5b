"""The paper types no number itself: every numeral in main.tex's text comes from generated/numbers.tex.

Allowed: citations, references and labels, file names, layout lengths, names that contain digits (RK4, dopri5,
float32, the 3/8 rule), and in mathematics the structural constants 0, 1 and 2 (t in [0, 1], h_{i+1}, the
data's two dimensions).  Everything else with a digit is a hand-typed number and fails.
"""
import re
from pathlib import Path

import pytest

PAPER = Path(__file__).resolve().parents[2] / "paper" / "main.tex"
NAMES = re.compile(r"\b(?:RK4|rk4|dopri5|float32|float64|fig\d+\w*|3/8)\b")
COMMANDS = re.compile(r"\\(?:cite[pt]?|ref|label|input|includegraphics|bibliography|bibliographystyle|resizebox|"
                      r"graphicspath|url)\*?(?:\[[^\]]*\])?\{[^}]*\}")
LAYOUT = re.compile(r"\d*\.?\d+\s*(?:pt|cm|mm|in|em|ex)\b|\[t\]|\\itemsep\d+pt")
MATH = re.compile(r"\$[^$]*\$")


def hand_typed_numbers(tex: str) -> list[str]:
    body = tex.split("\\begin{document}", 1)[1]
    body = re.sub(r"(?<!\\)%.*", "", body)  # comments
    body = COMMANDS.sub(" ", body)
    body = LAYOUT.sub(" ", body)
    body = NAMES.sub(" ", body)
    found = []
    for m in MATH.finditer(body):
        found += [f"${n}$ in {m.group(0)}" for n in re.findall(r"\d+(?:\.\d+)?", m.group(0)) if n not in ("0", "1", "2")]
    text = MATH.sub(" ", body)
    for m in re.finditer(r"(?<![A-Za-z\\])\d+(?:[.,]\d+)*", text):
        found.append(f"{m.group(0)!r} in ...{text[max(0, m.start() - 40): m.end() + 20]!r}...")
    return found


def test_main_tex_types_no_number():
    found = hand_typed_numbers(PAPER.read_text())
    assert not found, "hand-typed numbers in paper/main.tex (take them from numbers.tex):\n" + "\n".join(found)


def test_the_check_finds_what_it_should():
    doc = "\\begin{document}\n"
    assert hand_typed_numbers(doc + "we ran 500 epochs") and hand_typed_numbers(doc + "$10^{-3}$")
    assert hand_typed_numbers(doc + "about 0.4 even for dopri5")
    assert not hand_typed_numbers(doc + "RK4 and dopri5 in float32, the 3/8 rule \\citep{a2019}, Fig.~\\ref{fig:x}, "
                                  "$t \\in [0, 1]$, $h_{i+1}$, \\Epochs{} epochs % 500 in a comment")


@pytest.mark.parametrize("name", ["findings", "performance"])
def test_readme_blocks_are_the_generated_ones(name):
    """README quotes paper/generated/{findings,performance}.md (numbers from the runs) verbatim; `make readme`
    syncs them."""
    from study.report import findings

    root = PAPER.parents[1]
    readme = (root / "README.md").read_text()
    generated = (root / "paper" / "generated" / f"{name}.md").read_text()
    assert findings.block(readme, name) == generated, f"README's {name} differ from the runs': run `make readme`"


def test_performance_prose_takes_every_number_from_the_runs():
    from study.report import findings

    names = set(re.findall(r"\{([A-Za-z]+)\}", findings.PERFORMANCE))
    text = findings.render_performance({n: "N" for n in names}, "BENCH", "COST")
    assert "n/a" not in text and not re.search(r"\{[A-Za-z_]+\}", text) and "BENCH" in text and "COST" in text
    prose = re.sub(r"\b(?:RK4|dopri5|float32|3/8|-?x5)(?![A-Za-z0-9])", " ", findings.PERFORMANCE)
    prose = re.sub(r"\{[A-Za-z_]+\}", " ", prose)
    assert not re.findall(r"(?<![A-Za-z])\d", prose), "the performance block types a number instead of the runs'"


def test_findings_take_every_number_from_numbers_tex():
    from study.report import findings

    names = set(re.findall(r"\{([A-Za-z]+)\}", findings.TEMPLATE))
    text = findings.render({n: "N" for n in names})
    assert "n/a" not in text and not re.search(r"\{[A-Za-z]+\}", text)
    prose = re.sub(r"\b(?:RK4|dopri5|float32|float64|3/8|t 95%)\b", " ", findings.TEMPLATE.split("\n", 2)[2])
    prose = re.sub(r"\{[A-Za-z]+\}", " ", prose)
    assert not re.findall(r"(?<![A-Za-z])\d", prose), "findings type a number instead of taking it from numbers.tex"
