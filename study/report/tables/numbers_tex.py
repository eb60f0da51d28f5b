"""``numbers.tex``: the numbers every table and part added, and ``n/a`` for each the paper quotes that the
runs cannot give."""
from __future__ import annotations

import re
from pathlib import Path

from ..numbers import Numbers


def numbers_tex(N: Numbers, paper: Path, log) -> str:
    """numbers.tex; every macro main.tex quotes that the runs cannot give is defined as n/a."""
    text = N.tex()
    if paper.exists():
        used = set(re.findall(r"\\([A-Z][A-Za-z]+)", paper.read_text()))
        missing = sorted(used - set(N.items))
        if missing:
            log(f"numbers.tex: {len(missing)} number(s) the paper quotes have no runs (shown as n/a): {', '.join(missing)}")
            text += "% Quoted by main.tex but not computable from these runs:\n"
            text += "".join(f"\\providecommand{{\\{m}}}{{n/a}}\n" for m in missing)
    return text
