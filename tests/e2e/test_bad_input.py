"""Bad input, table-driven: each invocation exits 2 with one `study: error:` line, no traceback, nothing written."""
import pytest

from tests.helpers import study

LONG = "x" * 100_000
BAD = [  # (arguments; FILE, STORE and EMPTY are paths in the test's directory), words the one line must hold
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
    (["run", "euler", "--frobnicate"], "No such option"),
    (["run"], "Missing argument 'VARIANT'"),
    (["run", "euler", "--lr", "5"], "--lr must be a number from 1e-06 to 1"),
    (["run", "euler", "--lr", "nan"], "--lr must be a number"),
    (["run", "euler", "--batch-with", "0,x"], "--batch-with must be comma-separated integers"),
    (["run", "euler", "--batch-with", "1,2"], "--batch-with must include --seed 0"),
    (["run", "euler", "--batch-with", "0,0"], "distinct seeds"),
    (["run", "tdq-dopri5", "--batch-with", "0,1"], "one step-size controller per solve"),
    (["run", "checkpoint-dopri5", "--batch-with", "0,1"], "one step-size controller per solve"),
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
    (["run-all", "--runs-dir", "FILE"], "is a file, not a directory"),
    (["run-all", "--runs-dir", ""], "must name a directory"),
    (["status", "--runs-dir", "missing"], "does not exist; run 'study run-all' first"),
    (["status", "--runs-dir", "FILE"], "is a file, not a runs directory"),
    (["status", "--runs-dir", "/proc"], "'/proc' is not a run store"),
    (["status", "--profile", "huge"], "unknown profile 'huge'"),
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


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, words, tmp_path):
    (tmp_path / "FILE").write_text("")
    (tmp_path / "STORE" / "train").mkdir(parents=True)
    (tmp_path / "EMPTY").mkdir()
    before = tree(tmp_path)
    r = study(*args, cwd=tmp_path, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("study: error:") and words in lines[0], r.stderr[-2000:]
    assert len(lines[0]) < 400 and "Traceback" not in r.stderr and r.stdout == ""
    assert tree(tmp_path) == before  # not even an empty directory
