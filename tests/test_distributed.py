"""A study over two processes (``jax.distributed`` on 127.0.0.1, one CPU device each).

The table must equal the one-process table: the same records (file names,
replications, methods, statuses), their metrics to float32 rounding. One
process runs a chunk's replications as one batch on its device, two processes
half of it on each, and these are different programmes: on some CPUs (an
AVX-512 Xeon) XLA rounds them differently, on others (an AMD EPYC) they agree bit
for bit. The two processes return the same table exactly, and a directory
left by a killed process must resume, under one process or two, to the same
table.
Every subprocess has a timeout, so a hung collective fails the test instead of
hanging it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pandas as pd
import pytest

from codeal_jax import runtime
from codeal_jax.cli.simulate import per_process_devices
from codeal_jax.sim import DGPConfig, run_study

# Tiny and fast to compile (compilation dominates on 2 shared cores): N = 12, T = 10; DiD through
# the library, MC-NNM (an iterative SVD method) through the CLI.
DGP = DGPConfig(n_units=12, n_periods=10, n_covariates=1, rank=2, covariate="none")
METHODS = ["did"]
CLI_METHODS = ["mc_nnm"]
SEED, REPS, CHUNK = 7, 6, 2
TIMEOUT_S = 120  # per subprocess; a healthy run takes about 10 s on 2 cores
HEARTBEAT_S = 4  # where a process is killed, the survivor stops after this many seconds

WORKER = textwrap.dedent(
    """
    import os, sys
    from codeal_jax.runtime import start_distributed

    port, pid, out, die_at, heartbeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:6])
    start_distributed(f"127.0.0.1:{port}", 2, pid, heartbeat_timeout_s=heartbeat or None)
    import jax
    from codeal_jax.sim import DGPConfig, run_study, runner

    if die_at:  # this process dies (SIGKILL-like, no clean-up) at its die_at-th chunk
        calls, fetch = [0], runner.fetch
        def dying_fetch(tree):
            calls[0] += 1
            if calls[0] == die_at:
                os._exit(17)
            return fetch(tree)
        runner.fetch = dying_fetch
    assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
    res = run_study(jax.random.key(%(seed)d), %(dgp)r, %(methods)r, %(reps)d, covariates=None,
                    chunk_size=%(chunk)d, out_dir=out, progress=False)
    res.data.to_csv(os.path.join(out, f"returned_{pid}.csv.txt"), index=False)
    print("WORKER_OK", pid, flush=True)
    """
) % {"seed": SEED, "dgp": DGP, "methods": METHODS, "reps": REPS, "chunk": CHUNK}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CODEAL_JAX_CACHE": "0"}
    env.pop("XLA_FLAGS", None)  # one CPU device a process
    return env


def launch(argv_of, n: int = 2) -> list[tuple[int, str]]:
    """Starts ``n`` processes (``argv_of(i)``) together; returns each one's (exit code, output)."""
    procs = [
        subprocess.Popen(argv_of(i), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(n)
    ]
    results = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            out, _ = p.communicate()
            pytest.fail(f"a process hung past {TIMEOUT_S} s:\n{out[-3000:]}")
        results.append((p.returncode, out))
    return results


def run_workers(out, die_at=(0, 0)) -> list[tuple[int, str]]:
    """The worker study over two processes; ``die_at[i]``: process i dies at that chunk (0: never)."""
    port = str(free_port())
    # A short heartbeat only where a process dies: a loaded CI machine must not lose a healthy one.
    heartbeat = str(HEARTBEAT_S if any(die_at) else 0)
    return launch(lambda i: [sys.executable, "-c", WORKER, port, str(i), str(out), str(die_at[i]), heartbeat])


def one_process(out=None):
    """The reference: the same study in this process (one CPU device)."""
    return run_study(jax.random.key(SEED), DGP, METHODS, REPS, covariates=None, chunk_size=CHUNK,
                     devices=jax.local_devices()[:1], out_dir=out, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    return one_process(out), out


def chunk_files(out) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.startswith("chunk_"))


def assert_same_records(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal tables up to float32 rounding of the metrics: every other column, and the layout, exactly."""
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    floats = [c for c in want.columns if pd.api.types.is_float_dtype(want[c])]
    others = [c for c in want.columns if c not in floats]
    pd.testing.assert_frame_equal(got[others].reset_index(drop=True), want[others].reset_index(drop=True),
                                  check_exact=True)
    np.testing.assert_allclose(got[floats].to_numpy(), want[floats].to_numpy(), rtol=2e-5, atol=1e-6)


def assert_same_files(got_dir, want_dir, name: str) -> None:
    assert_same_records(pd.read_csv(got_dir / name, dtype={"method": str}),
                        pd.read_csv(want_dir / name, dtype={"method": str}))


def test_cli_two_processes_equal_one(tmp_path):
    """``codeal-jax simulate`` over two processes writes the records and summary of one process (metrics to
    float32 rounding)."""
    from codeal_jax import sim

    args = ["--config", "2", "--units", "12", "--periods", "10", "--covariate", "none", "--covariate-removal",
            "none", "--methods", ",".join(CLI_METHODS), "--reps", str(REPS), "--chunk-size", str(CHUNK),
            "--seed", str(SEED), "--quiet", "--no-cache"]
    # The same study in this process, as the CLI builds it.
    dgp = sim.config_preset(2, factor="linear", covariate="none", noise_ar=0.0, noise_unit_spread=0.0,
                            n_units=12, n_periods=10, n_control=None, t_pre=None)
    one = tmp_path / "one"
    res = run_study(jax.random.key(SEED), dgp, sim.paper_methods(CLI_METHODS, dgp, covariates=None), REPS,
                    chunk_size=CHUNK, devices=jax.local_devices()[:1], out_dir=one, progress=False)
    res.summary().to_csv(one / "summary.csv")

    two, port = tmp_path / "two", str(free_port())
    cli = [sys.executable, "-m", "codeal_jax.cli", "simulate", *args, "--out", str(two)]
    done = launch(lambda i: [*cli, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                             "--process-id", str(i)])
    assert [rc for rc, _ in done] == [0, 0], done[0][1][-3000:] + done[1][1][-3000:]
    assert "2 processes, 2 devices" in done[0][1] and "mean (standard error)" not in done[1][1]
    assert chunk_files(two) == chunk_files(one) == ["chunk_000000-000001.csv", "chunk_000002-000003.csv",
                                                    "chunk_000004-000005.csv"]
    for name in [*chunk_files(one), "summary.csv"]:
        assert_same_files(two, one, name)


def test_killed_process_resumes_under_two_or_one(reference, tmp_path):
    """Process 1 dies during the second chunk: process 0 (the writer) stops too, with the first chunk
    written once. Two processes finish the study; a lost chunk is redone by one process; same table."""
    ref, ref_dir = reference
    out = tmp_path / "killed"
    (rc0, text0), (rc1, _) = run_workers(out, die_at=(0, 2))
    assert rc1 == 17 and rc0 != 0, text0[-3000:]
    assert chunk_files(out) == ["chunk_000000-000001.csv"]
    assert not [n for n in os.listdir(out) if n.startswith(".tmp")]

    results = run_workers(out)
    assert [rc for rc, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert chunk_files(out) == chunk_files(ref_dir)
    for name in chunk_files(out):  # records as one process writes them
        assert_same_files(out, ref_dir, name)
    returned = [pd.read_csv(out / f"returned_{pid}.csv.txt", dtype={"method": str}) for pid in (0, 1)]
    pd.testing.assert_frame_equal(returned[0], returned[1], check_exact=True)  # one programme, one table
    written = pd.concat([pd.read_csv(out / n, dtype={"method": str}) for n in chunk_files(out)])
    assert_same_records(returned[0], ref.data)
    # What was written is what was returned, to the digits a CSV keeps.
    assert_same_records(written.sort_values(["rep", "method"]), returned[0].sort_values(["rep", "method"]))

    os.remove(out / "chunk_000004-000005.csv")
    again = one_process(out)  # the lost chunk redone by one process, the rest read back
    assert_same_records(again.data, ref.data)
    last = again.data[again.data["rep"] >= 4].reset_index(drop=True)
    pd.testing.assert_frame_equal(last, ref.data[ref.data["rep"] >= 4].reset_index(drop=True), check_exact=True)


# ----------------------------------------------------------------------------- host-side pieces


def test_start_distributed_refuses_bad_arguments():
    for kw, match in [
        ({"coordinator": "localhost"}, "HOST:PORT"),
        ({"coordinator": "localhost:0"}, "HOST:PORT"),
        ({"coordinator": ":80"}, "HOST:PORT"),
        ({"num_processes": 0}, "num_processes"),
        ({"num_processes": 2, "process_id": 2}, "process_id"),
        ({"process_id": -1}, "process_id"),
        ({"heartbeat_timeout_s": 0}, "heartbeat"),
    ]:
        with pytest.raises(ValueError, match=match):
            runtime.start_distributed(**kw)
    jax.devices()  # the backend exists in this process: too late to join a run
    with pytest.raises(ValueError, match="before JAX computes"):
        runtime.start_distributed("127.0.0.1:1234", 1, 0)


class _Dev:
    def __init__(self, pid, i):
        self.process_index, self.id = pid, i


def test_per_process_devices():
    devs = [_Dev(0, 0), _Dev(0, 1), _Dev(1, 2), _Dev(1, 3)]
    assert [d.id for d in per_process_devices(devs, 1)] == [0, 2]
    assert per_process_devices(devs, None) is None
    with pytest.raises(ValueError, match="only"):
        per_process_devices(devs, 3)


def test_one_process_run_needs_no_collective(monkeypatch):
    """With one process nothing is gathered: the single-process path is the one it always was."""
    from codeal_jax import batching

    assert batching.gather_processes(np.arange(3)).tolist() == [[0, 1, 2]]
    monkeypatch.setattr("jax.experimental.multihost_utils.process_allgather", _no_collective)
    res = run_study(jax.random.key(SEED), DGP, ["did"], 2, covariates=None, progress=False)
    assert len(res.data) == 2


def _no_collective(*args, **kw):
    raise AssertionError("one process must not call a collective")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--coordinator", "nohost"], "HOST:PORT"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "process_id"),
        (["--num-processes", "2", "--inference", "placebo"], "--inference runs in one process"),
    ],
)
def test_cli_refuses_bad_distributed_flags(extra, message, capsys):
    from codeal_jax.cli import main

    assert main(["simulate", "--methods", "did", "--reps", "2", "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err
