"""The driver: plans a fit on the host, then runs one pure programme for any registered method.

``plan(panel, config)`` validates the panel for the method and decides
everything static: whether a staggered design is fitted subproblem by
subproblem (and which design), hence the padded shapes. The returned
:class:`Plan` is hashable and callable, ``plan(key, panel) -> Result``, pure
and ``jit``-compiled: it runs the covariate stage once on the full panel, the
one centring rule, the method's imputation (whole panel or every subproblem,
batched per padded shape) and builds the ``Result``. Panels that share the
treatment pattern's design share the plan, so ``jax.vmap(plan)`` fits Monte
Carlo replications, bootstrap draws or cross-validation folds in one programme.

:func:`estimate` is ``plan`` and call in one step.
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from . import memory, registry, staggered
from .contract import ImputationConfig, Method, MethodConfig
from .covariates import REMOVALS
from .covariates import prepare, resolve_centering
from .design import StaggeredDesign, adoption_problem, check_adoption, is_four_block, staggered_design
from .panel import Panel
from .result import Result, Status, finalize
from .runtime import gc_paused


class _Unset:
    def __repr__(self):
        return "<unset>"


UNSET = _Unset()  # "argument not given", distinct from None (which means "no covariate removal")

# estimate() sizes a fit before running it (Plan.checked) from this many panel cells on: the
# ahead-of-time compilation that sizes it is not cached across calls like a jitted call, and
# smaller fits (Config 2 has 24,000 cells; 250,000 is N = 2,000 units x T = 125) need far less
# than any machine has.
PLAN_MEMORY_CELLS = 250_000
MEMORY_SHARE = 0.9  # of the free memory a checked fit may take


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one config fits one treatment pattern, decided on the host: static and hashable.

    Make one with :func:`plan` (it validates); calling it fits:
    ``plan(key, panel) -> Result``, pure, ``jit``-compiled once per plan and
    panel shape, and ``vmap``-able over keys and panels whose treatment
    pattern has this plan's design.

    Attributes:
      config: the method's frozen config.
      design: the staggered design fitted one subproblem at a time (paper
        Algorithm 2; a four-block design has one), or None for one fit of
        every untreated cell of the panel.
    """

    config: MethodConfig
    design: StaggeredDesign | None = None

    @property
    def method(self) -> Method:
        return registry.method_of(self.config)

    @property
    def per_block(self) -> bool:
        """True for a staggered design (r > 2) fitted per subproblem."""
        return self.design is not None and self.design.r > 2

    @property
    def centering(self) -> str:
        """The centring rule in force (``config.centering`` with ``"auto"`` resolved)."""
        return resolve_centering(self.config.centering, self.per_block)

    @property
    def buckets(self) -> tuple[staggered.Bucket, ...]:
        """The padded subproblem shapes, each compiled once (empty for a whole-panel fit)."""
        if self.design is None:
            return ()
        return staggered.plan_buckets(self.design.subproblems(), self.config.max_buckets)

    def __call__(self, key: jax.Array, panel: Panel, hyper: dict | None = None) -> Result:
        with gc_paused():  # the first call traces (see runtime.gc_paused); later ones find it cached
            return run(key, panel.without_labels(), self, hyper)

    def lower(self, key: jax.Array, panel: Panel):
        """The fit of ``panel`` (without labels) lowered ahead of time (``jax.stages.Lowered``)."""
        with gc_paused():
            return run.lower(key, panel, self)

    def checked(self, key: jax.Array, panel: Panel, budget: int | None = None) -> Result:
        """Like calling the plan, after sizing the compiled fit against the free memory.

        The fit is compiled ahead of time (once: the compiled programme then
        runs), XLA's memory analysis says what it needs (arguments, outputs,
        temporaries), and a fit that would not fit is refused before anything
        is allocated, instead of crashing out of memory.

        Args:
          key: PRNG key.
          panel: the panel the plan was made for.
          budget: bytes the fit may use; default ``MEMORY_SHARE`` of the first
            device's free memory (the host's for a CPU). Not checked when
            neither XLA nor the device reports a figure.

        Raises:
          ValueError: the fit needs more than ``budget``; the message gives both.
        """
        bare = panel.without_labels()
        compiled = self.lower(key, bare).compile()
        need = memory.compiled_bytes(compiled)
        if budget is None:
            free = memory.available_bytes()
            budget = None if free is None else int(free * MEMORY_SHARE)
        if need is not None and budget is not None and need > budget:
            n, t = panel.shape
            raise ValueError(
                f"fitting {self.method.name} to this {n} x {t} panel needs about {memory.format_bytes(need)} "
                f"(XLA's memory analysis of the compiled fit) but {memory.format_bytes(budget)} is available; "
                "fit fewer units or periods at a time, use smaller networks, or a machine with more memory"
            )
        return compiled(key, bare)


def _hyper_kwargs(method: Method, config, hyper) -> dict:
    """``impute``'s ``hyper=`` keyword, after checking that the method takes these fields traced."""
    if not hyper:
        return {}
    if not set(hyper) <= set(method.traced):
        raise ValueError(
            f"method {method.name!r} takes {sorted(method.traced) or 'no fields'} traced, not {sorted(set(hyper) - set(method.traced))}"
        )
    return {"hyper": dict(hyper)}


@functools.partial(jax.jit, static_argnames="plan")
def run(key: jax.Array, panel: Panel, plan: Plan, hyper: dict | None = None) -> Result:
    """Fits ``plan.config``'s method to ``panel`` (pure; prefer calling the plan).

    The key splits into the covariate stage's and the imputation's. Every
    method draws its covariate stage from the first half, so in a study, where
    all methods get one key, XLA computes it once for all of them.

    Args:
      key: PRNG key.
      panel: (N, T) panel without labels, validated by :func:`plan`.
      plan: the static plan.
      hyper: optional traced values of config fields the method lists in
        ``Method.traced`` (e.g. ``{"rank": 2}`` with the plan's rank the
        upper bound): fits that differ only in them share this programme.

    Returns:
      The method's ``Result``: ``info`` holds the covariate stage's ``mu0``
      (and ``covariate_loss``) and the method's diagnostics, stacked in
      subproblem order (leading axis r(r-1)/2) for a per-subproblem fit.
    """
    method, config = plan.method, plan.config
    chex.assert_equal_shape([panel.y, panel.w, panel.observed])
    extra = _hyper_kwargs(method, config, hyper)
    if method.fit is not None:
        return method.fit(key, panel, config)
    k_cov, k_fit = jax.random.split(key)
    prep = prepare(k_cov, panel, config.covariates, plan.centering)
    if plan.design is None:
        if method.whole is not None:
            pred, status, info = method.whole(k_fit, panel, prep, config, **extra)
        else:
            pred, status, info = method.impute(k_fit, prep.y_tilde, prep.mask, config, **extra)
    else:
        inputs = staggered.sub_panel_inputs(panel, prep.offset, plan.design) if config.reads_sub_panel else None
        impute = functools.partial(method.impute, **extra) if extra else method.impute
        pred, status, info = staggered.solve(
            k_fit, panel.w, prep.y_tilde, prep.mask, plan.design, plan.buckets, impute, config, inputs
        )
        if method.check_gaps:
            gap = staggered.target_gaps(panel, plan.design)
            status = jnp.where(gap, jnp.int32(Status.INSUFFICIENT_DATA), status)
    return finalize(panel, pred, prep.offset, status, {**prep.info, **info})


def _design(panel: Panel, config: MethodConfig, method: Method) -> StaggeredDesign | None:
    """The design to fit per subproblem, or None to fit the panel in one piece."""
    if method.fit is not None or config.staggered == "whole":
        return None
    w = np.asarray(panel.w, bool)
    if adoption_problem(panel) is not None:  # not an adoption design: one fit of all untreated cells
        return None
    if is_four_block(w) and not method.four_block_subproblem:
        return None  # its one subproblem is the whole panel
    return staggered_design(w, config.max_groups)


def configure(config=None, *, method: str | None = None, covariates=UNSET) -> MethodConfig:
    """The config a call asks for: an explicit config as given, else a method's default.

    Args:
      config: a registered method's config, a method name, or None (CoDEAL).
      method: optional method name; with a config it must be that config's method.
      covariates: optional covariate removal, ``"dnn"``, ``"linear"`` or
        ``None``/``"none"``; it sets a default config's ``covariates.method``
        and must agree with an explicit config's.

    Returns:
      The config, never overridden: an explicit config comes back unchanged.

    Raises:
      ValueError: for an unknown method or covariate option, an unregistered
        config type, or an argument that conflicts with an explicit config.
    """
    if isinstance(config, str):
        if method is not None and method != config:
            raise ValueError(f"method={method!r} conflicts with the method name {config!r} given as config")
        config, method = None, config
    explicit = config is not None
    if explicit:
        own = registry.method_of(config).name
        if method is not None and method != own:
            raise ValueError(f"method={method!r} conflicts with config, a {type(config).__name__} ({own!r})")
    else:
        config = registry.get(method or "codeal").config()
    if covariates is UNSET:
        return config
    removal = "none" if covariates is None else covariates
    if removal not in REMOVALS:
        raise ValueError(f"covariates must be one of {REMOVALS} or None, got {covariates!r}")
    if not isinstance(config, ImputationConfig):
        if removal != "none":
            raise ValueError(f"{type(config).__name__} has no covariate stage; covariates={covariates!r} cannot apply")
        return config
    if config.covariates.method == removal:
        return config
    if explicit:
        raise ValueError(
            f"covariates={covariates!r} conflicts with the config's covariates.method="
            f"{config.covariates.method!r}; give the removal in one place"
        )
    return dataclasses.replace(config, covariates=dataclasses.replace(config.covariates, method=removal))


def plan(panel: Panel, config=None, *, method: str | None = None, covariates=UNSET) -> Plan:
    """Validates ``panel`` for a method and decides how it is fitted (host side).

    Args:
      panel: a :class:`Panel` (from ``Panel.from_arrays`` or ``panel_from_long``).
      config, method, covariates: as in :func:`configure`.

    Returns:
      The :class:`Plan`; ``plan(key, panel)`` fits.

    Raises:
      TypeError: if ``panel`` is not a ``Panel``.
      ValueError: for a config the call cannot mean (see :func:`configure`) or
        a panel the method cannot handle (naming the units or periods).
    """
    if not isinstance(panel, Panel):
        raise TypeError(f"panel must be a codeal_jax.Panel (see Panel.from_arrays), got {type(panel).__name__}")
    config = configure(config, method=method, covariates=covariates)
    spec = registry.method_of(config)
    if spec.plan is not None:
        return spec.plan(panel, config)
    if spec.needs_adoption:
        check_adoption(panel, spec.name)
    config.check(panel)
    return Plan(config, _design(panel, config, spec))


def estimate(key: jax.Array, panel: Panel, config=None, *, method: str | None = None, covariates=UNSET) -> Result:
    """Estimates unit-level effects on the treated: ``plan(panel, ...)(key, panel)``.

    Args:
      key: PRNG key (methods without randomness ignore it).
      panel: a validated :class:`Panel`.
      config: the method's frozen config (its type picks the method), a
        method name, or None for CoDEAL with the paper's settings.
      method: a method name (``codeal_jax.methods()``), for its default config.
      covariates: covariate removal for a default config: ``"dnn"`` (the
        default of every config), ``"linear"`` or None.

    Returns:
      The method's :class:`Result` (``y0_hat``, ``unit_att``, ``att``,
      ``status``, ``info``).

    Raises:
      ValueError: see :func:`plan`; and, for a panel of at least
        ``PLAN_MEMORY_CELLS`` cells, a fit that needs more memory than is free
        (:meth:`Plan.checked`: it is sized before it runs).
    """
    fit = plan(panel, config, method=method, covariates=covariates)
    if int(np.prod(panel.shape)) >= PLAN_MEMORY_CELLS:
        return fit.checked(key, panel)
    return fit(key, panel)


def default_config(method: str) -> MethodConfig:
    """The default (paper) configuration of ``method``."""
    return registry.get(method).config()
