"""Shared fixtures: small panels and reproducible keys."""

import dataclasses
import importlib.util
import os
import zlib

# The command-line tools keep compiled programmes in a user cache; tests that call them in this
# process (or in subprocesses that inherit this environment) must not write there.
# tests/test_cache.py turns it on for its own subprocesses, in a temporary directory.
os.environ["CODEAL_JAX_CACHE"] = "0"

import jax
import numpy as np
import pytest

import codeal_jax as cj


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programmes():
    """Frees each test module's compiled programmes when it ends.

    The default suite compiles several hundred XLA programmes in one process;
    kept alive together their JIT-code mappings approach the kernel's default
    ``vm.max_map_count`` (65530), and the full suite aborted inside an XLA
    compilation near its end on a 2-core machine (never a module run alone).
    """
    yield
    jax.clear_caches()


@pytest.fixture
def key(request):
    """A key that is distinct and reproducible per test."""
    return jax.random.key(zlib.crc32(request.node.nodeid.encode()))


def four_block_arrays(seed=0, n=16, t=12, n_control=8, t_pre=6, p=2, rank=2, noise=0.1):
    """A small low-rank four-block panel as numpy arrays: (y, w, x, y0, tau)."""
    rng = np.random.default_rng(seed)
    lam = rng.normal(size=(n, rank))
    f = rng.normal(size=(t, rank))
    x = rng.normal(size=(n, p))
    beta = rng.normal(size=(p, t)) + 1
    y0 = lam @ f.T + x @ beta + noise * rng.normal(size=(n, t))
    w = np.zeros((n, t))
    w[n_control:, t_pre:] = 1
    tau = 3 + rng.normal(size=n)
    return y0 + tau[:, None] * w, w, x, y0, tau


@pytest.fixture
def small_panel():
    y, w, x, _, _ = four_block_arrays()
    return cj.Panel.from_arrays(y, w, x)


def numpy_twfe(y, mask):
    """float64 least squares of y on unit and period dummies over the mask: (u (N,), v (T,)).

    Minimum-norm (lstsq), so an unidentified split of the constant is resolved
    the same way as the library's pseudo-inverse solvers.
    """
    n, t = y.shape
    rows, cols = np.nonzero(mask)
    design = np.zeros((rows.size, n + t))
    design[np.arange(rows.size), rows] = 1.0
    design[np.arange(rows.size), n + cols] = 1.0
    coef = np.linalg.lstsq(design, np.asarray(y, np.float64)[rows, cols], rcond=None)[0]
    return coef[:n], coef[n:]


def with_removal(config, removal):
    """``config`` with its covariate stage set to ``removal`` ("dnn", "linear" or None), if it has one."""
    if not isinstance(config, cj.ImputationConfig):
        return config
    cov = dataclasses.replace(config.covariates, method=removal or "none")
    return dataclasses.replace(config, covariates=cov)


def load_script(path, name):
    """A script that is not a package module (``examples/*.py``), imported from its file."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
