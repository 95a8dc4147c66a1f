"""The row-scaled spectral estimator (Mehrotra, Tran, Vu, Zampetakis 2026, Algorithm 1).

For any binary assignment (staggered, four-block, i.i.d. Bernoulli per cell,
...) and each arm a in {0, 1}:

1. row propensity ``p_i(a)`` = share of unit i's periods that are observed in
   arm a (the paper's empirical row frequency);
2. row-scaled matrix ``Y~(a) = 1{observed, D = a} * Y / p_i(a)`` (an unbiased
   estimate of the arm's mean matrix ``A(a)`` when the propensity is constant
   within a row);
3. best rank-``r_a`` approximation ``A_hat(a)`` of ``Y~(a)`` (truncated SVD);
4. effect matrix ``M_hat = A_hat(1) - A_hat(0)`` and per-unit average effects
   ``tau_hat_i = mean_t M_hat[i, t]``.

The guarantee of the paper is on whole rows of the effect matrix,
``max_i ||M_hat_i - M_i||_2 / sqrt(T) = O~(sqrt(1/N + N/T^2))``. For the row
average alone the per-unit difference in means already attains ``O(1/sqrt(T))``
(see :func:`difference_in_means`); the ``"stacked"`` unit-effect option
projects it on the estimated unit factor space and is several times more
accurate at the same rate.

Truncation is done by masking singular values: the SVD is computed with static
shapes and components beyond the (possibly data-driven, traced) rank are
multiplied by zero, so the data-driven rank rules run under ``jit`` and ``vmap``.

Rank choice. Over-specifying the rank is the dangerous direction: each extra
component is fitted to noise and tends to be localized on a few rows, where it
inflates the row-wise error (the paper's metric) far more than the average
error. Under-specifying biases every row by the dropped signal. Use the true
rank when known, otherwise ``rank_rule="gap"`` or ``"threshold"`` and check the
chosen ranks (``SpectralResult.rank0/rank1``) and singular values.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .. import checks, linalg
from ..contract import Method, MethodConfig
from ..driver import estimate
from ..panel import Panel, _describe
from ..result import Status, finalize

RANK_RULES = ("fixed", "gap", "threshold")
PROPENSITIES = ("row", "svd")
UNIT_EFFECTS = ("row_mean", "stacked")
SVDS = ("exact", "randomized")


@dataclasses.dataclass(frozen=True)
class SpectralConfig(MethodConfig):
    """Static settings of the row-scaled spectral estimator (defaults: the paper's Algorithm 1).

    Attributes:
      rank: ``(rank0, rank1)``, the ranks of the control-arm and treated-arm
        mean matrices A(0) and A(1) (``rank_rule="fixed"``); one integer sets
        both. Default (3, 4), the ranks in the reference simulation design.
      rank_rule: ``"fixed"`` (use ``rank``), ``"gap"`` (largest ratio
        s_k / s_{k+1} among the top ``k_max`` singular values) or
        ``"threshold"`` (count singular values above ``threshold_scale`` times
        a bound on the noise operator norm, the largest row norm plus the
        largest column norm of the residual after k_max components, which is
        about ``sigma (sqrt(N) + sqrt(T))`` for i.i.d. noise; at least 1, at
        most k_max).
      k_max: largest rank the data-driven rules may choose (static).
      threshold_scale: factor on the noise-norm bound of the threshold rule
        (largest residual row norm + largest residual column norm). 1.3 is
        calibrated on the reference design: it separates signal from noise
        there from N = T = 200 on; in smaller panels the weakest components
        sit near the noise edge and the rule is unreliable.
      propensity: ``"row"`` (the paper: one empirical propensity per unit and
        arm) or ``"svd"`` (entry-wise propensities from a rank-
        ``propensity_rank`` SVD of each arm's indicator matrix, clipped to
        ``[propensity_clip, 1]``; removes the bias of structured within-row
        non-uniformity, outside the paper's theory).
      propensity_rank: rank of the propensity SVD (``propensity="svd"``).
      propensity_clip: lower clip of the SVD propensities.
      unit_effect: ``"row_mean"`` (the paper: row means of M_hat) or
        ``"stacked"`` (the per-unit scaled difference in means projected on the
        top-``stack_rank`` left singular space of [Y~(1), Y~(0)]).
      stack_rank: rank of that projection (default ``max(rank0, rank1)``, or
        the data-driven rule applied to the stacked matrix).
      svd: ``"exact"`` (thin SVD, default) or ``"randomized"`` (Gaussian sketch
        with ``oversample`` extra columns and ``power_iters`` power iterations;
        uses the key).
      oversample: extra sketch columns of the randomized SVD.
      power_iters: power iterations of the randomized SVD.
      min_periods: fewest observed periods a unit needs in each arm. ``check``
        rejects panels with a unit below it unless ``allow_insufficient``.
      allow_insufficient: if True, such units are kept (they still inform the
        arm they have data in), their effect rows are NaN, ``unit_ok`` marks
        them and ``status`` is ``INSUFFICIENT_DATA``. Useful for staggered
        panels with never-treated units.
    """

    rank: int | tuple[int, int] = (3, 4)
    rank_rule: str = "fixed"
    k_max: int = 10
    threshold_scale: float = 1.3
    propensity: str = "row"
    propensity_rank: int = 4
    propensity_clip: float = 0.05
    unit_effect: str = "row_mean"
    stack_rank: int | None = None
    svd: str = "exact"
    oversample: int = 10
    power_iters: int = 2
    min_periods: int = 2
    allow_insufficient: bool = False

    def __post_init__(self):
        rank = tuple(self.rank) if isinstance(self.rank, (tuple, list)) else (self.rank, self.rank)
        if len(rank) != 2:
            raise ValueError(f"SpectralConfig.rank must be an integer or a (rank0, rank1) pair, got {self.rank!r}")
        object.__setattr__(self, "rank", rank)
        for name, allowed in (
            ("rank_rule", RANK_RULES),
            ("propensity", PROPENSITIES),
            ("unit_effect", UNIT_EFFECTS),
            ("svd", SVDS),
        ):
            checks.one_of(self, name, allowed)
        checks.at_least_one(self, "rank0", "rank1", "k_max", "propensity_rank", "min_periods")
        if self.stack_rank is not None and self.stack_rank < 1:
            raise ValueError(f"SpectralConfig.stack_rank must be >= 1 or None, got {self.stack_rank}")
        for name in ("oversample", "power_iters"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"SpectralConfig.{name} must be >= 0, got {getattr(self, name)}")
        checks.positive(self, "threshold_scale")
        if not 0 < self.propensity_clip < 1:
            raise ValueError(f"SpectralConfig.propensity_clip must be in (0, 1), got {self.propensity_clip}")

    @property
    def rank0(self) -> int:
        """Rank of the control-arm mean matrix A(0)."""
        return self.rank[0]

    @property
    def rank1(self) -> int:
        """Rank of the treated-arm mean matrix A(1)."""
        return self.rank[1]

    def needed_components(self, fixed_rank: int) -> int:
        """How many leading singular triplets a truncation needs (static)."""
        return fixed_rank if self.rank_rule == "fixed" else self.k_max + 1

    def check(self, panel: Panel) -> None:
        """Panel-dependent checks, on the host before tracing.

        Raises:
          ValueError: if a rank (or k_max + 1) exceeds min(N, T), or a unit has
            fewer than ``min_periods`` observed periods in an arm (naming the
            units) and ``allow_insufficient`` is False.
        """
        n, t = panel.shape
        cap = min(n, t)
        ranks = {"rank0": self.rank0, "rank1": self.rank1} if self.rank_rule == "fixed" else {"k_max + 1": self.k_max + 1}
        if self.stack_rank is not None:
            ranks["stack_rank"] = self.stack_rank
        if self.propensity == "svd":
            ranks["propensity_rank"] = self.propensity_rank
        for name, r in ranks.items():
            if r > cap:
                raise ValueError(f"SpectralConfig {name}={r} exceeds min(N, T)={cap} for a {n}x{t} panel")
        if self.allow_insufficient:
            return
        w = np.asarray(panel.w)
        obs = np.asarray(panel.observed)
        for arm, name in ((1, "treated"), (0, "control")):
            counts = np.sum(obs & (w == bool(arm)), axis=1)
            short = np.nonzero(counts < self.min_periods)[0]
            if short.size:
                raise ValueError(
                    f"the spectral estimator needs at least min_periods={self.min_periods} observed "
                    f"{name} periods per unit; units {_describe(short, panel.units)} have "
                    f"{sorted(set(counts[short].tolist()))[:5]}. Drop them, lower min_periods, or set "
                    "allow_insufficient=True to get NaN effects for them"
                )


@struct.dataclass
class SpectralResult:
    """What :func:`fit` returns: the common ``Result`` fields plus the spectral ones.

    Attributes:
      y0_hat: (N, T) observed y on observed untreated cells, A_hat(0) elsewhere.
      unit_att: (N,) mean of ``y - y0_hat`` over each unit's observed treated
        cells (NaN for units without any, or flagged in ``unit_ok``).
      att: () the same over all treated cells of the ``unit_ok`` units.
      status: () int32 ``Status``: OK, INSUFFICIENT_DATA (some unit short of
        ``min_periods`` in an arm; its rows are NaN) or NONFINITE.
      info: diagnostics: ``propensity1``/``propensity0`` ((N,) or (N, T)),
        ``unit_dm`` (N,) per-unit scaled difference in means, ``stack_rank``
        when ``unit_effect="stacked"``.
      effects: (N, T) M_hat = A_hat(1) - A_hat(0) on every cell.
      unit_effect: (N,) per-unit average effect over all T periods.
      a1_hat: (N, T) rank-``rank1`` estimate of A(1).
      a0_hat: (N, T) rank-``rank0`` estimate of A(0).
      rank1: () int32 rank used for A(1).
      rank0: () int32 rank used for A(0).
      sv1: (K,) leading singular values of Y~(1) (all min(N, T) with the exact
        SVD, the needed ones with the randomized SVD).
      sv0: (K,) the same for Y~(0).
      unit_ok: (N,) bool, units with at least ``min_periods`` in both arms.
      y0_fit: (N, T) ``y0_hat`` with A_hat(0) on the treated units' observed
        untreated cells too (their pre-treatment fit).
    """

    y0_hat: jax.Array
    unit_att: jax.Array
    att: jax.Array
    status: jax.Array
    info: dict
    effects: jax.Array
    unit_effect: jax.Array
    a1_hat: jax.Array
    a0_hat: jax.Array
    rank1: jax.Array
    rank0: jax.Array
    sv1: jax.Array
    sv0: jax.Array
    unit_ok: jax.Array
    y0_fit: jax.Array | None = None


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """float32 matmul at full precision (GPUs would otherwise use TF32, ~1e-3 relative error)."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def randomized_svd(key: jax.Array, a: jax.Array, k: int, oversample: int = 10, power_iters: int = 2):
    """Approximate top-k SVD by a Gaussian sketch (Halko, Martinsson, Tropp).

    Costs O(N T l (2 q + 2)) with l = k + oversample and q power iterations,
    against O(N T min(N, T)) for the exact thin SVD.

    Args:
      key: PRNG key of the sketch.
      a: (N, T) matrix.
      k: number of triplets wanted (static).
      oversample: extra sketch columns (static).
      power_iters: power iterations, each re-orthonormalised by QR (static).

    Returns:
      ``(u (N, l), s (l,), vt (l, T))`` with l = min(k + oversample, N, T);
      the first k triplets are the accurate ones.
    """
    n, t = a.shape
    width = min(k + oversample, n, t)
    omega = jax.random.normal(key, (t, width), a.dtype)
    q = linalg.qr_q(_mm(a, omega))

    def power(_, q):
        z = linalg.qr_q(_mm(a.T, q))
        q = linalg.qr_q(_mm(a, z))
        return q

    q = jax.lax.fori_loop(0, power_iters, power, q)
    ub, s, vt = linalg.svd(_mm(q.T, a))  # small (l, T) problem
    return _mm(q, ub), s, vt


def _svd(key: jax.Array, a: jax.Array, k: int, config: SpectralConfig):
    """Leading singular triplets: all of them (exact) or about k (randomized)."""
    if config.svd == "exact":
        return linalg.svd(a)
    return randomized_svd(key, a, k, config.oversample, config.power_iters)


def choose_rank(u: jax.Array, s: jax.Array, vt: jax.Array, a: jax.Array, fixed_rank: int, config: SpectralConfig):
    """The rank to keep, as a traced int32.

    The threshold rule bounds the operator norm of the (heteroscedastic)
    noise by the largest row norm plus the largest column norm of the
    residual after the top ``k_max`` components; for i.i.d. noise this is
    about ``sigma (sqrt(N) + sqrt(T))``, the edge of the noise spectrum.

    Args:
      u: (N, K) left singular vectors, K >= the needed components.
      s: (K,) singular values, descending.
      vt: (K, T) right singular vectors.
      a: (N, T) the matrix itself (for the residual noise level).
      fixed_rank: the rank for ``rank_rule="fixed"``.
      config: the rule and its settings.

    Returns:
      () int32 rank in [1, k_max] (or ``fixed_rank``).
    """
    if config.rank_rule == "fixed":
        return jnp.int32(fixed_rank)
    k = config.k_max
    top = s[: k + 1]
    if config.rank_rule == "gap":
        ratio = top[:k] / jnp.maximum(top[1:], jnp.finfo(s.dtype).tiny)
        return (jnp.argmax(ratio) + 1).astype(jnp.int32)
    resid = a - _mm(u[:, :k] * top[:k], vt[:k])
    sq = resid * resid
    noise_norm = jnp.sqrt(jnp.max(jnp.sum(sq, axis=1))) + jnp.sqrt(jnp.max(jnp.sum(sq, axis=0)))
    cut = config.threshold_scale * noise_norm
    return jnp.clip(jnp.sum(top[:k] > cut), 1, k).astype(jnp.int32)


def low_rank(key: jax.Array, a: jax.Array, fixed_rank: int, config: SpectralConfig):
    """Best rank-r approximation of ``a`` by masking singular values.

    Args:
      key: PRNG key (randomized SVD only).
      a: (N, T) matrix.
      fixed_rank: the rank for ``rank_rule="fixed"``.
      config: rank rule and SVD settings.

    Returns:
      ``(approx (N, T), rank (), s (K,), u (N, K'))``: the approximation, the
      rank used, the leading singular values and left singular vectors.
    """
    need = config.needed_components(fixed_rank)
    u, s, vt = _svd(key, a, need, config)
    rank = choose_rank(u, s, vt, a, fixed_rank, config)
    cap = fixed_rank if config.rank_rule == "fixed" else config.k_max  # static slice width
    kept = jnp.where(jnp.arange(cap) < rank, s[:cap], 0.0)
    approx = _mm(u[:, :cap] * kept, vt[:cap])
    return approx, rank, (s if config.svd == "exact" else s[:need]), u[:, :cap]


def row_propensities(panel: Panel) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Observed-cell counts per unit and arm, and the paper's row propensities.

    ``p_i(a) = #{t: observed, D_it = a} / T``: the share of all T periods in
    which unit i is seen in arm a, so that ``1{observed, D = a} Y / p_i(a)`` is
    unbiased for A(a) when observation and assignment are row-homogeneous
    (with no missing cells it is the paper's empirical frequency). Counts are
    floored at 1 so that short units stay finite (they are flagged elsewhere).

    Returns:
      ``(n1, n0, p1, p0)``, each (N,).
    """
    t = panel.y.shape[-1]
    n1 = jnp.sum(panel.observed & panel.w, axis=1)
    n0 = jnp.sum(panel.observed & ~panel.w, axis=1)
    p1 = jnp.maximum(n1, 1).astype(jnp.float32) / t
    p0 = jnp.maximum(n0, 1).astype(jnp.float32) / t
    return n1, n0, p1, p0


def svd_propensities(key: jax.Array, panel: Panel, config: SpectralConfig) -> tuple[jax.Array, jax.Array]:
    """Entry-wise propensities: clipped rank-k SVD of each arm's indicator matrix.

    Returns:
      ``(p1, p0)``, each (N, T) in ``[propensity_clip, 1]``.
    """
    k1, k0 = jax.random.split(key)
    rank_cfg = dataclasses.replace(config, rank_rule="fixed")
    out = []
    for k, ind in ((k1, panel.observed & panel.w), (k0, panel.observed & ~panel.w)):
        approx, _, _, _ = low_rank(k, ind.astype(jnp.float32), config.propensity_rank, rank_cfg)
        out.append(jnp.clip(approx, config.propensity_clip, 1.0))
    return out[0], out[1]


def difference_in_means(panel: Panel) -> jax.Array:
    """(N,) per-unit mean of observed treated minus observed control outcomes (NaN if an arm is empty)."""
    n1 = jnp.sum(panel.observed & panel.w, axis=1)
    n0 = jnp.sum(panel.observed & ~panel.w, axis=1)
    s1 = jnp.sum(jnp.where(panel.observed & panel.w, panel.y, 0.0), axis=1)
    s0 = jnp.sum(jnp.where(panel.observed & ~panel.w, panel.y, 0.0), axis=1)
    ok = (n1 > 0) & (n0 > 0)
    return jnp.where(ok, s1 / jnp.maximum(n1, 1) - s0 / jnp.maximum(n0, 1), jnp.nan)


def fit(key: jax.Array, panel: Panel, config: SpectralConfig = SpectralConfig()) -> SpectralResult:
    """The row-scaled spectral estimator; pure and traceable (``jit``, ``vmap``).

    Validate the panel on the host first (``config.check(panel)``;
    :func:`spectral` and ``codeal_jax.estimate`` do, and compile it). Covariates
    in the panel are ignored.

    Args:
      key: PRNG key, used only by the randomized SVD.
      panel: (N, T) panel with any binary assignment pattern.
      config: static settings.

    Returns:
      :class:`SpectralResult`.
    """
    k_prop, k1, k0, k_stack = jax.random.split(key, 4)
    n1, n0, p1, p0 = row_propensities(panel)
    unit_ok = (n1 >= config.min_periods) & (n0 >= config.min_periods)
    if config.propensity == "svd":
        p1, p0 = svd_propensities(k_prop, panel, config)
        scale1, scale0 = p1, p0
    else:
        scale1, scale0 = p1[:, None], p0[:, None]
    y1 = jnp.where(panel.observed & panel.w, panel.y, 0.0) / scale1
    y0 = jnp.where(panel.observed & ~panel.w, panel.y, 0.0) / scale0

    a1_hat, rank1, sv1, _ = low_rank(k1, y1, config.rank1, config)
    a0_hat, rank0, sv0, _ = low_rank(k0, y0, config.rank0, config)
    effects = a1_hat - a0_hat
    # With row propensities this is exactly the per-unit difference in means.
    unit_dm = jnp.mean(y1 - y0, axis=1)
    info = {"propensity1": p1, "propensity0": p0, "unit_dm": unit_dm}
    if config.unit_effect == "stacked":
        stack_fixed = config.stack_rank or max(config.rank0, config.rank1)
        stack_cfg = config if config.stack_rank is None else dataclasses.replace(config, rank_rule="fixed")
        _, stack_rank, _, u = low_rank(k_stack, jnp.concatenate([y1, y0], axis=1), stack_fixed, stack_cfg)
        u = u * (jnp.arange(u.shape[1]) < stack_rank)  # masked columns drop out of the projector
        unit_effect = _mm(u, _mm(u.T, unit_dm))
        info["stack_rank"] = stack_rank
    else:
        unit_effect = jnp.mean(effects, axis=1)

    status = jnp.where(jnp.all(unit_ok), Status.OK, Status.INSUFFICIENT_DATA).astype(jnp.int32)
    base = finalize(panel, a0_hat, 0.0, Status.OK, info)
    # Units short of data in an arm get NaN effects, and are left out of the ATT.
    treated = panel.observed & panel.w & unit_ok[:, None]
    diff = jnp.where(treated, panel.y - base.y0_hat, 0.0)
    n_treated = jnp.sum(treated)
    att = jnp.where(n_treated > 0, jnp.sum(diff) / jnp.maximum(n_treated, 1), jnp.nan)
    unit_att = jnp.where(unit_ok, base.unit_att, jnp.nan)
    finite = (base.status == Status.OK) & jnp.all(jnp.isfinite(effects))
    status = jnp.where(finite, status, jnp.int32(Status.NONFINITE))
    effects = jnp.where(finite & unit_ok[:, None], effects, jnp.nan)
    unit_effect = jnp.where(finite & unit_ok, unit_effect, jnp.nan)
    return SpectralResult(
        y0_hat=base.y0_hat,
        unit_att=unit_att,
        att=jnp.where(finite, att, jnp.nan),
        status=status,
        info=info,
        effects=effects,
        unit_effect=unit_effect,
        a1_hat=a1_hat,
        a0_hat=a0_hat,
        rank1=rank1,
        rank0=rank0,
        sv1=sv1,
        sv0=sv0,
        unit_ok=unit_ok,
        y0_fit=base.y0_fit,
    )


METHOD = Method(
    "spectral",
    SpectralConfig,
    fit=fit,
    summary="the row-scaled spectral estimator of the whole effect matrix (Mehrotra et al. 2026)",
)


def spectral(key: jax.Array, panel: Panel, config: SpectralConfig = SpectralConfig()) -> SpectralResult:
    """Validates on the host, then fits: ``codeal_jax.estimate(key, panel, config)``.

    Args:
      key: PRNG key, used only by the randomized SVD (ignored with the default exact SVD).
      panel: a :class:`Panel` (any binary assignment; covariates ignored).
      config: settings (default: the paper's Algorithm 1 with ranks 3 and 4).

    Returns:
      :class:`SpectralResult`.

    Raises:
      ValueError: see :meth:`SpectralConfig.check`.
    """
    if isinstance(key, Panel):
        raise TypeError("spectral(key, panel, config): the PRNG key comes first, as everywhere in codeal_jax")
    return estimate(key, panel, config)
