"""Shared fixtures: small panels and reproducible keys."""

import zlib

import jax
import numpy as np
import pytest

import codeal_jax as cj


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
