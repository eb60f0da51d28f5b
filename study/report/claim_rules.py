"""The rules of the article's claims (:mod:`study.report.claims`): each reads an :class:`Evidence` and returns what
we measured, the verdict and why."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .claims_base import Evidence, Finding, acc, pm, welch_p
from .reported import ARTICLE


# -- the rules ------------------------------------------------------------------------------------

def _accuracies(ev: Evidence, t: dict) -> Finding:
    """Held-out accuracies cannot exceed the Bayes ceiling; if the article's do, compare them with our
    median training accuracies (the median: one seed that failed late must not decide)."""
    main, parts, close = ev.runs("main"), [], []
    above_bayes = all(100 * ARTICLE[v]["accuracy"] > ev.bayes for v in ("euler", "rk4", "resnet"))
    for v in ("euler", "rk4", "resnet"):
        tr, te = acc(main, v, "train_acc"), acc(main, v)
        if not len(tr):
            raise KeyError(v)
        parts.append(f"{v}: train median {np.median(tr):.1f}, test median {np.median(te):.1f}")
        close.append(abs(np.median(tr) - 100 * ARTICLE[v]["accuracy"]) < t["close_points"])
    n_close = sum(close)
    verdict = ("holds" if not above_bayes else "partly" if n_close else "does not hold")
    if above_bayes:
        evidence = (f"All three exceed the Bayes-optimal accuracy, so they are unlikely to be held-out accuracies; that "
                    f"they are training accuracies is an inference: {n_close} of 3 lie within "
                    f"{t['close_points']:g} points of our median training accuracies.")
    else:
        evidence = "Compared with our held-out accuracies."
    return Finding("; ".join(parts) + f" (\\%; Bayes ceiling {ev.bayes:.1f})", verdict, evidence)


def _parameters(ev: Evidence, t: dict) -> Finding:
    main = ev.runs("main")
    params = {v: int(main[(main["variant"] == v) & (main["status"] == "ok")]["params"].iloc[0]) for v in ("euler", "resnet")}
    ok = params["euler"] == ARTICLE["euler"]["params"] and params["resnet"] == ARTICLE["resnet"]["params"]
    ours = f"{params['euler']:,} and {params['resnet']:,} ({params['resnet'] / params['euler']:.1f}$\\times$)"
    return Finding(ours.replace(",", "{,}"), "holds" if ok else "does not hold", "Counted from the models.")


def _rk4_cost(ev: Evidence, t: dict) -> Finding:
    """The time ratio is the bench's: both training steps timed round by round in one process, so drift of the
    machine hits both alike (the timing experiment's isolated steps are measured one after the other)."""
    main, bench = ev.runs("main"), ev.runs("bench")
    nfe = {v: main[(main["variant"] == v) & (main["status"] == "ok")]["nfe_forward"].mean() for v in ("euler", "rk4")}
    tratio = None
    if not bench.empty:
        train = bench[bench["mode"] == "train"].set_index("solver")["median_us"]
        if {"hand-euler", "hand-rk4"} <= set(train.index):  # both per step of the same 20: a training step's ratio
            tratio = train["hand-rk4"] / train["hand-euler"]
    nratio = nfe["rk4"] / nfe["euler"]
    lo, hi = t["time_ratio"]
    verdict = "cannot tell" if tratio is None else (
        "holds" if abs(nratio - t["nfe_ratio"]) < 1e-9 and lo <= tratio <= hi else "partly")
    ours = (f"NFE {nfe['euler']:,.0f} vs {nfe['rk4']:,.0f} ({nratio:.2f}$\\times$); time {tratio:.2f}$\\times$ "
            "(training step)").replace(",", "{,}") if tratio else f"NFE ratio {nratio:.2f}"
    return Finding(ours, verdict, "NFE counted per call; time: the bench's training steps, interleaved in one "
                                  "process, one thread.")


def _euler_per_flop(ev: Evidence, t: dict) -> Finding:
    """Per FLOP: RK4 costs 4x the NFE, so it must be clearly more accurate to be worth it.  At equal NFE:
    medians over seeds (late loss spikes make single seeds fail; the median ignores them)."""
    main, steps = ev.runs("main"), ev.runs("steps")
    eu, rk = acc(main, "euler"), acc(main, "rk4")
    p = welch_p(eu, rk)
    per_flop = np.mean(rk) - np.mean(eu) < t["per_flop_points"]  # RK4's fourfold NFE buys less than this
    text = f"main test: Euler {pm(eu)}, RK4 {pm(rk)} (Welch p = {p:.2f}) at 4$\\times$ fewer NFE"
    diffs: list[float] = []

    def at(v, n):
        return 100 * steps[(steps["variant"] == v) & (steps["steps"] == n) & (steps["status"] == "ok")]["test_acc"].to_numpy(float)

    for ne, nr in t["equal_nfe_pairs"]:
        a, b = at("euler", ne), at("rk4", nr)
        if len(a) and len(b):
            diffs.append(np.median(a) - np.median(b))
            text += f"; equal NFE, medians: Euler {ne} {np.median(a):.1f} vs RK4 {nr} {np.median(b):.1f}"
    margin = t["beats_points"]
    beats = bool(diffs) and all(d > margin for d in diffs)
    verdict = "holds" if per_flop and beats else ("partly" if per_flop or beats else "does not hold")
    evidence = (f"Per FLOP Euler wins: RK4's extra evaluations buy no accuracy. At equal NFE Euler is ahead "
                f"by more than a point in {sum(d > margin for d in diffs)} of {len(diffs)} pairings and behind in "
                f"{sum(d < -margin for d in diffs)}: no consistent winner." if per_flop and diffs
                else "Held-out accuracy, seeds as in the sweeps.")
    return Finding(text, verdict, evidence)


def _memory_pivot(ev: Evidence, values: str = "activation_bytes") -> pd.DataFrame:
    """The memory experiment, steps x solver; ``values="step_time"``: step times on the reference's scale."""
    from .stats import reference_scaled

    mem = ev.runs("memory")
    if values == "step_time":
        mem, values = mem.assign(step_time=reference_scaled(mem)), "step_time"
    return mem.pivot_table(index="steps", columns="solver", values=values)


def _memory(ev: Evidence, t: dict) -> Finding:
    piv = _memory_pivot(ev)
    r_rk, r_res = piv.loc[20, "hand-rk4"] / piv.loc[20, "hand-euler"], piv.loc[20, "resnet"] / piv.loc[20, "hand-euler"]
    rk_off = abs(r_rk - t["rk4_ratio"]) > t["rk4_tolerance"]
    res_not_lower = r_res >= t["resnet_not_lower"]
    verdict = "does not hold" if rk_off and res_not_lower else ("partly" if res_not_lower or rk_off else "holds")
    return Finding(f"RK4/Euler {r_rk:.2f}$\\times$; ResNet/Euler {r_res:.2f}$\\times$ (20 steps, saved tensors)", verdict,
                   "Exact saved-tensor bytes: every RK4 stage saves what an Euler step saves; a ResNet block saves what an Euler step saves.")


def _adjoint(ev: Evidence, t: dict) -> Finding:
    """Two parts: memory O(1) in N against direct O(N), and the cost: recomputation time, and the gradient,
    which is no longer the gradient of the computed forward pass."""
    piv, tp = _memory_pivot(ev), _memory_pivot(ev, "step_time")
    lo, hi = piv.index.min(), piv.index.max()
    g_dir, g_adj = piv.loc[hi, "hand-euler"] / piv.loc[lo, "hand-euler"], piv.loc[hi, "adjoint-euler"] / piv.loc[lo, "adjoint-euler"]
    tr = tp.loc[20, "adjoint-euler"] / tp.loc[20, "tdq-euler"]
    constant = g_adj < t["adjoint_growth_max"]
    linear = g_dir > (hi / lo) * t["direct_growth_min_fraction"]
    gerr, gtext = float("nan"), ""
    if not ev.gradients.empty:
        g = ev.gradients[ev.gradients["method"] == "adjoint-euler"].set_index("steps")["rel_err_vs_direct"]
        gerr = float(g.loc[20]) if 20 in g.index else float(g.median())
        gtext = f"; Euler adjoint's gradient differs from direct backpropagation's by {gerr:.2f} (relative, 20 steps)"
    hidden_cost = np.isfinite(gerr) and gerr > t["gradient_error_max"]
    verdict = "partly" if (constant and linear and hidden_cost) else "holds" if constant and linear else "partly"
    return Finding(f"N = {lo}$\\to${hi}: direct $\\times${g_dir:.1f}, adjoint $\\times${g_adj:.2f}; step time "
                   f"{tr:.1f}$\\times$ direct{gtext}", verdict,
                   "Memory holds; the cost is not only recomputation: the adjoint's gradient is not the gradient of "
                   "the forward pass that was computed." if hidden_cost else
                   "Memory and time from the memory experiment; gradients from the gradients experiment.")


def _lift_base(ev: Evidence) -> pd.DataFrame:
    ab = ev.runs("ablations")
    return ab[(ab["variant"] == "euler") & ab["time_input"].astype(bool) & ab["zero_init"].astype(bool) & (ab["status"] == "ok")]


def _lifting(ev: Evidence, t: dict) -> Finding:
    """"Cannot separate" is refuted by one 2-D run that does nearly as well as the lifted model.  With the
    controls: the linear-head models, where the flow itself must separate the classes, decide."""
    base = _lift_base(ev)
    l2 = 100 * base[base["lift_dim"] == 2]["test_acc"].to_numpy(float)
    l6 = 100 * base[base["lift_dim"] == 6]["test_acc"].to_numpy(float)
    gap = np.mean(l6) - np.mean(l2) if len(l2) and len(l6) else float("nan")
    separates = bool(len(l2)) and len(l6) and l2.max() >= np.mean(l6) - t["separates_within_points"]
    ours = f"MLP head: d = 2 test {pm(l2)} (best {l2.max() if len(l2) else float('nan'):.1f}), d = 6 {pm(l6)}"
    ctl = ev.runs("controls")
    if not ctl.empty:
        lin = ctl[(ctl["variant"] == "euler") & (ctl["head"] == "linear") & (ctl["status"] == "ok")]
        c2 = 100 * lin[lin["lift_dim"] == 2]["test_acc"].to_numpy(float)
        c6 = 100 * lin[lin["lift_dim"] == 6]["test_acc"].to_numpy(float)
        if len(c2) and len(c6):
            ours += f"; linear head (the flow must separate): d = 2 median {np.median(c2):.1f}, d = 6 {np.median(c6):.1f}"
            gap = np.median(c6) - np.median(c2)
            separates = c2.max() >= np.median(c6) - t["separates_within_points"]
    verdict = ("cannot tell" if not np.isfinite(gap) else "does not hold" if separates and gap <= t["no_gap_points"]
               else "partly" if separates else "holds" if gap > t["essential_gap_points"] else "partly")
    return Finding(ours, verdict,
                   "A planar flow can separate them (the spirals are not nested sets, so the topological "
                   "argument for concentric circles does not apply), but without a lift training often fails to find it."
                   if separates else "Without a lift held-out accuracy falls well below the lifted model's.")


def _zero_init(ev: Evidence, t: dict) -> Finding:
    """Two parts: zero initialisation matters (accuracy), and without it the solver blows up (divergence)."""
    ab, base = ev.runs("ablations"), _lift_base(ev)
    l6 = 100 * base[base["lift_dim"] == 6]["test_acc"].to_numpy(float)
    ri = ab[(ab["variant"] == "euler") & ~ab["zero_init"].astype(bool) & ab["status"].isin(["ok", "diverged"])]
    div = int((ri["status"] == "diverged").sum())
    ri_acc = 100 * ri[ri["status"] == "ok"]["test_acc"].to_numpy(float)
    gap = np.mean(l6) - np.mean(ri_acc) if len(ri_acc) and len(l6) else float("nan")
    if ri.empty or not len(l6):
        return Finding("n/a", "cannot tell", "No random-init runs.")
    parts = int(div > 0) + int(gap > t["matters_points"])
    verdict = {2: "holds", 1: "partly", 0: "does not hold"}[parts]
    return Finding(f"random init: {div}/{len(ri)} diverged, test {pm(ri_acc)} vs {pm(l6)} with zero init", verdict,
                   f"Blows up: {'yes' if div else 'no'}; matters by more than {t['matters_points']:g} points: "
                   f"{'yes' if gap > t['matters_points'] else 'no'} ({gap:.1f}).")


def _resnet_is_euler(ev: Evidence, t: dict) -> Finding:
    return Finding("bit-for-bit equal outputs for a residual stack whose blocks share one network fed $t_i$", "holds",
                   "Checked by the test suite (\\texttt{tests/unit/test\\_models.py}); with independent blocks it is Euler on a depth-dependent field.")


def _resnet_advantage(ev: Evidence, t: dict) -> Finding:
    """Two parts: higher training accuracy, higher held-out accuracy (each a Welch test at ``alpha``)."""
    main = ev.runs("main")
    res_tr, res_te = acc(main, "resnet", "train_acc"), acc(main, "resnet")
    eu_tr, eu = acc(main, "euler", "train_acc"), acc(main, "euler")
    if not (len(res_te) and len(eu)):
        raise KeyError("resnet")
    p_tr, p_te = welch_p(res_tr, eu_tr), welch_p(res_te, eu)
    train_up = np.mean(res_tr) > np.mean(eu_tr) and p_tr < t["alpha"]
    test_up = np.mean(res_te) > np.mean(eu) and p_te < t["alpha"]
    test_down = np.mean(res_te) < np.mean(eu)
    verdict = ("holds" if train_up and test_up else "partly" if train_up or test_up else
               "does not hold" if test_down else "cannot tell")
    return Finding(f"train: ResNet {pm(res_tr)} vs Euler {pm(eu_tr)} (p = {p_tr:.2g}); test: ResNet {pm(res_te)} "
                   f"vs Euler {pm(eu)} (p = {p_te:.2g})", verdict,
                   "Higher training but not held-out accuracy: the extra capacity fits noise."
                   if train_up and not test_up else "Held-out and training accuracies over seeds.")


def _rk4_gain(ev: Evidence, t: dict) -> Finding:
    """RK4 over Euler on held-out accuracy: medians and means, Welch test; the failure counts beside them."""
    from .stats import summarise

    main = ev.runs("main")
    se, sr = (summarise(main[main["variant"] == v]) for v in ("euler", "rk4"))
    if not (se.values and sr.values):
        raise KeyError("rk4")
    p = welch_p(sr.values, se.values)
    dmed, dmean = sr.median - se.median, sr.mean - se.mean
    verdict = ("holds" if dmean >= t["gain_points"] - 0.5 and p < t["alpha"] else
               "does not hold" if dmed < t["gain_points"] / 3 and dmean < t["gain_points"] / 3 else "cannot tell")
    return Finding(f"RK4 $-$ Euler: medians {dmed:+.1f}, means {dmean:+.1f} (p = {p:.2f}); failed runs: "
                   f"Euler {se.failed}/{se.n}, RK4 {sr.failed}/{sr.n}", verdict,
                   "Held-out accuracy; failed: diverged or an unrecovered loss spike (stats.failed).")


def _rk4_low_steps(ev: Evidence, t: dict) -> Finding:
    """At equal step counts: RK4's median minus Euler's, at each N both were trained with."""
    steps = ev.runs("steps")
    ok = steps[steps["status"] == "ok"]
    common = sorted(set(ok[ok["variant"] == "euler"]["steps"]) & set(ok[ok["variant"] == "rk4"]["steps"]))
    diffs = {int(n): 100 * (ok[(ok["variant"] == "rk4") & (ok["steps"] == n)]["test_acc"].median()
                            - ok[(ok["variant"] == "euler") & (ok["steps"] == n)]["test_acc"].median()) for n in common}
    if not diffs:
        return Finding("n/a", "cannot tell", "No step count trained with both.")
    lo = min(diffs)
    ahead_low = diffs[lo] > t["ahead_points"]
    shrinks = diffs[lo] >= max(diffs.values()) - 1e-9
    verdict = "holds" if ahead_low and shrinks else "partly" if ahead_low else "does not hold"
    return Finding("RK4 $-$ Euler medians at equal N: " + ", ".join(f"N = {n}: {d:+.1f}" for n, d in diffs.items()),
                   verdict, "Held-out accuracy, steps sweep.")


def _probe_median(df: pd.DataFrame, col: str) -> float:
    v = 100 * df[col].to_numpy(dtype=float) if col in df else np.array([])
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


def _separable(ev: Evidence, t: dict) -> Finding:
    """The trained Euler model (MLP head, d = 6): a linear probe on y(T) against the model itself and y(0)."""
    ctl = ev.runs("controls")
    m = ctl[(ctl["variant"] == "euler") & (ctl["head"] == "mlp") & (ctl["lift_dim"] == 6) & (ctl["status"] == "ok")]
    model, y0, yT = _probe_median(m, "test_acc"), _probe_median(m, "probe.y0_test"), _probe_median(m, "probe.yT_test")
    if not np.isfinite(yT):
        return Finding("n/a", "cannot tell", "No probe runs.")
    untangles = yT - y0 >= t["untangle_points"]
    separable = yT >= model - t["separable_within_points"]
    verdict = "holds" if untangles and separable else "partly" if untangles else "does not hold"
    return Finding(f"linear probe (held-out, medians): $y(0)$ {y0:.1f}, $y(T)$ {yT:.1f}; the model {model:.1f}",
                   verdict, f"Linearly separable: $y(T)$'s probe within {t['separable_within_points']:g} points "
                   f"of the model; untangled: {t['untangle_points']:g} points above $y(0)$'s.")


def _resnet_within(ev: Evidence, t: dict) -> Finding:
    main = ev.runs("main")
    eu, res = acc(main, "euler"), acc(main, "resnet")
    if not (len(eu) and len(res)):
        raise KeyError("resnet")
    d_te = np.median(res) - np.median(eu)
    d_tr = np.median(acc(main, "resnet", "train_acc")) - np.median(acc(main, "euler", "train_acc"))
    verdict = "holds" if abs(d_te) <= t["within_points"] else "does not hold"
    return Finding(f"ResNet $-$ Euler medians: held-out {d_te:+.1f}, training {d_tr:+.1f}", verdict,
                   "Within the article's 3 points on held-out accuracy" + (
                       " (the ODE is ahead)." if d_te < 0 else "."))


def _invertible(ev: Evidence, t: dict) -> Finding:
    """Invertible in exact arithmetic; in practice: y(0) recovered from y(T) by the backward solve at training's
    precision and tolerance (the adjoint's reconstruction), on trained weights."""
    adj = ev.adjoint
    last = adj[adj["epoch"] == adj.groupby("train_variant")["epoch"].transform("max")]
    rc = last[(last["what"] == "reconstruction") & (last["dtype"] == "float32")]
    sv = last[last["what"] == "singular_values"]
    err = float(np.nanmedian(rc["recon_rel"].to_numpy(float))) if len(rc) else float("nan")
    smin = float(np.median(sv["sv_min_median"])) if len(sv) else float("nan")
    if not np.isfinite(err):
        return Finding("n/a", "cannot tell", "No reconstruction measured.")
    verdict = "holds" if err <= t["recon_max"] else "partly"
    return Finding(f"$y(0)$ from $y(T)$ at training precision: relative error {err:.2g}; smallest singular value of "
                   f"the flow map {smin:.2g} (medians over every model of the adjoint diagnostics at the end of "
                   "training, pooled; the adjoint diagnostics table gives them per training variant)", verdict,
                   "Invertible as a map; in float32 at training's step or tolerance the backward solve does not "
                   "recover the input." if verdict == "partly" else "Recovered to the stated accuracy.")
