"""GPU checks in one short script (about 2 minutes on one GPU):

    python -m study.gpu_check [--device cuda] [--out DIR]

1. trains euler, rk4, resnet, tdq-dopri5, adjoint-euler and the hand engine's hand-dopri5, hand-adjoint-rk4
   and checkpoint-dopri5 for a few epochs on the device and checks
   that each matches the same run on the CPU (accuracy within 2 points, identical NFE); then two seeds of
   hand-dopri5 as one batched model, each with its own step-size control, against the same on the CPU;
2. the bench table on the device (CUDA-synchronised timing, warm-up first);
3. the CUDA peak memory of one training step against saved-tensor bytes, for N = 10, 20, 40.
Writes a JSON summary (and prints it).  ``--device cpu`` runs the same code paths on the CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .config import Protocol
from .provenance import environment
from .runners import memory
from .runners.bench import measure
from .tasks.spiral import train_models as train
from .variants import variant_config

CHECK_VARIANTS = ["euler", "rk4", "resnet", "tdq-dopri5", "adjoint-euler", "hand-dopri5", "hand-adjoint-rk4",
                  "checkpoint-dopri5"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("study.gpu_check: error: CUDA is not available here", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    out = {"env": environment(args.device), "training": [], "memory": []}
    proto = Protocol(epochs=args.epochs, n_test=2000, curve_test_points=500)
    ok = True
    for v in CHECK_VARIANTS:
        t0 = time.perf_counter()
        (dev,), _ = train(variant_config(v), proto, [0], device=args.device)
        t_dev = time.perf_counter() - t0
        (cpu,), _ = train(variant_config(v), proto, [0], device="cpu")
        same = abs(dev["metrics"]["test_acc"] - cpu["metrics"]["test_acc"]) < 0.02 and (
            variant_config(v).adaptive or dev["metrics"]["nfe_forward"] == cpu["metrics"]["nfe_forward"])
        ok &= same and dev["status"] == "ok"
        out["training"].append({"variant": v, "status": dev["status"], "test_acc": dev["metrics"]["test_acc"],
                                "cpu_test_acc": cpu["metrics"]["test_acc"], "nfe_forward": dev["metrics"]["nfe_forward"],
                                "seconds": t_dev, "matches_cpu": same})
        print(json.dumps(out["training"][-1]), flush=True)
    seeds = [0, 1]  # an adaptive variant's seeds batched: per-member times, steps and flags on the device
    t0 = time.perf_counter()
    dev_recs, _ = train(variant_config("hand-dopri5"), proto, seeds, device=args.device)
    t_dev = time.perf_counter() - t0
    cpu_recs, _ = train(variant_config("hand-dopri5"), proto, seeds, device="cpu")
    acc = [r["metrics"]["test_acc"] for r in dev_recs]
    same = all(abs(a - c["metrics"]["test_acc"]) < 0.02 for a, c in zip(acc, cpu_recs))
    ok &= same and all(r["status"] == "ok" for r in dev_recs)
    out["batched_adaptive"] = {"variant": "hand-dopri5", "seeds": seeds, "status": [r["status"] for r in dev_recs],
                               "test_acc": acc, "cpu_test_acc": [r["metrics"]["test_acc"] for r in cpu_recs],
                               "nfe_forward": [r["metrics"]["nfe_forward"] for r in dev_recs], "seconds": t_dev,
                               "matches_cpu": same}
    print(json.dumps(out["batched_adaptive"]), flush=True)
    out["bench"] = measure(rounds=args.rounds, device=args.device, with_torchode=False)
    for n in (10, 20, 40):
        for v in ("euler", "rk4", "adjoint-euler", "hand-adjoint-euler", "checkpoint-euler"):
            cfg = {"kind": "memory", "solver": v, "variant": v, "device": args.device, "batch_size": 128,
                   "repeats": 10, "seed": 0, **variant_config(v, steps=n, zero_init=False).as_config(),
                   "engine": variant_config(v).engine}
            rec = memory.measure(cfg)
            m = rec["metrics"]
            out["memory"].append({"variant": v, "steps": n, "activation_bytes": m["activation_bytes"],
                                  "cuda_peak_bytes": m.get("cuda_peak_bytes"), "step_time_s": m["step_time_s"]})
            print(json.dumps(out["memory"][-1]), flush=True)
    for r in out["bench"]["rows"]:
        print(f"{r['solver']:<16}{r['mode']:<9}{r['median_us']:>10.1f} us {r['ratio_to_bare']:>6.2f}x")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(out, indent=1))
    print("gpu_check:", "all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
