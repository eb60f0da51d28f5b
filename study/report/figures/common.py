"""What every figure family shares: the runs a figure reads, matplotlib in the study's style, the t-based
95% interval and the bands and error bars drawn with it."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import style
from ..results import MissingRuns


def _need(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    if df is None or df.empty:
        raise MissingRuns(experiment)
    return df


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


def _results(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The ``ok`` runs of an experiment; MissingRuns if there are none."""
    return _need(_ok(df), experiment)


def _plt():
    import matplotlib.pyplot as plt

    style.apply()
    return plt


def _ci95(values) -> tuple[float, float]:
    """Mean and half-width of the t-based 95% confidence interval."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def _clip(m: float, h: float) -> list[list[float]]:
    """Error-bar extents for mean ``m`` and CI half-width ``h``, clipped to the 0-100% range."""
    return [[m - max(m - h, 0.0)], [min(m + h, 100.0) - m]]


def _band(ax, d: pd.DataFrame, x: str, y: str, colour, label=None, linestyle="-", spread: str = "ci"):
    """Mean over seeds with its t-based 95% band (``spread="ci"``), or, for quantities that vary over orders of
    magnitude between seeds or split into groups (failed runs), the median with the seeds' range (``"range"``) or
    interquartile range (``"iqr"``); no band from one seed."""
    g = d.dropna(subset=[y]).groupby(x)[y]
    if spread in ("range", "iqr"):
        lo, hi = ("min", "max") if spread == "range" else (lambda v: v.quantile(0.25), lambda v: v.quantile(0.75))
        stats = g.agg(["median", lo, hi]).reset_index()
        stats.columns = [x, "median", "min", "max"]
        ax.plot(stats[x], stats["median"], color=colour, ls=linestyle, label=label)
        if (stats["max"] > stats["min"]).any():
            ax.fill_between(stats[x], stats["min"], stats["max"], color=colour, alpha=0.15, linewidth=0)
        return
    stats = pd.DataFrame([(k, *_ci95(v)) for k, v in g], columns=[x, "mean", "half"])
    ax.plot(stats[x], stats["mean"], color=colour, ls=linestyle, label=label)
    if (stats["half"] > 0).any():
        ax.fill_between(stats[x], stats["mean"] - stats["half"], stats["mean"] + stats["half"], color=colour,
                        alpha=0.15, linewidth=0)


def seed_scatter(ax, df: pd.DataFrame, x: str, y: str) -> None:
    """Each run of each variant (faint) and the variant's median (large, labelled), in registry order."""
    for v in style.ordered(df["variant"].unique()):
        d = df[df["variant"] == v]
        ax.scatter(d[x], d[y], color=style.colour(v), marker=style.marker(v), s=9, alpha=0.35, linewidths=0)
        ax.scatter(d[x].median(), d[y].median(), color=style.colour(v), marker=style.marker(v), s=26,
                   edgecolors="k", linewidths=0.4, label=style.label(v))
