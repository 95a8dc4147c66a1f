"""``codeal-jax simulate --out DIR`` survives SIGKILL: a restarted study equals an uninterrupted one.

tests/test_runner.py covers resuming through the Python API after a chunk
file is deleted, and refusing a directory with other settings. Here the real
command runs in a subprocess and is killed with SIGKILL (no cleanup handlers
run) right after its first chunk file appears; running the same command again
must finish the study with a table identical, bit for bit, to a run that was
never interrupted, and must not read back a leftover temporary file.

Cost: three runs of a tiny study (12 x 8 panel, 40 replications). The runs
share a persistent compilation cache in the test's temporary directory, so
only the first one compiles. The CoDEAL
variant is marked slow.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from codeal_jax import cli

REPS = 40
CHUNK_RE = re.compile(r"^chunk_(\d+)-(\d+)\.csv$")


def _argv(methods: str, out, seed: int = 3) -> list[str]:
    return ["simulate", "--config", "2", "--units", "12", "--periods", "8", "--covariate", "none",
            "--covariate-removal", "none", "--methods", methods, "--reps", str(REPS), "--chunk-size", "1",
            "--seed", str(seed), "--quiet", "--out", str(out)]


def _env(cache) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache), MPLBACKEND="Agg")
    return env


def _command(argv):
    return [sys.executable, "-m", "codeal_jax.cli", *argv]


def _chunks(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if CHUNK_RE.match(n))


def _rows(folder) -> pd.DataFrame:
    """Every chunk file of a study directory, in replication order."""
    frames = [pd.read_csv(os.path.join(folder, n), dtype={"method": str}) for n in _chunks(folder)]
    return pd.concat(frames, ignore_index=True).sort_values(["rep", "method"], kind="stable").reset_index(drop=True)


def _run_to_end(argv, env, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(argv), env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted did-only study (also fills the compilation cache)."""
    base = tmp_path_factory.mktemp("interrupt")
    env = _env(base / "cache")
    ref = base / "ref"
    _run_to_end(_argv("did", ref), env)
    return base, env, ref


def _kill_after_first_chunk(argv, env, folder, timeout=300) -> list[str]:
    """Starts the study, SIGKILLs it as soon as one chunk file exists; returns the chunks then on disk."""
    proc = subprocess.Popen(_command(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.isdir(folder) and _chunks(folder):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the study ended before it could be killed: {err[-2000:]!r}"
    return _chunks(folder)


def _interrupt_resume_compare(methods, env, ref, out):
    on_disk = _kill_after_first_chunk(_argv(methods, out), env, out)
    assert 1 <= len(on_disk) < REPS, on_disk  # killed mid-study
    assert not os.path.exists(out / "summary.csv")
    # A killed writer can leave a temporary file behind; plant one with wrong numbers for a rep
    # that is not done yet, as a partial write would. It must never be read back.
    done = _rows(out)
    todo = sorted(set(range(REPS)) - set(done["rep"]))[-1]
    fake = done.iloc[:1].assign(rep=todo, cf_mae=999.0, cf_mse=999.0)
    leftover = out / f".tmp_k1ll3dchunk_{todo:06d}-{todo:06d}.csv"
    leftover.write_text(fake.to_csv(index=False))

    # The same command again resumes. (Same chunk size: a different one is allowed, but batched
    # float32 linear algebra then agrees only to ~1e-6 relative, not bit for bit; test_runner.py
    # checks that at rtol 1e-5.)
    _run_to_end(_argv(methods, out), env)

    assert _chunks(out) == _chunks(ref) and len(_chunks(ref)) == REPS
    pd.testing.assert_frame_equal(_rows(out), _rows(ref), check_exact=True)
    assert (out / "summary.csv").read_bytes() == (ref / "summary.csv").read_bytes()
    assert (out / "settings.json").read_bytes() == (ref / "settings.json").read_bytes()
    assert 999.0 not in set(_rows(out)["cf_mae"])
    # Only temporary files from the kill remain, and none has a name the runner reads back.
    temps = [n for n in os.listdir(out) if n.startswith(".tmp_")]
    assert leftover.name in temps and not [n for n in temps if CHUNK_RE.match(n)]
    assert not [n for n in os.listdir(ref) if n.startswith(".tmp_")]  # a clean run leaves none


def test_sigkill_then_resume_equals_uninterrupted(reference):
    base, env, ref = reference
    _interrupt_resume_compare("did", env, ref, base / "killed")


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_codeal(tmp_path):
    env = _env(tmp_path / "cache")
    ref = tmp_path / "ref"
    _run_to_end(_argv("did,codeal", ref), env)
    _interrupt_resume_compare("did,codeal", env, ref, tmp_path / "killed")


@pytest.mark.parametrize(
    "change, differing",
    [
        (dict(seed=4), "['key']"),
        (dict(units="16"), "['dgp']"),
        (dict(methods="did,mc_nnm"), "['methods']"),
    ],
)
def test_directory_with_other_settings_is_refused(reference, capsys, change, differing):
    """Same --out, other settings: exit 2, one line naming what differs; nothing on disk changes."""
    _, _, ref = reference
    before = {n: (ref / n).read_bytes() for n in os.listdir(ref)}
    argv = _argv(change.get("methods", "did"), ref, seed=change.get("seed", 3))
    if "units" in change:
        argv[argv.index("--units") + 1] = change["units"]
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"holds a study with different settings (differing: {differing})" in err
    assert "use another out_dir or delete it" in err
    assert {n: (ref / n).read_bytes() for n in os.listdir(ref)} == before
