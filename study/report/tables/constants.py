"""What needs no runs, or no experiment's: the Bayes ceiling, parameter counts, the article's numbers, the
protocol's settings, the machine and the profile's time; the variants table (the registry, not results)."""
from __future__ import annotations

import math

from ... import variants
from ...tasks.spiral import data
from ..numbers import Numbers
from ..reported import ARTICLE
from ..results import View
from ..stats import SPIKE_RATIO, SPIKE_RATIOS
from ..style import label
from .common import _num, _table, _tex_power


def constant_numbers(view: View, N: Numbers) -> None:
    """Numbers that need no runs: the Bayes ceiling, parameter counts, the article's numbers, the profile's time."""
    acc, se = data.bayes_accuracy()
    N.add("BayesAcc", 100 * acc)
    N.add("BayesAccSe", 100 * se, "{:.2f}")
    ode, resnet = variants.variant_config("euler").param_count(), variants.variant_config("resnet").param_count()
    N.add("ParamsODE", _num(ode))
    N.add("ParamsResNet", _num(resnet))
    N.add("ParamRatio", resnet / ode)
    N.add("ArticleEulerAcc", 100 * ARTICLE["euler"]["accuracy"])
    N.add("ArticleRKfourAcc", 100 * ARTICLE["rk4"]["accuracy"])
    N.add("ArticleResNetAcc", 100 * ARTICLE["resnet"]["accuracy"])
    N.add("ArticleTimeRatio", ARTICLE["rk4"]["time_s"] / ARTICLE["euler"]["time_s"], "{:.1f}")
    N.add("VariantCount", len(variants.VARIANTS), "{:d}")
    protocol_numbers(N)
    for v, word in (("resnet", "ResNet"), ("euler", "Ode")):  # parameters, Adam's two moments: float32 each
        N.add(f"{word}ParamStateMB", 3 * 4 * variants.variant_config(v).param_count() / 1e6, "{:.2f}")
    envs = [r["env"] for r in view.records.values() if r.get("kind") == "train"]
    if envs:
        N.add("MachineCores", max(e.get("cpu_count") or 0 for e in envs), "{:d}")
    ex = view.executions()
    if not ex.empty:
        full = ex[ex["profile"] == "full"]
        if not full.empty:
            N.add("FullProfileMinutes", full["seconds"].sum() / 60, "{:.0f}")
            N.add("RunAllInvocations", len(full), "{:d}")
    costs = view.costs()
    if not costs.empty and envs:
        cores = max(e.get("cpu_count") or 1 for e in envs)
        total = costs[costs.experiment == "all"].worker_seconds.sum()
        other = sum(view.job_seconds(exclude="train").values())
        N.add("TrainWorkerMinutes", _num(round(total / 60)))
        N.add("TrainWallMinutes", _num(round(total / 60 / cores)))
        N.add("OtherWorkerMinutes", _num(round(other / 60)))
        hours, _, _, alone = view.scratch_hours(cores)  # the timed runs run alone: not shared between the cores
        N.add("ProfileWallMinutes", _num(round(hours * 60)))
        N.add("ProfileWallHours", hours, "{:.1f}")
        N.add("AloneWorkerMinutes", _num(round(alone / 60)))


def protocol_numbers(N: Numbers) -> None:
    """The study's settings (the protocol, the sweeps, the seeds) as macros: the paper types no number itself."""
    from ...config import SIGMA, Protocol
    from ...experiments import SPEC
    from ...variants import DOPRI5_TOL

    P, full, cfg = Protocol(), SPEC["full"], variants.variant_config("euler")
    N.add("Epochs", P.epochs, "{:d}")
    N.add("LearningRate", P.lr, "{:g}")
    N.add("BatchSize", P.batch_size, "{:d}")
    N.add("BatchesPerEpoch", P.batches, "{:d}")
    N.add("NTrain", _num(P.n_train))
    N.add("NTest", _num(P.n_test))
    N.add("CurvePoints", _num(P.curve_test_points))
    N.add("EvalEvery", P.eval_every, "{:d}")
    N.add("NoiseSd", SIGMA, "{:g}")
    N.add("LiftDim", cfg.lift_dim, "{:d}")
    N.add("Hidden", cfg.hidden, "{:d}")
    N.add("HeadHidden", cfg.head_hidden, "{:d}")
    N.add("Steps", cfg.steps, "{:d}")
    N.add("StepsProtocolNfe", _num(P.epochs * P.batches * cfg.steps))
    N.add("DopriTol", _tex_power(DOPRI5_TOL))
    N.add("MaxNumSteps", _num(cfg.max_num_steps))
    N.add("MainSeeds", full["main_seeds"], "{:d}")
    N.add("SweepSeeds", full["sweep_seeds"], "{:d}")
    N.add("ControlSeedsPlanned", full["control_seeds"], "{:d}")
    N.add("LrSeedsPlanned", full["lr_seeds"], "{:d}")
    N.add("LrDopriSeeds", full["lr_seed_overrides"].get("tdq-dopri5", full["lr_seeds"]), "{:d}")
    N.add("LrVariantCount", len(full["lr_variants"]), "{:d}")
    N.add("MainVariantCount", len([v for v in variants.VARIANTS if v not in full["main_cut"]]), "{:d}")
    lrs = sorted(full["learning_rates"], reverse=True)
    for name, lr in zip(("LrHigh", "LrMid", "LrLow"), lrs):
        N.add(name, lr, "{:g}")
    N.add("GradEpochs", full["gradient_epochs"], "{:d}")
    a = full["adjoint"]
    N.add("AdjRefSteps", a["reference_steps"], "{:d}")
    N.add("AdjMaxSteps", max(a["steps"]), "{:d}")
    N.add("AdjMinTol", _tex_power(min(a["tolerances"])))
    N.add("AdjFloatMinTol", _tex_power(a["float32_min_tol"]))
    N.add("AdjBatchesPlanned", a["batches"], "{:d}")
    N.add("AdjSeedsPlanned", a["seeds"], "{:d}")
    N.add("AdjEpochsList", ", ".join(str(e) for e in a["epochs_measured"]))
    N.add("MemStepsList", ", ".join(str(n) for n in full["memory_steps"]))
    N.add("TimingRepeats", full["timing_repeats"], "{:d}")
    N.add("BenchRounds", full["bench_rounds"], "{:d}")
    N.add("SpikeRatio", SPIKE_RATIO, "{:g}")
    N.add("SpikeRatios", ", ".join(f"{r:g}" for r in SPIKE_RATIOS))
    N.add("BayesPoints", _num(data.BAYES_POINTS))
    N.add("SpiralTurns", round(data.THETA_MAX / math.pi), "{:d}")  # theta ~ U[0, SpiralTurns pi]
    N.add("CiLevel", 95, "{:d}")  # every interval: Student-t, this level


def variants_table() -> str:
    """The registry (configuration, not results)."""
    rows = []
    for v in variants.VARIANTS:
        d = variants.describe(v)
        rows.append([label(v), d["backend"].replace("torchdiffeq-adjoint", "tdq adjoint").replace("torchdiffeq", "tdq"),
                     d["method"].replace("resnet blocks", "--"), d["steps/tolerance"].replace("rtol=atol=0.001", "tol.\\ $10^{-3}$").replace(" seminorm", ", seminorm"),
                     _num(d["params"])])
    body = _table("llllr", ["variant", "backend", "method", "steps / tol.", "params"], rows, "From the variant registry.")
    return ("\\begin{table}[t]\n\\centering\\small\n\\caption{The variants (tdq: torchdiffeq; its \\texttt{rk4} is the 3/8 rule).}\n"
            "\\label{tab:variants}\n\\resizebox{\\columnwidth}{!}{" + body.strip() + "}\n\\end{table}\n")
