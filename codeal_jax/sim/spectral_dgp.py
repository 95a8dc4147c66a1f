"""Simulation design for the row-scaled spectral estimator (reference section 7).

Low-rank arm means, unknown non-uniform (confounded) propensities, independent
Bernoulli assignment per cell:

* ``A(0) = mu0 11' + U0 V0'`` with ``U0`` (N, k0), ``V0`` (T, k0);
* ``M = tau0 11' + W Z'`` with ``W`` (N, k_m), ``Z`` (T, k_m); ``A(1) = A(0) + M``;
* ``p_it = clip(sigmoid(alpha + beta U0[i, 0] + gamma V0[t, 0]), p_min, p_max)``
  (``gamma = 0``: row-homogeneous, the paper's headline regime), optionally
  times ``1 + nu xi_it`` with ``xi`` uniform on [-1, 1] (spectrally small
  within-row noise);
* ``D_it ~ Bernoulli(p_it)``, ``Y = D (A(1) + E1) + (1 - D)(A(0) + E0)`` with
  ``E ~ N(0, sigma^2)``.

:func:`simulate` is a pure function of a key (vmap it over keys for
replications); the sizes live in the static config.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .. import checks
from ..panel import Panel

FACTORS = ("normal", "uniform")


@dataclasses.dataclass(frozen=True)
class SpectralDGPConfig:
    """Static parameters of the design (defaults: the reference's section 7).

    Attributes:
      n_units: N (the paper's n).
      n_periods: T (the paper's m).
      k0: rank of U0 V0' (A(0) has rank k0 + 1 when mu0 != 0).
      k_m: rank of W Z' (M has rank k_m + 1 when tau0 != 0).
      mu0: constant level of A(0).
      tau0: constant part of the effect.
      factors: ``"normal"`` (N(0, 1)) or ``"uniform"`` (U[-sqrt 3, sqrt 3], bounded).
      alpha, beta, gamma: propensity logit ``alpha + beta U0[:, 0] + gamma V0[:, 0]``.
      p_min, p_max: propensity clip.
      nu: size of the i.i.d. within-row multiplicative propensity noise.
      sigma: noise standard deviation.
    """

    n_units: int = 400
    n_periods: int = 400
    k0: int = 2
    k_m: int = 1
    mu0: float = 1.0
    tau0: float = 1.0
    factors: str = "normal"
    alpha: float = 0.0
    beta: float = 0.8
    gamma: float = 0.0
    p_min: float = 0.2
    p_max: float = 0.8
    nu: float = 0.0
    sigma: float = 0.5

    def __post_init__(self):
        for name in ("n_units", "n_periods", "k0", "k_m"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SpectralDGPConfig.{name} must be >= 1, got {getattr(self, name)}")
        checks.one_of(self, "factors", FACTORS)
        if not 0 < self.p_min <= self.p_max < 1:
            raise ValueError(f"need 0 < p_min <= p_max < 1, got {self.p_min}, {self.p_max}")
        if self.sigma < 0 or not 0 <= self.nu < 1:
            raise ValueError(f"need sigma >= 0 and 0 <= nu < 1, got {self.sigma}, {self.nu}")

    @property
    def ranks(self) -> tuple[int, int]:
        """Generic ``(rank A(0), rank A(1))``: the oracle ranks for the estimator."""
        r0 = self.k0 + (self.mu0 != 0)
        r1 = self.k0 + self.k_m + (self.mu0 + self.tau0 != 0)
        return int(r0), int(r1)


@struct.dataclass
class SpectralTruth:
    """The truth behind one simulated panel.

    Attributes:
      a0: (N, T) mean of Y(0).
      a1: (N, T) mean of Y(1).
      effects: (N, T) M = A(1) - A(0).
      unit_effect: (N,) row means of M (tau_i).
      propensity: (N, T) P(D_it = 1).
    """

    a0: jax.Array
    a1: jax.Array
    effects: jax.Array
    unit_effect: jax.Array
    propensity: jax.Array


def _factors(key: jax.Array, shape: tuple[int, int], kind: str) -> jax.Array:
    if kind == "uniform":
        return jax.random.uniform(key, shape, jnp.float32, -np.sqrt(3.0), np.sqrt(3.0))
    return jax.random.normal(key, shape, jnp.float32)


@functools.partial(jax.jit, static_argnames="config")
def simulate(key: jax.Array, config: SpectralDGPConfig = SpectralDGPConfig()) -> tuple[Panel, SpectralTruth]:
    """Draws one panel of the design.

    Args:
      key: PRNG key.
      config: static design parameters.

    Returns:
      ``(panel, truth)``: a fully observed (N, T) panel with no covariates and
      its :class:`SpectralTruth`.
    """
    n, t = config.n_units, config.n_periods
    ku, kv, kw, kz, kxi, kd, ke1, ke0 = jax.random.split(key, 8)
    u0 = _factors(ku, (n, config.k0), config.factors)
    v0 = _factors(kv, (t, config.k0), config.factors)
    w = _factors(kw, (n, config.k_m), config.factors)
    z = _factors(kz, (t, config.k_m), config.factors)
    a0 = config.mu0 + u0 @ v0.T
    effects = config.tau0 + w @ z.T
    a1 = a0 + effects

    logit = config.alpha + config.beta * u0[:, :1] + config.gamma * v0[:, 0][None, :]
    p = jnp.clip(jax.nn.sigmoid(logit), config.p_min, config.p_max)
    xi = jax.random.uniform(kxi, (n, t), jnp.float32, -1.0, 1.0)
    p = jnp.clip(p * (1.0 + config.nu * xi), 0.0, 1.0) * jnp.ones((n, t))
    d = jax.random.uniform(kd, (n, t)) < p
    y1 = a1 + config.sigma * jax.random.normal(ke1, (n, t))
    y0 = a0 + config.sigma * jax.random.normal(ke0, (n, t))
    y = jnp.where(d, y1, y0)
    panel = Panel(y=y, w=d, x=jnp.zeros((n, 0), jnp.float32), observed=jnp.ones((n, t), bool))
    truth = SpectralTruth(a0=a0, a1=a1, effects=effects, unit_effect=jnp.mean(effects, axis=1), propensity=p)
    return panel, truth


def spectral_metrics(effects: jax.Array, unit_effect: jax.Array, truth: SpectralTruth) -> dict[str, jax.Array]:
    """Row-wise error metrics of the reference (traceable, vmappable).

    Args:
      effects: (N, T) estimated effect matrix.
      unit_effect: (N,) estimated per-unit average effects.
      truth: the simulation's truth.

    Returns:
      ``row_rms`` sqrt(mean_i ||M_hat_i - M_i||^2 / T) (use for slopes),
      ``row_max`` max_i ||M_hat_i - M_i|| / sqrt(T) (the paper's metric),
      ``tau_rms`` and ``tau_max`` of the per-unit averages.
    """
    row_sq = jnp.mean((effects - truth.effects) ** 2, axis=1)
    tau_err = unit_effect - truth.unit_effect
    return {
        "row_rms": jnp.sqrt(jnp.mean(row_sq)),
        "row_max": jnp.sqrt(jnp.max(row_sq)),
        "tau_rms": jnp.sqrt(jnp.mean(tau_err**2)),
        "tau_max": jnp.max(jnp.abs(tau_err)),
    }
