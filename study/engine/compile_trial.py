"""Does ``torch.compile`` (CPU inductor) pay on the hand engine?  ``python -m study.engine.compile_trial``.

The hand engine's per-step cost on the spiral is dispatch-bound: dozens of small kernels per evaluation at a
6 x 128 state.  This trial compiles, at the spiral's training sizes (one member and five batched, ``d = 6``,
hidden 128, batch 128, one thread), the three things one could compile, and times each against its eager form,
interleaved round by round in one process:

* ``eval-forward``: one evaluation of the network (:func:`study.engine.evaluation.forward_parts`);
* ``eval-vjp``: its hand vector-Jacobian product (:func:`study.engine.evaluation.vjp`);
* ``rk4-step``: a whole classic RK4 step without gradients (four evaluations and the combination), the largest
  unit the fixed-step engine could hand to the compiler.

It prints each one's eager and compiled median (us per call, half-IQR), their ratio, the compile time and the
largest difference from the eager result (they must agree within float32 rounding).  Nothing in the engine is
compiled unless this trial shows it pays; the decision and its numbers are in the README's performance section.
"""
from __future__ import annotations

import argparse
import time


def cases(members: int, d: int = 6, hidden: int = 128, batch: int = 128, seed: int = 0) -> dict:
    import torch

    from . import evaluation as ev

    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) / s[-1] ** 0.5  # noqa: E731
    S, H = members, hidden
    w = ev.fold_weights(r(S, H, d), r(S, H), r(S, H), r(S, H, H), r(S, H), r(S, d, H), r(S, d))
    y = torch.randn(S, d, batch, generator=g)
    cot = torch.randn(S, d, batch, generator=g)
    _, s1, s2 = ev.forward_parts(y, 0.3, w)

    def fwd(y):
        return ev.forward_parts(y, 0.3, w)[0]

    def vjp(cot):
        return ev.vjp(cot, y, 0.3, s1, s2, w.a1, w.a2, w.a3, True)[0]

    def rk4(y):
        h = 0.05
        k1 = ev.forward_parts(y, 0.3, w)[0]
        k2 = ev.forward_parts(y + 0.5 * h * k1, 0.3 + 0.5 * h, w)[0]
        k3 = ev.forward_parts(y + 0.5 * h * k2, 0.3 + 0.5 * h, w)[0]
        k4 = ev.forward_parts(y + h * k3, 0.3 + h, w)[0]
        return y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    return {"eval-forward": (fwd, y), "eval-vjp": (vjp, cot), "rk4-step": (rk4, y)}


def trial(members: int, rounds: int = 15, min_round_s: float = 0.05) -> list[dict]:
    import torch

    from .timer import median_spread

    rows = []
    with torch.no_grad():
        for name, (fn, arg) in cases(members).items():
            t0 = time.perf_counter()
            compiled = torch.compile(fn, dynamic=False)
            out = compiled(arg)
            compile_s = time.perf_counter() - t0
            ref = fn(arg)
            diff = float((out - ref).abs().max() / ref.abs().max())
            fns = {"eager": lambda fn=fn: fn(arg), "compiled": lambda c=compiled: c(arg)}
            inner = {}
            for k, f in fns.items():
                for _ in range(3):
                    f()
                t0 = time.perf_counter()
                f()
                inner[k] = max(1, int(min_round_s / max(time.perf_counter() - t0, 1e-7)))
            samples = {k: [] for k in fns}
            for _ in range(rounds):
                for k, f in fns.items():
                    t0 = time.perf_counter()
                    for _ in range(inner[k]):
                        f()
                    samples[k].append((time.perf_counter() - t0) / inner[k] * 1e6)
            (e, es), (c, cs) = median_spread(samples["eager"]), median_spread(samples["compiled"])
            rows.append({"case": name, "members": members, "eager_us": e, "eager_spread_us": es, "compiled_us": c,
                         "compiled_spread_us": cs, "ratio": c / e, "compile_s": compile_s, "max_rel_diff": diff})
    return rows


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; per call, median +- half-IQR over {args.rounds} rounds")
    print(f"{'case':<14}{'members':>8}{'eager us':>11}{'compiled us':>13}{'ratio':>7}{'compile s':>11}{'max rel diff':>14}")
    for members in (1, 5):
        for r in trial(members, args.rounds):
            print(f"{r['case']:<14}{r['members']:>8}{r['eager_us']:>8.1f}+-{r['eager_spread_us']:<4.1f}"
                  f"{r['compiled_us']:>8.1f}+-{r['compiled_spread_us']:<4.1f}{r['ratio']:>6.2f}{r['compile_s']:>10.1f}"
                  f"{r['max_rel_diff']:>14.1e}")


if __name__ == "__main__":
    main()
