"""The command line: records from `study run`, the registry and data commands, the GPU check script
(bad input: test_bad_input.py)."""
import json
import math
import subprocess
import sys

import pytest

from tests.helpers import ENV, study


def test_cuda_when_absent_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    r = study("run", "euler", "--device", "cuda", "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "CUDA is not available" in r.stderr


@pytest.mark.parametrize("variant,params,nfe", [("euler", 18906, 320), ("resnet", 364236, 320)])
def test_run_writes_a_record(variant, params, nfe, tmp_path):
    r = study("run", variant, "--epochs", "2", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (path,) = list(tmp_path.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["metrics"]["params"] == params and rec["metrics"]["nfe_forward"] == nfe
    assert rec["status"] == "ok" and rec["config"]["variant"] == variant
    assert str(path) in r.stdout and f"{params:,}" in r.stdout
    assert r.stderr == ""  # no progress bar when not on a terminal


def test_run_reproduces_a_batched_record_exactly(tmp_path):
    """`study run --batch-with` trains the seeds as run-all's job does: the same record, bit for bit."""
    from study.runners import train as train_runner
    from study.config import Protocol, run_config
    from study.variants import variant_config

    r = study("run", "rk4", "--epochs", "3", "--seed", "1", "--batch-with", "0,1,2", "--lr", "0.003",
              "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (path,) = list(tmp_path.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["timing"]["ensemble_seeds"] == [0, 1, 2] and rec["config"]["lr"] == 0.003
    base = run_config(variant_config("rk4"), Protocol(epochs=3, lr=0.003), 0, "cpu", {"variant": "rk4"})
    job = train_runner.run([{**base, "seed": s} for s in (0, 1, 2)])
    assert job[1]["config"] == rec["config"]
    assert job[1]["metrics"] | {"wall_time_s": 0} == rec["metrics"] | {"wall_time_s": 0}
    assert job[1]["curves"] == rec["curves"]


def test_variants_and_dataset():
    r = study("variants")
    assert r.returncode == 0
    for name in ("euler", "rk4", "rk4-38", "resnet", "tdq-euler", "tdq-rk4", "tdq-dopri5", "adjoint-euler",
                 "adjoint-rk4", "adjoint-dopri5", "adjoint-dopri5-seminorm"):
        assert name in r.stdout
    assert "364236" in r.stdout and "18906" in r.stdout
    r = study("dataset")
    assert r.returncode == 0 and "Bayes-optimal accuracy: 87." in r.stdout


def test_gpu_check_script_runs_its_code_paths_on_cpu(tmp_path):
    """The GPU check script, on the CPU: every code path but the CUDA-only lines."""
    r = subprocess.run([sys.executable, "-m", "study.gpu_check", "--device", "cpu", "--epochs", "1", "--rounds", "1",
                        "--out", str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    from study.gpu_check import CHECK_VARIANTS

    assert [t["variant"] for t in out["training"]] == CHECK_VARIANTS
    nfe = {t["variant"]: t["nfe_forward"] for t in out["training"]}  # 1 epoch = 8 batches, counted by hand
    assert nfe["euler"] == nfe["resnet"] == 8 * 20 and nfe["rk4"] == nfe["hand-adjoint-rk4"] == 8 * 80
    assert len(out["memory"]) == 15 and out["bench"]["rows"]
    batched = out["batched_adaptive"]  # two adaptive seeds as one model: each member's own evaluations
    assert batched["matches_cpu"] and batched["status"] == ["ok", "ok"] and min(batched["nfe_forward"]) > 0
    kernels = out["bench"]["kernel_floor_us"]  # per evaluation: the training step's kernels include the forward's
    assert 0 < kernels["forward"] < kernels["train"]
    assert all(r["kernel_floor_us"] > 0 for r in out["bench"]["rows"])


def _not_trained(*args, **kw):
    raise AssertionError("trained before checking the store")


@pytest.mark.parametrize("command", [["run", "euler", "--epochs", "1"], ["bench", "--rounds", "1"],
                                     ["bench", "--task", "density", "--rounds", "1"]])
def test_a_store_whose_single_directory_is_a_link_is_refused_before_any_work(command, tmp_path, monkeypatch, capsys):
    """`study run` and `study bench` write into RUNS_DIR/single/: a link there is refused up front, as run-all
    refuses one, not after the training or the measurement when the record is written."""
    from study import cli

    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    runs.mkdir()
    elsewhere.mkdir()
    (runs / "single").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setattr(cli, "_train_one", _not_trained)
    monkeypatch.setattr(cli, "_with_rounds_bar", _not_trained)
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--runs-dir", str(runs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "symbolic links" in err[0] and "single" in err[0], err
    assert list(elsewhere.iterdir()) == []


class _Configured(Exception):
    """Raised in place of training: carries the config `study run` would train and store."""


def _config_of(monkeypatch, *args) -> dict:
    """The config (as stored and hashed) that `study run ARGS` trains, without training it."""
    from study import cli

    def capture(task, variant, cfg, proto, seeds, seed, device, runs_dir):
        raise _Configured(task.run_config(variant, cfg, proto, seed, device))

    monkeypatch.setattr(cli, "_train_one", capture)
    with pytest.raises(_Configured) as info:
        cli.main(["run", *args])
    return info.value.args[0]


def _negative_zeros(obj) -> list:
    if isinstance(obj, dict):
        return [z for v in obj.values() for z in _negative_zeros(v)]
    if isinstance(obj, (list, tuple)):
        return [z for v in obj for z in _negative_zeros(v)]
    return [obj] if isinstance(obj, float) and obj == 0 and math.copysign(1.0, obj) < 0 else []


@pytest.mark.parametrize("task,option", [("dynamics", "--noise"), ("spiral", "--kinetic"), ("spiral", "--jacobian"),
                                         ("spiral", "--steer"), ("density", "--weight-decay"),
                                         ("dynamics", "--kinetic")])
def test_minus_zero_names_the_same_run_as_zero(task, option, tmp_path, monkeypatch):
    """`--noise -0.0` is `--noise 0`: one config, one record (JSON writes -0.0 apart, which renamed the run)."""
    from study import store

    common = ["euler", "--task", task, "--runs-dir", str(tmp_path)]
    minus, plus = _config_of(monkeypatch, *common, option, "-0.0"), _config_of(monkeypatch, *common, option, "0")
    assert minus == plus and not _negative_zeros(minus)
    assert store.record_path(tmp_path, store.SINGLE, minus) == store.record_path(tmp_path, store.SINGLE, plus)


def test_every_float_option_is_normalised():
    """The checks return each float option as a config stores it: a float, never -0.0."""
    from study import checks, tasks
    from study.variants import VARIANTS

    remedies = checks.remedies(tasks.get("spiral"), VARIANTS["euler"],
                               {"kinetic": -0.0, "jacobian": 0, "steer": -0.0, "weight_decay": -0.0})
    given = checks.protocol_options({"protocol_noise": -0.0, "protocol_lr": 1, "protocol_iterations": 3})
    for value in (given["--noise"], given["--lr"], *remedies.values()):
        assert isinstance(value, float) and math.copysign(1.0, value) == 1.0
    assert isinstance(checks.sigma(1), float) and given["--iterations"] == 3


def test_the_command_that_completes_an_experiment_pastes_into_a_shell(tmp_path):
    """A runs directory with a space or a quote in its name is one argument of the printed command."""
    import shlex

    runs = tmp_path / "the runs of Bob's"
    (runs / "train").mkdir(parents=True)
    r = study("tables", "--profile", "quick", "--runs-dir", str(runs), "--out", str(tmp_path / "out"))
    assert r.returncode == 3, r.stderr
    commands = [line.split("; complete it with: ", 1)[1] for line in r.stdout.splitlines() if "complete it with" in line]
    assert commands
    for command in commands:
        args = shlex.split(command)
        assert args[:3] == ["study", "run-all", "--experiments"] and args[-2:] == ["--runs-dir", str(runs)], command
        assert args[4:6] == ["--profile", "quick"]


def test_status_exits_3_while_it_lists_corrupt_records(tmp_path):
    runs = tmp_path / "runs"
    (runs / "train").mkdir(parents=True)
    r = study("status", "--profile", "quick", "--runs-dir", str(runs))
    assert r.returncode == 0 and r.stderr == "", r.stderr  # an empty store: nothing wrong
    torn = runs / "train" / "0123456789abcdef.json"
    torn.write_text('{"schema": 1, "kind": "tr')
    r = study("status", "--profile", "quick", "--runs-dir", str(runs))
    (line,) = r.stderr.splitlines()
    assert r.returncode == 3 and line.startswith(f"corrupt: {torn}: not valid JSON"), r.stderr
    assert r.stdout.startswith("experiment")  # the table is printed all the same
    torn.unlink()
    (runs / "run-all.log.jsonl").write_text("{not json\n")
    r = study("status", "--profile", "quick", "--runs-dir", str(runs))
    assert r.returncode == 3 and "not a JSON object" in r.stderr


def test_new_store_makes_a_store_in_a_directory_of_other_files(tmp_path):
    """Without --new-store a directory of unrelated files is refused (a slip like --runs-dir ~ would scatter a
    store through it); with it, the store is made there and later commands take it as a store."""
    (tmp_path / "notes.txt").write_text("mine")
    r = study("run", "euler", "--epochs", "1", "--runs-dir", str(tmp_path), timeout=300)
    assert r.returncode == 2 and "is not a run store and not empty" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    r = study("run", "euler", "--epochs", "1", "--runs-dir", str(tmp_path), "--new-store", timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "single").glob("*.json"))) == 1
    r = study("run", "euler", "--epochs", "1", "--seed", "1", "--runs-dir", str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr  # a store now
