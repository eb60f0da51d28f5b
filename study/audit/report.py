"""The audit's report from its records (no torch): a recommendation table made by the stated rules
(:mod:`study.audit.rules`), each rule beside its verdict, the per-cell table with every seed's value, and four
figures (cost against the metric, work-precision of the solution and of the gradient, evaluations over training,
stiffness), as ``report.md``, ``report.html`` and PNGs; and the one-screen summary ``study audit`` prints."""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd

from . import rules
from .cells import label, solver_label



def _order(rec: dict) -> tuple:
    """A record's place: its cell's in its budget's plan, then its seed (the given model last)."""
    from .cells import BUDGETS, cells

    c = rec["config"]
    if c["cell"] is None or c["budget"] not in BUDGETS:
        return (math.inf, 0)
    plan = [label(x) for x in cells(BUDGETS[c["budget"]])]
    return (plan.index(label(c["cell"])) if label(c["cell"]) in plan else len(plan), c["seed"])


def frame(recs: list[dict]) -> pd.DataFrame:
    """One row per trained model."""
    rows = []
    for r in recs:
        cell = r["config"]["cell"]
        if cell is None:
            continue
        m = r["metrics"]
        rows.append({"cell": label(cell), "solver": solver_label(cell), "method": cell["method"],
                     "gradient": cell["gradient"], "implementation": cell["implementation"], "seed": r["config"]["seed"],
                     "status": r["status"], "reason": r.get("reason"), "primary_own": m.get("test_primary_own"),
                     **{k: m.get(k) for k in ("test_primary_ref", "ode_gap", "time_per_iteration_s",
                                              "nfe_per_iteration", "nfe_trend", "rho_h", "limit", "rho_end",
                                              "rho_start", "field_err")}})
    return pd.DataFrame(rows)


def _gradient_rows(recs) -> list[dict]:
    return [{**row, "seed": r["config"]["seed"], "model": label(r["config"]["cell"])} for r in recs
            if r["config"]["cell"] is not None
            and r["status"] == "ok" for row in r["workprecision"]["gradient"]]


def measured_cell(rows: list[dict], cell: str | None) -> str | None:
    """``cell`` if its models' work-precision was measured, else the hand engine's backpropagation cell of the same
    solver (the quick budget measures those only)."""
    models = {r["model"] for r in rows}
    if cell is None or cell in models:
        return cell
    impl, rest = cell.split(" ", 1)
    solver = rest.rsplit(" ", 1)[0]
    return f"hand {solver} direct" if f"hand {solver} direct" in models else cell


def _adjoint_lines(rows: list[dict], cell: str | None) -> list[str]:
    """The continuous adjoint's gradient error per seed (and backpropagation's beside it), on the recommended cell's
    trained models, at each dopri5 tolerance."""
    cell = measured_cell(rows, cell)
    mine = [r for r in rows if r["model"] == cell and "tol" in r]
    if not mine:
        return []
    out = ["", f"## The continuous adjoint, per seed ({cell}'s trained models)", "",
           "| seed | dopri5 tolerance | hand adjoint | torchdiffeq adjoint | backpropagation (hand) |", "|---|---|---|---|---|"]
    for seed in sorted({r["seed"] for r in mine}):
        for tol in sorted({r["tol"] for r in mine}, reverse=True):
            err = {f"{r['implementation']} {r['gradient']}": r["error"] for r in mine if r["seed"] == seed
                   and r["tol"] == tol}
            out.append(f"| {seed} | {tol:g} | {_fmt(err.get('hand adjoint'), '.2g')} | "
                       f"{_fmt(err.get('torchdiffeq adjoint'), '.2g')} | {_fmt(err.get('hand direct'), '.2g')} |")
    return out


def verdicts(recs: list[dict], higher: bool) -> dict:
    df = frame(recs)
    cells = rules.summarise(df, higher) if len(df) else []
    method = rules.recommend(cells, higher)
    grads = _gradient_rows(recs)
    return {"cells": cells, "method": method, "gradients": rules.gradients(grads, cells), "gradient_rows": grads,
            "ode": rules.is_ode(cells, method["recommended"]), "stiffness": rules.stiffness(cells), "frame": df}


def _fmt(v, spec=".4g") -> str:
    return "n/a" if v is None or v != v else format(v, spec)


def _markdown(v: dict, name: str, primary: str, figures: list[str], given: dict | None) -> str:
    lines = [f"# Solver audit: {name}", "",
             f"Metric: held-out `{primary}`; every number below is from this audit's records."
             + (" Fewer than 3 seeds per cell: the verdicts are indicative (`--budget standard` runs 3)."
                if v["cells"] and min(c["seeds"] for c in v["cells"]) < 3 else ""), "",
             "## Recommendations", "", "| question | verdict | rule |", "|---|---|---|"]
    g_avoid = [g for g in v["gradients"] if g["verdict"].startswith("avoid")]
    for q, verdict, rule in (
            ("which solver", v["method"]["verdict"], v["method"]["rule"]),
            ("which gradient to avoid", "; ".join(f"{g['method']}: {g['verdict']}" for g in g_avoid) or "none",
             rules.GRADIENT_RULE),
            ("is the trained model an ODE", v["ode"]["verdict"], v["ode"]["rule"]),
            ("stiffness", v["stiffness"]["verdict"], v["stiffness"]["rule"])):
        lines.append(f"| {q} | {verdict} | {rule} |")
    truth = any(c["field_err"] for c in v["cells"])
    lines += ["", "## Every cell", "", f"| cell | ok/seeds | {primary} per seed | median | ms / iteration | "
              "evaluations / iteration | ODE gap per seed | rho h (limit) |" + (" field error per seed |" if truth else ""),
              "|---|---|---|---|---|---|---|---|" + ("---|" if truth else "")]
    for c in v["cells"]:
        seeds = ", ".join(_fmt(x) for x in c["metric"]) or "n/a"
        gaps = ", ".join(_fmt(x, ".2g") for x in c["ode_gap"]) or "n/a"
        rh = ", ".join(_fmt(x, ".3g") for x in c["rho_h"]) or "n/a"
        ms = "n/a" if c["time"] is None else f"{c['time'] * 1e3:.3g}"
        lines.append(f"| {c['cell']} | {c['ok']}/{c['seeds']} | {seeds} | {_fmt(c['median'])} | {ms} | "
                     f"{_fmt(c['nfe'], '.4g')} | {gaps} | {rh} ({c['limit']:g}) |"
                     + (f" {', '.join(_fmt(x, '.3g') for x in c['field_err']) or 'n/a'} |" if truth else ""))
    lines += ["", "ODE gap: the relative change of the held-out metric under the float64 reference. rho h: the field "
              "Jacobian's spectral radius along the trajectory times the step, at the end of training."
              + (" Field error: the learned field's relative RMS error against the true one at the reference states."
                 if truth else ""), "", "## Gradient methods", "", "Relative error of each gradient method against the float64 reference's "
              "gradient, on every trained model, by dopri5 tolerance: smallest and largest (models).", "",
              "| gradient method | errors by tolerance | verdict |", "|---|---|---|"]
    for g in v["gradients"]:
        errs = "; ".join(f"{t:g}: {lo:.2g} to {hi:.2g} ({n})" for t, (lo, hi, n) in g["by_tol"].items()) or "n/a"
        lines.append(f"| {g['method']} | {errs} | {g['verdict']} |")
    lines += _adjoint_lines(v["gradient_rows"], v["method"]["recommended"])
    failed = v["frame"][v["frame"].status != "ok"] if len(v["frame"]) else []
    if len(failed):
        lines += ["", "## Runs that did not train", ""]
        lines += [f"* {r.cell}, seed {r.seed}: {r.status} ({r.reason})" for r in failed.itertuples()]
    if given:
        lines += ["", "## The given trained model", "", f"* held-out {primary} under the float64 reference: "
                  f"{_fmt(given['metrics'].get('test_primary_ref'))}; largest spectral radius along the trajectory: "
                  f"{_fmt(given['metrics'].get('rho_end'), '.3g')}", "", "| solver | held-out loss | evaluations |",
                  "|---|---|---|"]
        lines += [f"| {r['solver']} | {_fmt(r['loss'])} | {r['nfe']} |" for r in given["transfer"]]
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _html(md: str, title: str) -> str:
    """The report's markdown (headings, tables, lists, images, paragraphs) as a page."""
    out, table = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
                  "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse}"
                  "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}img{max-width:100%}</style>"], []
    code = lambda s: re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(s))  # noqa: E731
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{code(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{code(c)}</td>" for c in row) + "</tr>" for row in body)
                       + "</table>")
            table = []
        m = re.match(r"(#+) (.*)", line)
        img = re.match(r"!\[(.*)\]\((.*)\)", line)
        if m:
            out.append(f"<h{len(m.group(1))}>{code(m.group(2))}</h{len(m.group(1))}>")
        elif img:
            out.append(f"<p><img src='{html.escape(img.group(2))}' alt='{html.escape(img.group(1))}'></p>")
        elif line.startswith("* "):
            out.append(f"<li>{code(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{code(line)}</p>")
    return "\n".join(out) + "\n"


def summary_lines(v: dict, name: str, out: Path) -> list[str]:
    """The one-screen summary."""
    lines = [f"audit of {name}: {len(v['cells'])} cells, report {out / 'report.md'} and {out / 'report.html'}"]
    for q, d in (("solver", v["method"]), ("ODE", v["ode"]), ("stiffness", v["stiffness"])):
        lines.append(f"  {q:9s} {d['verdict']}")
    for g in v["gradients"]:
        lines.append(f"  gradient  {g['method']}: {g['verdict']}")
    return lines


def write(recs: list[dict], out, name: str, primary: str, higher: bool, log=print) -> dict:
    """Write the report into ``out``; print and return the summary."""
    from .figures import draw

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recs = sorted(recs, key=_order)
    v = verdicts(recs, higher)
    figures = draw(recs, v, out, primary)
    given = next((r for r in recs if r["config"]["cell"] is None), None)
    md = _markdown(v, name, primary, figures, given)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(md, f"Solver audit: {name}"))
    lines = summary_lines(v, name, out)
    for line in lines:
        log(line)
    return {k: v[k] for k in ("method", "ode", "stiffness", "gradients")} | {"summary": lines, "cells": v["cells"]}
