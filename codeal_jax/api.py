"""``estimate``: one host-side entry point that validates, then calls a pure ``fit``.

Each method lives in its own module exposing ``fit(key, panel, config) ->
Result`` (jit-compiled, vmappable) and a frozen config class. Modules are
imported lazily so that importing the package stays fast.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, NamedTuple

import jax

from .design import check_adoption
from .panel import Panel
from .result import Result


class MethodSpec(NamedTuple):
    module: str
    config: str
    adoption: bool  # needs an irreversible adoption design with never-treated units


METHODS: dict[str, MethodSpec] = {
    "codeal": MethodSpec("codeal_jax.codeal", "CodealConfig", True),
    "mc_nnm": MethodSpec("codeal_jax.baselines.mc_nnm", "MCNNMConfig", False),
    "did": MethodSpec("codeal_jax.baselines.did", "DiDConfig", False),
    "vert_reg": MethodSpec("codeal_jax.baselines.vert_reg", "VertRegConfig", True),
    "single_ae": MethodSpec("codeal_jax.baselines.single_ae", "SingleAEConfig", False),
    "aemc_ne": MethodSpec("codeal_jax.baselines.aemc_ne", "AEMCNEConfig", False),
    "spectral": MethodSpec("codeal_jax.spectral", "SpectralConfig", False),
}

COVARIATE_OPTIONS = ("dnn", "linear", None)


def method_module(method: str):
    """The module implementing ``method`` (raises ``ValueError`` for unknown names)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return importlib.import_module(METHODS[method].module)


def default_config(method: str) -> Any:
    """The default (paper) configuration of ``method``."""
    return getattr(method_module(method), METHODS[method].config)()


def resolve(panel: Panel, method: str = "codeal", covariates: str | None = "dnn", config: Any = None):
    """Validates the inputs and returns ``(fit, config)`` for ``fit(key, panel, config)``.

    This is the host-side half of :func:`estimate`; Monte Carlo runners call it
    once and then ``vmap`` the returned pure ``fit``.
    """
    if not isinstance(panel, Panel):
        raise TypeError(f"panel must be a codeal_jax.Panel (see Panel.from_arrays), got {type(panel).__name__}")
    module = method_module(method)
    spec = METHODS[method]
    cls = getattr(module, spec.config)
    config = cls() if config is None else config
    if not isinstance(config, cls):
        raise ValueError(f"method {method!r} takes a {cls.__name__}, got {type(config).__name__}")
    if covariates not in COVARIATE_OPTIONS:
        raise ValueError(f"covariates must be one of {COVARIATE_OPTIONS}, got {covariates!r}")
    if hasattr(config, "covariates"):
        cov = dataclasses.replace(config.covariates, method=covariates or "none")
        config = dataclasses.replace(config, covariates=cov)
    if spec.adoption:
        check_adoption(panel, method)
    if hasattr(config, "check"):
        config.check(panel)
    dispatch = getattr(module, "dispatch", None)  # methods whose programme depends on the design
    return dispatch(panel, config) if dispatch is not None else (module.fit, config)


def estimate(
    key: jax.Array,
    panel: Panel,
    method: str = "codeal",
    covariates: str | None = "dnn",
    config: Any = None,
) -> Result:
    """Estimates unit-level effects on the treated.

    Args:
      key: PRNG key (methods without randomness ignore it).
      panel: a validated :class:`Panel`.
      method: one of ``codeal``, ``mc_nnm``, ``did``, ``vert_reg``,
        ``single_ae``, ``aemc_ne``, ``spectral``.
      covariates: covariate removal before imputation: ``"dnn"`` (per-period
        ReLU networks), ``"linear"`` (per-period least squares) or ``None``.
        It sets ``config.covariates.method``; a panel without covariates skips
        the stage.
      config: the method's frozen config (default: the paper's settings).

    Returns:
      The method's :class:`Result` (``y0_hat``, ``unit_att``, ``att``,
      ``status``, ``info``).

    Raises:
      ValueError: for an unknown method or covariate option, a config of the
        wrong type, or a panel the method cannot handle (named units/periods).
    """
    fit, config = resolve(panel, method, covariates, config)
    return fit(key, panel.without_labels(), config)
