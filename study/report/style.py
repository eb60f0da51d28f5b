"""One visual style for the whole study: colours, markers, sizes, and deterministic saving."""
from __future__ import annotations

import io
import math
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.scale as mscale
import numpy as np

from .. import config, variants

COLUMN = 3.3  # inches: one paper column
TEXT = 6.9  # inches: the full text width

# Colours by solver method, markers and line styles by family (how a variant is solved and differentiated).  The
# study's methods and families have their own, given here; one added later (a row of study.config.METHODS, a backend
# of study.config.BACKENDS) takes the next unused entry of the EXTRA_* sequences, in the registry's order, so a new
# method is drawn without an edit here and every existing figure keeps its look.
# Okabe-Ito colours (colour-blind safe), one per solver method; "resnet" and "none" are the models without a solver.
METHOD_COLOURS = {
    "euler": "#0072B2",
    "rk4": "#E69F00",
    "rk4-38": "#D55E00",
    "midpoint": "#CC79A7",
    "dopri5": "#009E73",
    "backward-euler": "#661100",  # the implicit methods (study.engine.implicit)
    "trapezoid": "#6699CC",
    "kvaerno3": "#AA7744",
    "resnet": "#000000",
    "none": "#999999",
}
BACKEND_MARKERS = {"hand": "o", "torchdiffeq": "s", "torchdiffeq-adjoint": "^", "seminorm": "v", "resnet": "D",
                   "hand-adjoint": "P", "hand-checkpoint": "X", "none": "d"}
BACKEND_LINES = {"hand": "-", "torchdiffeq": "--", "torchdiffeq-adjoint": ":", "seminorm": "-.", "resnet": "-",
                 "hand-adjoint": (0, (3, 1, 1, 1, 1, 1)), "hand-checkpoint": (0, (5, 1)), "none": "-"}
# For methods without a colour above: Okabe-Ito's unused sky blue, then Paul Tol's muted scheme (colour-blind safe),
# then Okabe-Ito's yellow (faint on white: last).  Past the end the sequence repeats.
EXTRA_COLOURS = ("#56B4E9", "#332288", "#117733", "#882255", "#44AA99", "#AA4499", "#999933", "#88CCEE", "#CC6677",
                 "#DDCC77", "#F0E442")
EXTRA_MARKERS = ("<", ">", "p", "h", "*", "H", "8")
EXTRA_LINES = ((0, (1, 1)), (0, (5, 1, 1, 1)), (0, (7, 2)), (0, (2, 2, 6, 2)), (0, (4, 1, 1, 1, 1, 1, 1, 1)))


def _pick(name: str, given: dict, registered, extra: tuple):
    """``given[name]``; else the entry of ``extra`` (less those ``given`` uses) at ``name``'s place among the
    ``registered`` names without one; a name not registered either gets one by a hash of its name (stable across
    runs, unlike ``hash``).  Never a KeyError: a figure draws every method and family the registry knows."""
    if name in given:
        return given[name]
    free = [x for x in extra if x not in given.values()] or list(extra)
    new = [n for n in dict.fromkeys(registered) if n not in given]
    i = new.index(name) if name in new else len(new) + zlib.crc32(name.encode())
    return free[i % len(free)]


def _methods() -> list[str]:
    """Every name a variant's :attr:`~study.variants.Variant.method` can be: the method table's, in its order,
    and the models without a solver."""
    return [*config.METHODS, *(m for m in config.MODELS if m != "ode")]


def _families() -> list[str]:
    """Every name a variant's :attr:`~study.variants.Variant.family` can be, in the registry's order."""
    return [*config.BACKENDS, "seminorm", *(m for m in config.MODELS if m != "ode")]


def method_colour(method: str) -> str:
    """The colour of a solver method (or of ``resnet``, ``none``): its own, or the next unused one of
    :data:`EXTRA_COLOURS` in :data:`study.config.METHODS`'s order."""
    return _pick(method, METHOD_COLOURS, _methods(), EXTRA_COLOURS)


def family_marker(family: str) -> str:
    """The marker of a family (``hand``, ``torchdiffeq``, ..., :attr:`~study.variants.Variant.family`)."""
    return _pick(family, BACKEND_MARKERS, _families(), EXTRA_MARKERS)


def family_line(family: str):
    """The line style of a family."""
    return _pick(family, BACKEND_LINES, _families(), EXTRA_LINES)


def method_label(method: str) -> str:
    """A method's display name from the method table (``rk4-38`` -> ``RK4 3/8``); other names as they are."""
    m = config.METHODS.get(method)
    return m.label if m is not None else method


def method_macro(method: str) -> str:
    """A method's stem in macro names, from the method table (``rk4-38`` -> ``RKtte``)."""
    m = config.METHODS.get(method)
    if m is None:
        raise ValueError(f"method {method!r} is not in the study's method table (study.config.METHODS)")
    return m.macro


def ordered(names) -> list[str]:
    """The registered variants among ``names``, in the registry's order (every figure's and table's order)."""
    present = set(names)
    return [v for v in variants.VARIANTS if v in present]


def colour(variant: str) -> str:
    """The colour of a variant's solver method (the ResNet has its own)."""
    return method_colour(variants.get(variant).method)


def marker(variant: str) -> str:
    """The marker of how a variant is solved and differentiated (hand, torchdiffeq, adjoint, ...)."""
    return family_marker(variants.get(variant).family)


def line(variant: str):
    """The line style of how a variant is solved and differentiated."""
    return family_line(variants.get(variant).family)


def label(variant: str) -> str:
    """A variant's display name; other names (solver labels of the sweeps) are shown as they are."""
    return variants.VARIANTS[variant].label if variant in variants.VARIANTS else variant


def _libm_log(fn):
    """``fn`` (a ``math`` logarithm) over an array: the C library's correctly rounded scalar result, the same on
    every x86-64 CPU. numpy's AVX-512 logarithms round differently in the last bit, which moves a path
    coordinate across its 6-digit rounding in the PDF: on such a CPU fig17 and fig19 changed in their last digit."""
    def log(values):
        if isinstance(values, np.ma.MaskedArray):
            return {math.log10: np.ma.log10, math.log2: np.ma.log2}.get(fn, np.ma.log)(values)
        a = np.asarray(values, dtype=float)
        out = np.full(a.shape, np.nan)
        pos = np.isfinite(a) & (a > 0)
        out[pos] = [fn(x) for x in a[pos].tolist()]
        out[a == 0] = -np.inf
        out[a == np.inf] = np.inf
        return out
    return log


class _ExactLogTransform(mscale.LogTransform):
    def __init__(self, base, nonpositive="clip"):
        super().__init__(base, nonpositive)
        self._log_funcs = {np.e: _libm_log(math.log), 2: _libm_log(math.log2), 10: _libm_log(math.log10)}


class ExactLogScale(mscale.LogScale):
    """Matplotlib's log scale with a CPU-independent logarithm (registered as "log" by :func:`apply`)."""

    def __init__(self, *args, base=10, subs=None, nonpositive="clip"):  # matplotlib < 3.11 passes the axis
        super().__init__(*args, base=base, subs=subs, nonpositive=nonpositive)
        self._transform = _ExactLogTransform(base, nonpositive)


def apply() -> None:
    mscale.register_scale(ExactLogScale)
    plt.rcParams.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "lines.linewidth": 1.2,
        "lines.markersize": 4, "legend.frameon": False, "figure.dpi": 150, "savefig.dpi": 200,
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "study", "font.family": "DejaVu Sans",
    })


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Vector PDF and PNG preview, byte-identical for identical input (no dates, fixed metadata), written
    together atomically: both are drawn and written to temporary files before either replaces its previous
    file, so an interrupted or failed save (a full disk) leaves the previous pair, never a truncated file or a
    new PDF beside an old PNG."""
    from ..store import write_files_atomic

    files = []
    try:
        for ext, metadata in (("pdf", {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}),
                              ("png", {"Software": None})):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, metadata=metadata, bbox_inches="tight")
            files.append((out_dir / f"{name}.{ext}", buf.getvalue()))
    finally:
        plt.close(fig)
    return write_files_atomic(files)
