"""Data-generating processes of the CoDEAL simulation study (paper Table 1).

One replication draws Gaussian primitives (covariates X, factors F, loadings
Lambda, the unit-specific coefficients of the factor generator, the per-period
parameters of the covariate generator, tau and the noise) and maps them to

    Y_it = phi_i(F_t) + g_t(X_i) + tau_i * W_it + eps_it,   eps_it ~ N(0, noise_sd^2).

The draw (:func:`draw_primitives`) and the map (:func:`factor_effect`,
:func:`covariate_effect`, :func:`outcomes`) are separate pure functions so that
tests can feed the same draws to an independent implementation. Where the paper
and the authors' code disagree the code is the default and the paper's variant
an option (see ``reference/codeal_paper.md`` section 13).

Everything that fixes shapes or control flow lives in the frozen, hashable
:class:`DGPConfig`, so :func:`simulate` is ``jit``-compiled once per config and
vmaps over keys.
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

DESIGNS = ("four_block", "staggered")
FACTORS = ("linear", "sine", "polynomial", "relu_mlp")
COVARIATES = ("none", "matrix_linear", "vector_linear", "tanh", "poly", "log", "relu")
QUADRATICS = ("code", "paper")

# Scales of the reference code's generators (paper Table 1).
LINEAR_SCALE = 0.5  # phi_i = 0.5 C_i Lambda_i'F_t
SINE_SCALE = 2.0  # phi_i = 2 C_i sin(Lambda_i'F_t)
POLY_SCALE = 0.2  # phi_i = 0.2 C1_i Lambda_i'F_t + 0.2 C2_i q_it
FACTOR_MLP_WIDTH = 10  # h1 of the per-unit random ReLU MLP
FACTOR_MLP_SCALE = 0.5  # every weight and bias of that MLP is N(0, 0.5^2)
COVARIATE_MLP_WIDTH = 32  # h2 of the per-period random ReLU MLP

# The matmuls here contract over K or P (a handful of terms); full float32
# precision keeps the data identical across backends (GPUs default to TF32).
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class DGPConfig:
    """Static description of a simulated panel (one of paper Table 1's DGPs).

    Attributes:
      n_units: N.
      n_periods: T.
      n_covariates: P, columns of X (may be 0 when ``covariate="none"``).
      rank: K, the number of latent factors.
      design: ``"four_block"`` (units ``n_control..N-1`` treated from period
        ``t_pre`` on) or ``"staggered"`` (``n_groups`` equal adoption groups).
      n_control: N1, the never-treated units of a four-block design (the first
        N1 units); default N // 2. Must be left ``None`` for a staggered design.
      t_pre: T1, the number of pre-treatment periods of a four-block design;
        default T // 2. Must be left ``None`` for a staggered design.
      n_groups: r, the adoption groups of a staggered design, in unit order:
        unit i is in group ``i // (N // r)``; group 0 is never treated and group
        g adopts at period ``T - g * (T // r)`` (the reference code's pattern).
        N and T must be divisible by r.
      factor: factor generator phi_i: ``"linear"``, ``"sine"``,
        ``"polynomial"`` or ``"relu_mlp"``; its coefficients are drawn per unit
        as in the code.
      covariate: covariate generator g_t: ``"none"``, ``"matrix_linear"``,
        ``"vector_linear"``, ``"tanh"``, ``"poly"``, ``"log"`` or ``"relu"``.
      noise_sd: SD of the idiosyncratic noise (0.5).
      tau_mean: mean of the unit effects tau_i (12).
      tau_sd: SD of tau_i (5; the paper's "N(12, 5)" is SD 5 in the code).
      fixed_tau: draw tau from the fixed key ``tau_seed`` so every replication
        shares one tau vector (the four-block script's behaviour); otherwise
        tau is redrawn per replication (the staggered script's).
      tau_seed: seed of the fixed tau vector.
      polynomial_quadratic: quadratic term of the polynomial factor generator:
        ``"code"`` (Lambda_i'F_t)^2 (default) or ``"paper"`` F_t'F_t.
      noise_ar: AR(1) coefficient of each unit's noise over time, in (-1, 1)
        (0: independent, the paper's); the noise stays stationary with SD
        ``noise_sd``. For checking inference under serial correlation.
      noise_unit_spread: heteroskedastic units: unit i's noise SD is
        ``noise_sd * exp(noise_unit_spread * s_i)`` with s_i standard normal
        (0: homoskedastic, the paper's).
    """

    n_units: int
    n_periods: int
    n_covariates: int = 3
    rank: int = 3
    design: str = "four_block"
    n_control: int | None = None
    t_pre: int | None = None
    n_groups: int = 5
    factor: str = "linear"
    covariate: str = "tanh"
    noise_sd: float = 0.5
    tau_mean: float = 12.0
    tau_sd: float = 5.0
    fixed_tau: bool = False
    tau_seed: int = 42
    polynomial_quadratic: str = "code"
    noise_ar: float = 0.0
    noise_unit_spread: float = 0.0

    def __post_init__(self):
        n, t = self.n_units, self.n_periods
        if n < 2 or t < 2:
            raise ValueError(f"DGPConfig needs n_units >= 2 and n_periods >= 2, got N={n}, T={t}")
        if self.n_covariates < 0:
            raise ValueError(f"DGPConfig.n_covariates must be >= 0, got {self.n_covariates}")
        if self.rank < 1:
            raise ValueError(f"DGPConfig.rank must be >= 1, got {self.rank}")
        for name, allowed in (
            ("design", DESIGNS),
            ("factor", FACTORS),
            ("covariate", COVARIATES),
            ("polynomial_quadratic", QUADRATICS),
        ):
            checks.one_of(self, name, allowed)
        if self.covariate != "none" and self.n_covariates < 1:
            raise ValueError(f"covariate={self.covariate!r} needs n_covariates >= 1")
        if not self.noise_sd >= 0 or not self.tau_sd >= 0:
            raise ValueError(f"noise_sd and tau_sd must be >= 0, got {self.noise_sd}, {self.tau_sd}")
        if not -1 < self.noise_ar < 1:
            raise ValueError(f"DGPConfig.noise_ar must lie in (-1, 1), got {self.noise_ar}")
        if not self.noise_unit_spread >= 0:
            raise ValueError(f"DGPConfig.noise_unit_spread must be >= 0, got {self.noise_unit_spread}")
        if self.design == "four_block":
            if not 1 <= self.n1 < n:
                raise ValueError(f"n_control (N1) must be in [1, N-1] = [1, {n - 1}], got {self.n1}")
            if not 1 <= self.t1 < t:
                raise ValueError(f"t_pre (T1) must be in [1, T-1] = [1, {t - 1}], got {self.t1}")
        else:
            r = self.n_groups
            if self.n_control is not None or self.t_pre is not None:
                raise ValueError("n_control and t_pre are set by n_groups in a staggered design; leave them None")
            if r < 2:
                raise ValueError(f"a staggered design needs n_groups >= 2, got {r}")
            if n % r or t % r:
                raise ValueError(f"a staggered design needs N and T divisible by n_groups={r}, got N={n}, T={t}")

    @property
    def n1(self) -> int:
        """Never-treated units (the first ``n1`` units)."""
        if self.design == "staggered":
            return self.n_units // self.n_groups
        return self.n_units // 2 if self.n_control is None else self.n_control

    @property
    def t1(self) -> int:
        """Periods before the first adoption."""
        if self.design == "staggered":
            return self.n_periods // self.n_groups
        return self.n_periods // 2 if self.t_pre is None else self.t_pre


@struct.dataclass
class Truth:
    """What the estimators do not see.

    Attributes:
      y0: (N, T) noisy untreated potential outcomes Y(0) (the paper's target).
      signal: (N, T) noiseless untreated mean phi_i(F_t) + g_t(X_i).
      tau: (N,) unit effects; drawn for every unit, they enter Y only on
        treated cells.
      factor_effect: (N, T) phi_i(F_t).
      covariate_effect: (N, T) g_t(X_i).
    """

    y0: jax.Array
    signal: jax.Array
    tau: jax.Array
    factor_effect: jax.Array
    covariate_effect: jax.Array


def adoption_start(config: DGPConfig) -> np.ndarray:
    """(N,) first treated period of each unit; T for never-treated units (host numpy)."""
    n, t = config.n_units, config.n_periods
    if config.design == "four_block":
        return np.where(np.arange(n) < config.n1, t, config.t1)
    r = config.n_groups
    groups = np.repeat(np.arange(r), n // r)
    return t - groups * (t // r)


def treatment(config: DGPConfig) -> np.ndarray:
    """(N, T) bool treatment matrix of the design (host numpy, static)."""
    start = adoption_start(config)
    return np.arange(config.n_periods)[None, :] >= start[:, None]


def primitive_shapes(config: DGPConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the standard-normal draws of one replication (static).

    The draws shared by every generator (noise, tau, X, F, Lambda) come first;
    then the factor generator's coefficients, then the covariate generator's.
    """
    n, t, p, k = config.n_units, config.n_periods, config.n_covariates, config.rank
    shapes = {"noise_z": (n, t), "tau_z": (n,), "x": (n, p), "f": (t, k), "lam": (n, k)}
    if config.factor == "relu_mlp":
        h = FACTOR_MLP_WIDTH
        shapes.update(a1=(n, h, k), a1b=(n, h), a2=(n, h), a2b=(n,))
    else:
        shapes["c1"] = (n,)
        if config.factor == "polynomial":
            shapes["c2"] = (n,)
    cov = config.covariate
    if cov == "matrix_linear":
        shapes["u"] = (p, t)
    elif cov == "vector_linear":
        shapes["u"] = (p,)
    elif cov in ("tanh", "poly", "log"):
        shapes.update(v=(t, p), vb=(t,))
    elif cov == "relu":
        h = COVARIATE_MLP_WIDTH
        shapes.update(r1=(t, p, h), r1b=(t, h), r2=(t, h), r2b=(t,))
    if config.noise_unit_spread > 0:  # last, so that the other draws do not move
        shapes["noise_scale_z"] = (n,)
    return shapes


def draw_primitives(key: jax.Array, config: DGPConfig) -> dict[str, jax.Array]:
    """Draws every random ingredient of one replication, all standard normal.

    Scales and shifts are applied later by :func:`outcomes`, so an independent
    implementation can reproduce a replication from these arrays. Everything
    is sliced from one flat normal draw: each ``jax.random`` call compiles to
    its own unrolled hash, and one call keeps the compile time low.

    Args:
      key: PRNG key of the replication.
      config: the DGP.

    Returns:
      Dict with ``x`` (N, P), ``f`` (T, K), ``lam`` (N, K), ``tau_z`` (N,),
      ``noise_z`` (N, T) and the generator coefficients: ``c1`` (N,) and, for
      the polynomial factor, ``c2`` (N,); for ``relu_mlp`` ``a1`` (N, 10, K),
      ``a1b`` (N, 10), ``a2`` (N, 10), ``a2b`` (N,); for the covariate
      generators ``u`` (P, T) (matrix), ``u`` (P,) (vector), ``v`` (T, P) and
      ``vb`` (T,) (tanh/poly/log), ``r1`` (T, P, 32), ``r1b`` (T, 32), ``r2``
      (T, 32), ``r2b`` (T,) (relu). With ``fixed_tau``, ``tau_z`` comes from
      the key ``tau_seed`` instead.
    """
    shapes = primitive_shapes(config)
    sizes = [int(np.prod(s)) for s in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    offsets = np.cumsum([0, *sizes])
    prims = {
        name: flat[offsets[j] : offsets[j + 1]].reshape(shape) for j, (name, shape) in enumerate(shapes.items())
    }
    if config.fixed_tau:
        prims["tau_z"] = jax.random.normal(jax.random.PRNGKey(config.tau_seed), (config.n_units,), jnp.float32)
    return prims


def factor_effect(prims: dict[str, jax.Array], config: DGPConfig) -> jax.Array:
    """(N, T) phi_i(F_t) from the primitives (paper Table 1, code variants).

    linear 0.5 C_i s_it; sine 2 C_i sin(s_it); polynomial
    0.2 C1_i s_it + 0.2 C2_i q_it with q = s^2 (code) or F_t'F_t (paper);
    relu_mlp 0.5 A2_i' relu(0.5 A1_i F_t + 0.5 a1_i) + 0.5 a2_i; where
    s_it = Lambda_i'F_t and all coefficients are the standard-normal draws.
    """
    lam, f = prims["lam"], prims["f"]
    if config.factor == "relu_mlp":
        c = FACTOR_MLP_SCALE
        pre = c * jnp.einsum("nhk,tk->nth", prims["a1"], f, precision=_HI) + c * prims["a1b"][:, None, :]
        return c * jnp.einsum("nth,nh->nt", jax.nn.relu(pre), prims["a2"], precision=_HI) + c * prims["a2b"][:, None]
    s = jnp.matmul(lam, f.T, precision=_HI)
    c1 = prims["c1"][:, None]
    if config.factor == "linear":
        return LINEAR_SCALE * c1 * s
    if config.factor == "sine":
        return SINE_SCALE * c1 * jnp.sin(s)
    quad = s**2 if config.polynomial_quadratic == "code" else jnp.sum(f**2, axis=1)[None, :]
    return POLY_SCALE * c1 * s + POLY_SCALE * prims["c2"][:, None] * quad


def covariate_effect(prims: dict[str, jax.Array], config: DGPConfig) -> jax.Array:
    """(N, T) g_t(X_i) from the primitives (paper Table 1).

    matrix_linear X (U + 1); vector_linear X (u + 1) for every t; with
    z_it = X_i'v_t: tanh sqrt(tanh|z_it|) + b_t, poly sqrt|z_it| + b_t,
    log log|z_it + b_t|; relu relu(X_i R1_t sqrt(2/P) + r1_t) R2_t sqrt(2/32) + r2_t.
    """
    x = prims["x"]
    n, t = config.n_units, config.n_periods
    cov = config.covariate
    if cov == "none":
        return jnp.zeros((n, t), jnp.float32)
    if cov == "matrix_linear":
        return jnp.matmul(x, prims["u"] + 1.0, precision=_HI)
    if cov == "vector_linear":
        return jnp.broadcast_to(jnp.matmul(x, prims["u"] + 1.0, precision=_HI)[:, None], (n, t))
    if cov == "relu":
        p, h = config.n_covariates, COVARIATE_MLP_WIDTH
        pre = jnp.einsum("np,tph->tnh", x, prims["r1"], precision=_HI) * np.sqrt(2.0 / p) + prims["r1b"][:, None, :]
        out = jnp.einsum("tnh,th->nt", jax.nn.relu(pre), prims["r2"], precision=_HI) * np.sqrt(2.0 / h)
        return out + prims["r2b"][None, :]
    z = jnp.matmul(x, prims["v"].T, precision=_HI)
    b = prims["vb"][None, :]
    if cov == "tanh":
        return jnp.sqrt(jnp.tanh(jnp.abs(z))) + b
    if cov == "poly":
        return jnp.sqrt(jnp.abs(z)) + b
    return jnp.log(jnp.abs(z + b))


def noise(prims: dict[str, jax.Array], config: DGPConfig) -> jax.Array:
    """(N, T) idiosyncratic noise: i.i.d. N(0, noise_sd^2) by default; AR(1) over time and
    unit-specific scales with ``noise_ar`` and ``noise_unit_spread``."""
    z = prims["noise_z"]
    rho = config.noise_ar
    if rho:
        # e_0 = z_0, e_t = rho e_{t-1} + sqrt(1 - rho^2) z_t: stationary, unit variance.
        t = z.shape[1]
        lag = np.arange(t)[:, None] - np.arange(t)[None, :]
        weights = np.where(lag >= 0, rho ** np.maximum(lag, 0), 0.0) * np.sqrt(1 - rho**2)
        weights[:, 0] = np.where(lag[:, 0] >= 0, rho ** lag[:, 0], 0.0)
        z = jnp.matmul(z, jnp.asarray(weights.T, z.dtype), precision=_HI)
    scale = config.noise_sd
    if config.noise_unit_spread > 0:
        scale = scale * jnp.exp(config.noise_unit_spread * prims["noise_scale_z"])[:, None]
    return scale * z


def outcomes(prims: dict[str, jax.Array], config: DGPConfig) -> tuple[Panel, Truth]:
    """Maps one replication's primitives to the observed panel and the truth."""
    phi = factor_effect(prims, config)
    g = covariate_effect(prims, config)
    signal = phi + g
    y0 = signal + noise(prims, config)
    tau = config.tau_mean + config.tau_sd * prims["tau_z"]
    w = jnp.asarray(treatment(config))
    y = y0 + tau[:, None] * w
    panel = Panel(y=y, w=w, x=prims["x"], observed=jnp.ones_like(w))
    truth = Truth(y0=y0, signal=signal, tau=tau, factor_effect=phi, covariate_effect=g)
    return panel, truth


@functools.partial(jax.jit, static_argnames="config")
def simulate(key: jax.Array, config: DGPConfig) -> tuple[Panel, Truth]:
    """Simulates one replication: ``Y = phi_i(F_t) + g_t(X_i) + tau_i W_it + eps_it``.

    Pure and jit-compiled with the config static; ``jax.vmap(simulate,
    in_axes=(0, None))`` draws a batch of replications. X, F, Lambda, the
    generator coefficients and the noise are redrawn for every key; tau too
    unless ``config.fixed_tau``.

    Args:
      key: PRNG key of the replication.
      config: the DGP (static).

    Returns:
      ``(panel, truth)``: a fully observed :class:`Panel` (y (N, T) float32, w
      (N, T) bool, x (N, P)) and the :class:`Truth`.
    """
    return outcomes(draw_primitives(key, config), config)


_PRESETS = {
    1: dict(n_units=100, n_periods=200, n_control=50, t_pre=100, n_covariates=3, rank=4, fixed_tau=True),
    2: dict(n_units=200, n_periods=120, n_control=100, t_pre=60, n_covariates=5, rank=3, fixed_tau=True),
    3: dict(n_units=100, n_periods=120, n_covariates=3, rank=4, design="staggered", n_groups=5, covariate="none"),
    4: dict(n_units=200, n_periods=120, n_covariates=3, rank=3, design="staggered", n_groups=5, covariate="none"),
}


def config_preset(k: int, **overrides) -> DGPConfig:
    """The paper's simulation Config k (1-4), with optional field overrides.

    * 1: four-block, (N, T, N1, T1, P, K) = (100, 200, 50, 100, 3, 4).
    * 2: four-block, (N, T, N1, T1, P, K) = (200, 120, 100, 60, 5, 3).
    * 3: staggered, (N, T, K) = (100, 120, 4), r = ``n_groups`` = 5 (or 10);
      ``n_periods=200`` gives the reference code's T.
    * 4: staggered, (N, T, K) = (200, 120, 3), r = 5 (or 10).

    Configs 1-2 default to the four-block script's settings (tanh covariates,
    one fixed tau vector); Configs 3-4 to the staggered script's (P = 3 drawn
    but without effect, ``covariate="none"``, tau redrawn). Choose the
    generators with ``factor=...`` and ``covariate=...``.

    Raises:
      ValueError: for an unknown k or invalid overrides.
    """
    if k not in _PRESETS:
        raise ValueError(f"config preset must be one of {sorted(_PRESETS)}, got {k!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(DGPConfig)}
    if unknown:
        raise ValueError(f"unknown DGPConfig fields {sorted(unknown)}")
    return DGPConfig(**{**_PRESETS[k], **overrides})
