"""The compiled programmes of a study: draw a chunk of replications, then fit and score every method.

Replication j always uses the key ``fold_in(key, j)``, split into a data key
and a fit key shared by every method (common random numbers; XLA computes the
shared covariate stage once). The fit programme depends only on the panel's
structure (shapes and treatment pattern), not on the generators, so a table of
DGPs with the same sizes compiles its fits once. Both programmes split the
replications of a chunk across devices with ``jax.sharding`` (a ``Mesh`` over
the devices).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from ..batching import shardings
from ..driver import plan
from ..panel import Panel
from .dgp import DGPConfig, draw_primitives, outcomes, treatment
from .metrics import evaluate
from .runs import MethodRun


@dataclasses.dataclass(frozen=True)
class Structure:
    """What a fit programme depends on: the panel's sizes and treatment pattern."""

    n_units: int
    n_periods: int
    n_covariates: int
    treatment: bytes

    @classmethod
    def of(cls, dgp: DGPConfig) -> "Structure":
        return cls(dgp.n_units, dgp.n_periods, dgp.n_covariates, np.packbits(treatment(dgp)).tobytes())

    def sample_panel(self) -> Panel:
        """A fully observed panel of this structure (zeros), to plan the fits on."""
        n, t = self.n_units, self.n_periods
        w = np.unpackbits(np.frombuffer(self.treatment, np.uint8), count=n * t).reshape(n, t).astype(bool)
        return Panel.from_arrays(np.zeros((n, t)), w, np.zeros((n, self.n_covariates)))


@functools.lru_cache(maxsize=64)
def data_programme(dgp: DGPConfig, devices: tuple):
    """``(key, idx (C,)) -> (panels, truths)``: replication j's data from ``fold_in(key, j)``."""
    split, replicated = shardings(devices)

    def one(key, j):
        k_data, _ = jax.random.split(jax.random.fold_in(key, j))
        return outcomes(draw_primitives(k_data, dgp), dgp)

    return jax.jit(jax.vmap(one, in_axes=(None, 0)), in_shardings=(replicated, split), out_shardings=split)


@functools.lru_cache(maxsize=16)
def fit_programme(structure: Structure, runs: tuple[MethodRun, ...], devices: tuple):
    """``(key, idx, panels, truths) -> {label: metrics}``: every method planned once, fitted and scored.

    Raises:
      ValueError: if a method cannot handle the design (from :func:`codeal_jax.plan`).
    """
    sample = structure.sample_panel()
    plans = [(run.label, plan(sample, run.config)) for run in runs]
    split, replicated = shardings(devices)

    def one(key, j, panel, truth):
        _, k_fit = jax.random.split(jax.random.fold_in(key, j))
        # Every method sees the same fit key: common random numbers, and a
        # method's numbers do not depend on which other methods run.
        return {label: evaluate(panel, truth, fit(k_fit, panel)) for label, fit in plans}

    return jax.jit(
        jax.vmap(one, in_axes=(None, 0, 0, 0)),
        in_shardings=(replicated, split, split, split),
        out_shardings=split,
    )


def chunk_programme(dgp: DGPConfig, runs: tuple[MethodRun, ...], devices: tuple):
    """``chunk(key, idx (C,)) -> {label: {metric: (C,)}}``: data, then fits, each compiled once and reused."""
    data_fn = data_programme(dgp, devices)
    fit_fn = fit_programme(Structure.of(dgp), runs, devices)

    def chunk(key, idx):
        panels, truths = data_fn(key, idx)
        return fit_fn(key, idx, panels, truths)

    return chunk
