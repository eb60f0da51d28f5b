"""Bad input, table-driven: each invocation exits 2 with one `study: error:` line, no traceback, nothing written."""
import pytest

from tests.helpers import study

LONG = "x" * 100_000
BAD = [  # (arguments; FILE, STORE, EMPTY and DANGLING are paths in the test's directory), words the one line must hold
    (["run", "nope"], "unknown variant 'nope'; choose one of: euler, rk4"),
    (["run", LONG], "unknown variant 'xxxxxxxx"),
    (["run", "euler", "--epochs", "0"], "--epochs must be an integer from 1 to 100,000"),
    (["run", "euler", "--epochs", "-3"], "--epochs must be an integer from 1"),
    (["run", "euler", "--epochs", "1000000000"], "--epochs must be an integer from 1 to 100,000"),
    (["run", "euler", "--epochs", "x"], "'x' is not a valid integer"),
    (["run", "euler", "--steps", "0"], "--steps must be an integer from 1 to 10,000"),
    (["run", "euler", "--steps", "1000000"], "--steps must be an integer from 1 to 10,000"),
    (["run", "euler", "--seed", "-1"], "--seed must be an integer from 0 to 4,294,967,295"),
    (["run", "euler", "--seed", "999999999999999999999999999999"], "--seed must be an integer from 0"),
    (["run", "euler", "--seed", str(2**63)], "--seed must be an integer from 0"),
    (["run", "euler", "--threads", "0"], "--threads must be an integer from 1"),
    (["run", "euler", "--threads", "100000"], "cores"),
    (["run", "euler", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "euler", "--runs-dir", ""], "must name a directory, not an empty string"),
    (["run", "euler", "--runs-dir", "FILE"], "is a file, not a directory"),
    (["run", "euler", "--runs-dir", "FILE/runs"], "cannot be created"),
    (["run", "euler", "--runs-dir", "."], "is not a run store and not empty"),  # a slip like --runs-dir ~
    (["run", "euler", "--runs-dir", "/"], "is not a run store and not empty"),
    (["run-all", "--profile", "quick", "--runs-dir", "."], "is not a run store and not empty"),
    (["run-all", "--profile", "quick", "--runs-dir", "/"], "is not a run store and not empty"),  # walked nothing
    (["run-all", "--profile", "quick", "--runs-dir", "/proc"], "is not a run store and not empty"),
    (["run-all", "--profile", "quick", "--runs-dir", "/proc", "--new-store"], "cannot be written"),
    (["bench", "--runs-dir", "."], "is not a run store and not empty"),
    (["run", "euler", "--frobnicate"], "No such option"),
    (["run"], "Missing argument 'VARIANT'"),
    (["run", "euler", "--lr", "5"], "--lr must be a number from 1e-06 to 1"),
    (["run", "euler", "--lr", "nan"], "--lr must be a number"),
    (["run", "euler", "--batch-with", "0,x"], "--batch-with must be comma-separated integers"),
    (["run", "euler", "--batch-with", "1,2"], "--batch-with must include --seed 0"),
    (["run", "euler", "--batch-with", "0,0"], "distinct seeds"),
    (["run", "tdq-dopri5", "--batch-with", "0,1"], "one step-size controller per solve"),
    (["run", "checkpoint-dopri5", "--batch-with", "0,1"], "one step-size controller per solve"),
    (["run", "kvaerno3"], "an implicit method is for stiff problems"),
    (["run", "euler", "--task", "stiff", "--newton-tol", "1e-6"], "apply to the implicit methods"),
    (["run", "kvaerno3", "--task", "stiff", "--newton-tol", "1"], "--newton-tol must be from 1e-14 to 0.01"),
    (["run", "kvaerno3", "--task", "stiff", "--newton-tol", "nan"], "--newton-tol must be from"),
    (["run", "backward-euler", "--task", "stiff", "--newton-max-iter", "0"], "--newton-max-iter must be an integer"),
    (["run", "kvaerno3", "--task", "stiff", "--steps", "4"], "its steps are chosen by its tolerance"),
    (["run", "backward-euler", "--task", "stiff", "--batch-with", "0,1"], "Newton"),
    (["bench", "--task", "stiff"], "task stiff is stiff"),
    (["bench", "--rounds", "0"], "--rounds must be an integer from 1 to 1,000"),
    (["bench", "--rounds", str(10**9)], "--rounds must be an integer from 1 to 1,000"),
    (["bench", "--steps", str(10**9)], "--steps must be an integer from 1 to 1,000"),
    (["bench", "--batch", "100000"], "--batch must be an integer from 1 to 1,000"),
    (["bench", "--device", "gpu"], "unknown device 'gpu'"),
    (["bench", "--runs-dir", "FILE"], "is a file, not a directory"),
    (["run-all", "--profile", "huge"], "unknown profile 'huge'"),
    (["run-all", "--experiments", "nope"], "unknown experiment(s) 'nope'"),
    (["run-all", "--experiments", ""], "--experiments names no experiment"),
    (["run-all", "--experiments", ","], "--experiments names no experiment"),
    (["run-all", "--experiments", " , "], "--experiments names no experiment"),
    (["run-all", "--workers", "0"], "--workers must be an integer from 1"),
    (["run-all", "--workers", "1000"], "one process per core at most"),
    (["run-all", "--scheduler", "foo://127.0.0.1:1"], "--scheduler needs an address like tcp://host:8786"),
    (["run-all", "--scheduler", "127.0.0.1:8786"], "--scheduler needs an address like tcp://host:8786"),
    (["run-all", "--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler"),
    (["run-all", "--scheduler", "tcp://[::1"], "--scheduler needs an address like tcp://host:8786"),
    (["run-all", "--scheduler", "tcp://]"], "--scheduler needs an address like tcp://host:8786"),
    (["run-all", "--runs-dir", "FILE"], "is a file, not a directory"),
    (["run-all", "--runs-dir", ""], "must name a directory"),
    (["status", "--runs-dir", "missing"], "does not exist; run 'study run-all' first"),
    (["status", "--runs-dir", "FILE"], "is a file, not a runs directory"),
    (["status", "--runs-dir", "/proc"], "'/proc' is not a run store"),
    (["status", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "euler", "--runs-dir", "DANGLING"], "--runs-dir 'DANGLING' is a dangling symbolic link"),
    (["run-all", "--runs-dir", "DANGLING"], "--runs-dir 'DANGLING' is a dangling symbolic link (to 'nowhere'"),
    (["status", "--runs-dir", "DANGLING"], "--runs-dir 'DANGLING' is a dangling symbolic link"),
    (["figures", "--runs-dir", "STORE", "--out", "DANGLING"], "--out 'DANGLING' is a dangling symbolic link"),
    (["figures", "--runs-dir", "STORE", "--out", "FILE"], "--out 'FILE' is a file, not a directory"),
    (["figures", "--runs-dir", "STORE", "--tables-out", "FILE"], "--tables-out 'FILE' is a file, not a directory"),
    (["figures", "--runs-dir", "FILE"], "is a file, not a runs directory"),
    (["figures", "--runs-dir", "missing"], "does not exist"),
    (["figures", "--runs-dir", "STORE", "--only", "nope"], "unknown figure(s) 'nope'"),
    (["figures", "--runs-dir", "STORE", "--only", ","], "unknown figure(s) (none named)"),
    (["tables", "--runs-dir", "STORE", "--out", "FILE"], "--out 'FILE' is a file, not a directory"),
    (["dataset", "--sigma", "1e308"], "--sigma must be a noise standard deviation from 0.01 to 1"),
    (["dataset", "--sigma", "nan"], "--sigma must be a noise standard deviation"),
    (["dataset", "--sigma", "inf"], "--sigma must be a noise standard deviation"),
    (["dataset", "--sigma", "1e-300"], "--sigma must be a noise standard deviation"),
    (["dataset", "--sigma", "-1"], "--sigma must be a noise standard deviation"),
    (["dataset", "--seed", "-5"], "--seed must be an integer from 0"),
    (["paper", "--paper-dir", "EMPTY"], "main.tex does not exist"),
    (["frobnicate"], "No such command"),
]
NEW_TASKS = [  # the tasks beyond the spiral: names, options that do not apply, sizes, non-finite numbers, remedies
    (["run", "euler", "--task", "nope"], "unknown task 'nope'; choose one of: spiral, dynamics, density, digits"),
    (["run", "euler", "--task", ""], "unknown task ''"),
    (["run", "euler", "--task", LONG], "unknown task 'xxxxxxxx"),
    (["run", "resnet", "--task", "dynamics"], "resnet does not apply to task dynamics"),
    (["run", "resnet", "--task", "density"], "resnet does not apply to task density"),
    (["run", "no-flow", "--task", "density"], "no-flow does not apply to task density"),
    (["run", "euler", "--task", "density", "--density", "nope"], "unknown density 'nope'; choose one of: 8gaussians"),
    (["run", "euler", "--task", "density", "--density", ""], "unknown density ''"),
    (["run", "euler", "--density", "moons"], "--density does not apply to task spiral"),
    (["run", "euler", "--task", "dynamics", "--density", "moons"], "--density does not apply to task dynamics"),
    (["run", "euler", "--task", "digits", "--density", "moons"], "--density does not apply to task digits"),
    (["run", "euler", "--task", "dynamics", "--epochs", "3"], "--epochs does not apply to task dynamics"),
    (["run", "euler", "--task", "density", "--epochs", "3"], "--epochs does not apply to task density"),
    (["run", "euler", "--iterations", "3"], "--iterations does not apply to task spiral"),
    (["run", "euler", "--task", "digits", "--iterations", "3"], "--iterations does not apply to task digits"),
    (["run", "euler", "--task", "digits", "--noise", "0.1"], "--noise does not apply to task digits"),
    (["run", "euler", "--task", "dynamics", "--noise", "nan"], "--noise must be a number from 0 to 1"),
    (["run", "euler", "--task", "dynamics", "--noise", "inf"], "--noise must be a number from 0 to 1"),
    (["run", "euler", "--task", "dynamics", "--noise", "-0.1"], "--noise must be a number from 0 to 1"),
    (["run", "euler", "--task", "dynamics", "--iterations", "0"], "--iterations must be an integer from 1"),
    (["run", "euler", "--task", "dynamics", "--iterations", "-5"], "--iterations must be an integer from 1"),
    (["run", "euler", "--task", "density", "--iterations", "10000000"], "--iterations must be an integer from 1 to 100,000"),
    (["run", "euler", "--task", "density", "--lr", "nan"], "--lr must be a number"),
    (["run", "euler", "--task", "density", "--lr", "inf"], "--lr must be a number"),
    (["run", "euler", "--task", "digits", "--lr", "-1"], "--lr must be a number"),
    (["run", "euler", "--task", "digits", "--epochs", "0"], "--epochs must be an integer from 1"),
    (["run", "euler", "--task", "digits", "--seed", "-1"], "--seed must be an integer from 0"),
    (["run", "hand-dopri5", "--task", "density", "--steps", "10"], "--steps does not apply to hand-dopri5"),
    (["run", "tdq-dopri5", "--task", "digits", "--steps", "10"], "--steps does not apply to tdq-dopri5"),
    (["run", "hand-dopri5", "--steps", "10"], "--steps does not apply to hand-dopri5"),
    (["run", "no-flow", "--steps", "10"], "--steps does not apply to no-flow: it has no flow"),
    (["run", "no-flow", "--task", "digits", "--steps", "5"], "--steps does not apply to no-flow"),
    (["run", "euler", "--task", "dynamics", "--steps", "0"], "--steps must be an integer from 1"),
    (["run", "euler", "--kinetic", "-1"], "--kinetic must be a number from 0 to 100"),
    (["run", "euler", "--jacobian", "nan"], "--jacobian must be a number from 0 to 100"),
    (["run", "euler", "--task", "density", "--kinetic", "inf"], "--kinetic must be a number from 0 to 100"),
    (["run", "euler", "--task", "density", "--jacobian", "1e9"], "--jacobian must be a number from 0 to 100"),
    (["run", "euler", "--task", "dynamics", "--steer", "0.5"], "--steer does not apply to task dynamics"),
    (["run", "euler", "--steer", "1"], "--steer must be a number from 0 to below 1"),
    (["run", "euler", "--task", "density", "--steer", "-0.1"], "--steer must be a number from 0 to below 1"),
    (["run", "euler", "--task", "digits", "--steer", "nan"], "--steer must be a number from 0 to below 1"),
    (["run", "euler", "--weight-decay", "-0.01"], "--weight-decay must be a number from 0 to 10"),
    (["run", "euler", "--task", "dynamics", "--weight-decay", "inf"], "--weight-decay must be a number from 0 to 10"),
    (["run", "no-flow", "--kinetic", "0.1"], "--kinetic acts on a flow's solve: no-flow has none"),
    (["run", "resnet", "--steer", "0.5"], "--steer acts on a flow's solve: resnet has none"),
    (["run", "no-flow", "--task", "digits", "--jacobian", "0.1"], "--jacobian acts on a flow's solve"),
    (["run", "euler", "--steer", "0.5", "--batch-with", "0,1"], "--steer draws each seed's own end times"),
    (["run", "hand-dopri5", "--task", "density", "--batch-with", "0,x"], "--batch-with must be comma-separated"),
    (["run", "tdq-dopri5", "--task", "dynamics", "--batch-with", "0,1"], "one step-size controller per solve"),
    (["run-all", "--tasks", "nope"], "unknown task"),
    (["run-all", "--tasks", ","], "--tasks names no task"),
    (["run-all", "--experiments", "digits/nope"], "unknown experiment(s) 'digits/nope'"),
    (["variants", "--task", "nope"], "unknown task 'nope'"),
    (["bench", "--task", "nope"], "unknown task 'nope'"),
    (["bench", "--task", "density", "--batch", "64"], "--batch does not apply with --task"),
    (["bench", "--task", "density", "--rounds", "0"], "--rounds must be an integer from 1 to 1,000"),
    (["bench", "--task", "density", "--device", "cuda"], "--task benches run on the CPU"),
]
BAD += NEW_TASKS
BAD += [  # the store's new commands and refusals, --tasks for figures, the generated protocol options
    (["migrate", "--runs-dir", "missing"], "does not exist"),
    (["migrate", "--runs-dir", "FILE"], "is a file, not a runs directory"),
    (["migrate", "--runs-dir", "."], "is not a run store"),
    (["migrate", "--runs-dir", "DANGLING"], "is a dangling symbolic link"),
    (["figures", "--runs-dir", "STORE", "--tasks", "nope"], "unknown task(s) 'nope'"),
    (["figures", "--runs-dir", "STORE", "--tasks", ","], "--tasks names no task"),
    (["figures", "--runs-dir", "STORE", "--tasks", LONG], "unknown task(s) 'xxxxxxxx"),
    (["status", "--runs-dir", "FILE"], "is a file, not a runs directory"),
    (["status", "--runs-dir", "missing"], "does not exist"),
    (["status", "--profile", "nope"], "unknown profile 'nope'"),
    (["tables", "--runs-dir", "."], "is not a run store"),
    (["run", "euler", "--task", "density", "--density", LONG], "unknown density 'xxxxxxxx"),
    (["run", "euler", "--task", "dynamics", "--noise", "1.5"], "--noise must be a number from 0 to 1"),
    (["run", "euler", "--task", "dynamics", "--noise", "x"], "is not a valid float"),
    (["run", "euler", "--epochs", "1.5"], "is not a valid integer"),
    (["run", "euler", "--lr", "0"], "--lr must be a number from 1e-06 to 1"),
    (["run", "euler", "--lr", "-0.0"], "--lr must be a number from 1e-06 to 1"),
    (["run", "euler", "--task", "dynamics", "--iterations", "100001"], "--iterations must be an integer from 1 to 100,000"),
    (["run", "euler", "--task", "digits", "--epochs", "100001"], "--epochs must be an integer from 1 to 100,000"),
    (["run", "euler", "--task", "digits", "--iterations", "0"], "--iterations must be an integer from 1"),
    (["run", "euler", "--noise", "0.1"], "--noise does not apply to task spiral"),
    (["run", "euler", "--task", "density", "--noise", "0"], "--noise does not apply to task density"),
    (["run", "euler", "--runs-dir", "/proc", "--new-store"], "cannot be written"),
    (["run-all", "--profile", "quick", "--runs-dir", "/sys"], "is not a run store and not empty"),
    (["run-all", "--profile", "quick", "--runs-dir", "/dev"], "is not a run store and not empty"),
    (["run-all", "--profile", "quick", "--runs-dir", "FILE", "--new-store"], "is a file, not a directory"),
    (["bench", "--task", "dynamics", "--runs-dir", "."], "is not a run store and not empty"),
]


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, words, tmp_path):
    (tmp_path / "FILE").write_text("")
    (tmp_path / "STORE" / "train").mkdir(parents=True)
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "DANGLING").symlink_to("nowhere")  # a symbolic link to nothing
    before = tree(tmp_path)
    r = study(*args, cwd=tmp_path, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("study: error:") and words in lines[0], r.stderr[-2000:]
    assert len(lines[0]) < 600 and "Traceback" not in r.stderr and r.stdout == ""
    assert tree(tmp_path) == before  # not even an empty directory


def test_run_all_refuses_an_execution_log_that_is_a_fifo_before_running_anything(tmp_path):
    """Appending to a FIFO waits for a reader forever: run-all refuses it up front, in one line."""
    import os

    runs = tmp_path / "runs"
    (runs / "train").mkdir(parents=True)
    os.mkfifo(runs / "run-all.log.jsonl")
    before = tree(tmp_path)
    r = study("run-all", "--profile", "quick", "--experiments", "gradients", "--runs-dir", str(runs), "--workers", "1",
              cwd=tmp_path, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "run-all.log.jsonl is a FIFO" in lines[0], r.stderr[-2000:]
    assert r.stdout == "" and tree(tmp_path) == before


@pytest.mark.parametrize("args", [["figures", "--runs-dir", "NOTASTORE"], ["tables", "--runs-dir", "NOTASTORE"],
                                  ["figures", "--runs-dir", "STORE", "--only", "nope"]])
def test_an_unwritable_home_adds_no_matplotlib_warning_to_the_one_line(args, tmp_path):
    """With HOME where nothing can be made (under a file, so even root cannot) and no MPLCONFIGDIR, matplotlib
    would warn about its configuration directory before the command's own error: the options are checked before
    it is imported, and it gets a temporary configuration directory (removed at exit)."""
    import subprocess
    import sys

    from tests.helpers import ENV

    (tmp_path / "FILE").write_text("")
    (tmp_path / "NOTASTORE").mkdir()
    (tmp_path / "NOTASTORE" / "notes.txt").write_text("")
    (tmp_path / "STORE" / "train").mkdir(parents=True)
    env = {k: v for k, v in ENV.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path / "FILE" / "home")
    (tmp_path / "TMP").mkdir()
    env["TMPDIR"] = str(tmp_path / "TMP")  # matplotlib's temporary directory goes here, and must be gone after
    before = tree(tmp_path)
    r = subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=120)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("study: error:"), r.stdout + r.stderr
    assert tree(tmp_path) == before
