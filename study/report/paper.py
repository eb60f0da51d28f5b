"""``study paper``: compile ``paper/main.tex`` with latexmk, byte-reproducibly.

The same sources give the same ``main.pdf``, byte for byte: the build runs with
a fixed ``SOURCE_DATE_EPOCH`` (``FORCE_SOURCE_DATE=1``), so pdfTeX writes no
wall-clock dates, and ``main.tex`` sets ``\\pdftrailerid{}``, so the PDF has no
random file identifier.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..checks import UserError

TEX_PACKAGES = "latexmk texlive-latex-recommended texlive-latex-extra texlive-science texlive-fonts-recommended"
SOURCE_DATE_EPOCH = "1767225600"  # 2026-01-01T00:00:00Z: the date every build of the paper carries


def compile_pdf(paper_dir: Path) -> Path:
    main_tex = paper_dir / "main.tex"
    if not main_tex.is_file():
        raise UserError(f"{main_tex} does not exist")
    if not (paper_dir / "generated" / "numbers.tex").is_file():
        raise UserError(f"{paper_dir / 'generated' / 'numbers.tex'} is missing; run 'study figures' first")
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        raise UserError(f"latexmk/pdflatex not found; install them: apt-get install {TEX_PACKAGES}")
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "FORCE_SOURCE_DATE": "1"}
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "main.tex"]
    # latexmk relays bibtex and pdfTeX output, which need not be UTF-8 (a name with an umlaut in the .bib)
    r = subprocess.run(cmd, cwd=paper_dir, capture_output=True, text=True, encoding="utf-8", errors="replace", env=env)
    if r.returncode != 0:
        log = (paper_dir / "main.log").read_text(errors="replace") if (paper_dir / "main.log").exists() else r.stdout
        missing = re.search(r"File `([^']+\.(?:sty|cls))' not found", log)
        if missing:
            raise UserError(f"LaTeX package file {missing.group(1)} is missing; install: apt-get install {TEX_PACKAGES}")
        err = re.search(r"^(?:\S+:\d+: |! )(.+)$", log, re.M)
        raise UserError(f"LaTeX failed: {err.group(1) if err else 'see ' + str(paper_dir / 'main.log')}")
    return paper_dir / "main.pdf"
