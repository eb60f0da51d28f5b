"""The audit's figures (PNG, no torch): cost against the held-out metric, work-precision of the solution and of the
gradient on the recommended cell's trained models, evaluations per iteration over training, and ``rho h`` against
each method's stability limit."""
from __future__ import annotations

from pathlib import Path

from .cells import label

COLOURS = {"euler": "#0072B2", "midpoint": "#56B4E9", "rk4-38": "#E69F00", "dopri5": "#009E73"}
MARKERS = {"direct": "o", "checkpoint": "s", "adjoint": "^"}
GRADIENT_COLOURS = {"hand direct": "#0072B2", "hand checkpoint": "#56B4E9", "hand adjoint": "#D55E00",
                    "torchdiffeq direct": "#009E73", "torchdiffeq adjoint": "#CC79A7"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log(ax, axis: str = "x") -> None:
    """Log-axis ticks as plain numbers (5, 10, 20), not powers."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for a in ([ax.xaxis] if axis == "x" else [ax.xaxis, ax.yaxis]):
        a.set_major_formatter(fmt)
        a.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _cost(plt, df, out: Path, primary: str) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ok = df[(df.status == "ok") & df.primary_own.notna()]
    for (method, grad, impl), g in ok.groupby(["method", "gradient", "implementation"]):
        ax.scatter(g.time_per_iteration_s * 1e3, g.primary_own, color=COLOURS[method], marker=MARKERS[grad],
                   facecolor=COLOURS[method] if impl == "hand" else "none", s=36, label=f"{impl} {method} {grad}")
    ax.set_xscale("log")
    _plain_log(ax)
    ax.set_xlabel("training time per iteration (ms, one thread)")
    ax.set_ylabel(f"held-out {primary}, training solver")
    ax.set_title("cost against the metric (each mark a seed; filled: hand engine, open: torchdiffeq)", fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=130)
    plt.close(fig)
    return "cost.png"


def _workprecision(plt, recs, cell: str | None, out: Path) -> str | None:
    measured = [r for r in recs if r["status"] == "ok" and r["config"]["cell"] is not None
                and r["workprecision"]["solution"]]
    from .report import measured_cell

    cell = measured_cell([{"model": label(r["config"]["cell"])} for r in measured], cell)
    mine = [r for r in measured if label(r["config"]["cell"]) == cell]
    if not mine:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for r in mine:
        sol = r["workprecision"]["solution"]
        for method in COLOURS:
            rows = [x for x in sol if x["method"] == method and x["error"] is not None and x["error"] > 0]
            a.plot([x["nfe"] for x in rows], [x["error"] for x in rows], "o-", color=COLOURS[method], ms=3, lw=1,
                   label=method if r is mine[0] else None)
        grad = [x for x in r["workprecision"]["gradient"] if "tol" in x and x["error"] is not None and x["error"] > 0]
        for key, colour in GRADIENT_COLOURS.items():
            rows = [x for x in grad if f"{x['implementation']} {x['gradient']}" == key]
            b.plot([x["nfe"] for x in rows], [x["error"] for x in rows], "o-", color=colour, ms=3, lw=1,
                   label=key if r is mine[0] else None)
    for ax, what in ((a, "solution (states at the observation times)"), (b, "loss gradient, dopri5 tolerances")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax)
        ax.set_xlabel("evaluations of the field")
        ax.set_ylabel("relative error against the float64 reference")
        ax.set_title(what, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"work-precision on the trained models of {cell} (one line per seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "workprecision.png", dpi=130)
    plt.close(fig)
    return "workprecision.png"


def _nfe(plt, recs, out: Path) -> str | None:
    adaptive = [r for r in recs if r["config"]["cell"] is not None and "tol" in r["config"]["cell"]
                and r.get("curves", {}).get("iteration")]
    if not adaptive:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    seen = set()
    for r in adaptive:
        c, cell = r["curves"], r["config"]["cell"]
        key = label(cell)
        colour = GRADIENT_COLOURS[f"{cell['implementation']} {cell['gradient']}"]
        ax.plot(c["iteration"], [f + b for f, b in zip(c["nfe_forward"], c["nfe_backward"])], lw=0.8, color=colour,
                ls="-" if cell["tol"] >= 1e-3 else "--", label=None if key in seen else key)
        seen.add(key)
    ax.set_xlabel("iteration")
    ax.set_ylabel("evaluations (forward + backward)")
    ax.set_title("dopri5's evaluations per iteration over training (a rising line: the field stiffens)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "nfe.png", dpi=130)
    plt.close(fig)
    return "nfe.png"


def _stiffness(plt, v: dict, out: Path) -> str | None:
    cells = [c for c in v["cells"] if any(x is not None for x in c["rho_h"])]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(cells) + 1.4))
    for i, c in enumerate(cells):
        vals = [x / c["limit"] for x in c["rho_h"] if x is not None]
        ax.scatter(vals, [i] * len(vals), color=COLOURS[c["method"]], s=18)
    ax.axvline(1.0, color="0.3", lw=1, ls="--")
    ax.set_yticks(range(len(cells)), [c["cell"] for c in cells], fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("rho h / stability limit (end of training; right of the dashed line: beyond the limit)")
    fig.tight_layout()
    fig.savefig(out / "stiffness.png", dpi=130)
    plt.close(fig)
    return "stiffness.png"


def draw(recs: list[dict], v: dict, out: Path, primary: str) -> list[str]:
    """Every figure into ``out``; their file names (figures with nothing to draw are left out)."""
    plt = _plt()
    names = []
    if len(v["frame"]):
        names.append(_cost(plt, v["frame"], out, primary))
    names.append(_workprecision(plt, recs, v["method"]["recommended"], out))
    names.append(_nfe(plt, recs, out))
    names.append(_stiffness(plt, v, out))
    return [n for n in names if n]
