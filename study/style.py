"""One visual style for the whole study: colours, markers, sizes, and deterministic saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMN = 3.3  # inches: one paper column
TEXT = 6.9  # inches: the full text width

# Okabe-Ito colours (colour-blind safe), one per solver method; markers and line styles per backend.
METHOD_COLOURS = {
    "euler": "#0072B2",
    "rk4": "#E69F00",
    "rk4-38": "#D55E00",
    "midpoint": "#CC79A7",
    "dopri5": "#009E73",
    "resnet": "#000000",
}
BACKEND_MARKERS = {"hand": "o", "torchdiffeq": "s", "torchdiffeq-adjoint": "^", "seminorm": "v", "resnet": "D"}
BACKEND_LINES = {"hand": "-", "torchdiffeq": "--", "torchdiffeq-adjoint": ":", "seminorm": "-.", "resnet": "-"}

VARIANT_ORDER = ["euler", "rk4", "rk4-38", "resnet", "tdq-euler", "tdq-rk4", "tdq-dopri5", "adjoint-euler",
                 "adjoint-rk4", "adjoint-dopri5", "adjoint-dopri5-seminorm"]
LABELS = {
    "euler": "Euler (hand)", "rk4": "RK4 (hand)", "rk4-38": "RK4 3/8 (hand)", "resnet": "ResNet",
    "tdq-euler": "Euler (tdq)", "tdq-rk4": "RK4 3/8 (tdq)", "tdq-dopri5": "dopri5 (tdq)",
    "adjoint-euler": "Euler (adjoint)", "adjoint-rk4": "RK4 3/8 (adjoint)", "adjoint-dopri5": "dopri5 (adjoint)",
    "adjoint-dopri5-seminorm": "dopri5 (adj., seminorm)",
}


def _key(variant: str) -> tuple[str, str]:
    """(method, backend) of a variant name."""
    if variant == "resnet":
        return "resnet", "resnet"
    if variant.endswith("seminorm"):
        return "dopri5", "seminorm"
    backend = {"tdq": "torchdiffeq", "adjoint": "torchdiffeq-adjoint"}.get(variant.split("-")[0], "hand")
    method = variant.split("-", 1)[1] if backend != "hand" else variant
    if backend != "hand" and method == "rk4":
        method = "rk4-38"  # torchdiffeq's rk4 is the 3/8 rule
    return method, backend


def colour(variant: str) -> str:
    return METHOD_COLOURS[_key(variant)[0]]


def marker(variant: str) -> str:
    return BACKEND_MARKERS[_key(variant)[1]]


def line(variant: str) -> str:
    return BACKEND_LINES[_key(variant)[1]]


def label(variant: str) -> str:
    return LABELS.get(variant, variant)


def apply() -> None:
    plt.rcParams.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "lines.linewidth": 1.2,
        "lines.markersize": 4, "legend.frameon": False, "figure.dpi": 150, "savefig.dpi": 200,
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "study", "font.family": "DejaVu Sans",
    })


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Vector PDF and PNG preview, byte-identical for identical input (no dates, fixed metadata)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pdf, png = out_dir / f"{name}.pdf", out_dir / f"{name}.png"
    fig.savefig(pdf, metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}, bbox_inches="tight")
    fig.savefig(png, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return [pdf, png]
