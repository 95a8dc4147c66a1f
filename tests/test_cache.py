"""The persistent compilation cache of the command-line tools: where it lives, how it is turned off."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from codeal_jax import runtime


def test_cache_dir_rules():
    assert runtime.cache_dir({"CODEAL_JAX_CACHE": "0", "CODEAL_JAX_CACHE_DIR": "/x"}) is None
    assert runtime.cache_dir({"CODEAL_JAX_CACHE_DIR": "/x"}) == "/x"
    assert runtime.cache_dir({"XDG_CACHE_HOME": "/c"}) == os.path.join("/c", "codeal_jax", "xla")
    assert runtime.cache_dir({}).endswith(os.path.join(".cache", "codeal_jax", "xla"))


def _fit(csv, out, env, *extra):
    cmd = [sys.executable, "-m", "codeal_jax.cli", "fit", str(csv), "--unit", "u", "--time", "t", "--outcome", "y",
           "--treatment", "d", "--method", "did", "--out", str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)


def _files(path):
    return [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]


def test_cli_fills_the_cache_and_reuses_it(tmp_path):
    rng = np.random.default_rng(0)
    n, t = 8, 6
    d = ((np.arange(n)[:, None] >= 5) & (np.arange(t)[None, :] >= 4)).astype(int)
    y = rng.normal(size=(n, t)) + 2 * d
    pd.DataFrame({"u": np.repeat(np.arange(n), t), "t": np.tile(np.arange(t), n), "y": y.ravel(),
                  "d": d.ravel()}).to_csv(tmp_path / "p.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "CODEAL_JAX_CACHE"}
    # JAX's debug log names each persistent-cache hit and miss.
    env.update(CODEAL_JAX_CACHE_DIR=str(tmp_path / "cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_LOGGING_LEVEL="DEBUG")
    first = _fit(tmp_path / "p.csv", tmp_path / "o1", env)
    assert f"compilation cache: {tmp_path / 'cache'}" in first.stderr
    stored = _files(tmp_path / "cache")
    assert stored, "the first run stored no compiled programme"
    assert "persistent compilation cache miss" in first.stderr.lower()
    second = _fit(tmp_path / "p.csv", tmp_path / "o2", env)
    log = second.stderr.lower()
    assert "persistent compilation cache hit" in log and "persistent compilation cache miss" not in log
    assert sorted(_files(tmp_path / "cache")) == sorted(stored)
    a = pd.read_csv(tmp_path / "o1" / "unit_effects.csv")
    b = pd.read_csv(tmp_path / "o2" / "unit_effects.csv")
    pd.testing.assert_frame_equal(a, b)
    assert "compilation cache" in second.stderr

    off = _fit(tmp_path / "p.csv", tmp_path / "o3", {**env, "CODEAL_JAX_CACHE_DIR": str(tmp_path / "c2")},
               "--no-cache")
    assert "compilation cache" not in off.stderr and not os.path.exists(tmp_path / "c2")
