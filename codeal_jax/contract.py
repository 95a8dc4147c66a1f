"""The method contract: what a method supplies, and the config fields every imputation shares.

A method is a frozen config class plus an imputation of one (padded)
four-block subproblem of adjusted outcomes::

    impute(key, y_tilde, mask, config, blocks=None) -> (pred, status, info)

with ``y_tilde`` (R, C) the centred, covariate-adjusted outcomes (zero outside
``mask``), ``mask`` (R, C) the cells it may fit on, ``pred`` (R, C) its
imputation, ``status`` a () int32 :class:`~codeal_jax.result.Status` and
``info`` a dict of diagnostics whose shapes do not depend on (R, C). A method
that trains on more than the fit cells (``ImputationConfig.reads_sub_panel``)
also takes ``train_inputs=`` (R, C), and one that lists config fields in
``Method.traced`` takes ``hyper=`` (a dict of traced values of those fields). Optionally it overrides the whole-panel
fit (``whole``), or replaces the driver altogether (``fit``, for estimators
outside the imputation scheme such as the spectral one). Everything else,
host-side planning, the covariate stage, centring, staggered subproblems and
the ``Result``, is the driver's (:mod:`codeal_jax.driver`), so inference and
tuning, which refit a method many times, are written once for all methods.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, ClassVar

from . import checks
from .covariates import CENTERINGS, CovariateConfig

# What a staggered design is solved by: one fit per treated block (the paper) or one on all untreated cells.
STAGGERED = ("subproblems", "whole")

# impute(key, y_tilde (R, C), mask (R, C), config, blocks=None[, train_inputs=]) -> (pred, status, info)
ImputeFn = Callable[..., tuple]
# whole(key, panel, prepared, config) -> (pred (N, T), status, info)
WholeFn = Callable[..., tuple]


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method's config: a frozen, hashable dataclass, static under ``jit``.

    Attributes:
      RENAMED: class-level map of former field names to today's (see :func:`renamed`).
    """

    RENAMED: ClassVar[dict[str, str]] = {}

    def check(self, panel) -> None:
        """Panel-dependent validation on the host (e.g. a rank above min(N, T)); raises ``ValueError``."""
        del panel

    def traces(self, field: str) -> bool:
        """True if this config's method can take ``field`` traced (it is in ``Method.traced`` and this
        config's architecture allows it); a config overrides it to veto some architectures."""
        del field
        return True


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImputationConfig(MethodConfig):
    """The fields the driver reads, shared by every imputation method's config.

    Attributes:
      covariates: the covariate stage run before the imputation.
      centering: the constant removed first: ``"auto"`` (the reference code's
        choice: ``"blocks"`` for one fit of the panel, ``"controls"`` for a
        staggered design fitted per subproblem), ``"blocks"`` (mean of the
        control x pre, control x post and treated x pre block means),
        ``"controls"`` (never-treated units' mean) or ``"none"``.
      staggered: on a staggered adoption design, ``"subproblems"`` (one fit
        per treated block on its four-block subproblem, paper eq. 7) or
        ``"whole"`` (one fit on all untreated cells of the panel).
      max_groups: staggered designs fitted per subproblem: merge adoption
        dates into at most this many groups (never-treated included); None
        keeps every date. Each group adds subproblems, so this bounds the cost.
      max_buckets: at most this many padded subproblem shapes. Each compiles
        once; more shapes waste less padding. Results agree to rounding.
    """

    covariates: CovariateConfig = CovariateConfig()
    centering: str = "auto"
    staggered: str = "subproblems"
    max_groups: int | None = None
    max_buckets: int = 4

    def __post_init__(self):
        if not isinstance(self.covariates, CovariateConfig):
            raise ValueError(
                f"{type(self).__name__}.covariates must be a CovariateConfig, got {type(self.covariates).__name__}"
            )
        checks.one_of(self, "centering", ("auto", *CENTERINGS))
        checks.one_of(self, "staggered", STAGGERED)
        if self.max_groups is not None:
            checks.at_least(self, 2, "max_groups")
        checks.at_least_one(self, "max_buckets")

    @property
    def reads_sub_panel(self) -> bool:
        """True if training reads the sub-panel's outcomes beyond the fit cells (``train_inputs=``)."""
        return False


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its name, config class and the functions the driver calls.

    Attributes:
      name: the name of ``estimate(..., method=...)``, the CLI and study tables.
      config: its frozen config class (a :class:`MethodConfig`; an
        :class:`ImputationConfig` unless ``fit`` is given).
      impute: the imputation of one (padded) subproblem (module docstring).
      whole: optional ``(key, panel, prepared, config) -> (pred, status, info)``
        for one fit of the whole panel, where it differs from ``impute`` on
        all fit cells (identification checks, diagnostics sized by the panel).
      fit: optional ``(key, panel, config) -> Result`` replacing the driver
        (no covariate stage, no subproblems).
      plan: optional ``(panel, config) -> Plan`` replacing the driver's
        planning, for a method built from other methods' plans (the tuned
        method: :mod:`codeal_jax.tuning.tuned`); the plan it returns is
        called like any other.
      needs_adoption: the method needs an irreversible adoption design with
        never-treated units; others fit any other pattern in one piece.
      four_block_subproblem: fit a four-block panel as its one subproblem (a
        cheaper programme for this method) rather than in one piece.
      check_gaps: per-subproblem fits report ``INSUFFICIENT_DATA`` when a
        target cell is not identified inside its subproblem.
      paper: one of the paper's six simulation methods.
      traced: config fields ``impute`` (and ``whole``) also accept as traced
        values, ``hyper={field: value}``, so that fits differing only in them
        share one compiled programme (a grid search under ``vmap``). For an
        integer size such as ``rank`` the config's value is the upper bound.
      summary: one line for help texts.
    """

    name: str
    config: type
    impute: ImputeFn | None = None
    whole: WholeFn | None = None
    fit: Callable[..., Any] | None = None
    plan: Callable[..., Any] | None = None
    needs_adoption: bool = False
    four_block_subproblem: bool = False
    check_gaps: bool = False
    paper: bool = False
    traced: tuple[str, ...] = ()
    summary: str = ""

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ValueError(f"a method name must be an identifier, got {self.name!r}")
        if not (isinstance(self.config, type) and issubclass(self.config, MethodConfig)):
            raise ValueError(f"method {self.name!r}: config must be a MethodConfig subclass, got {self.config!r}")
        if not dataclasses.is_dataclass(self.config) or not self.config.__dataclass_params__.frozen:
            raise ValueError(f"method {self.name!r}: {self.config.__name__} must be a frozen dataclass")
        if sum(f is not None for f in (self.impute, self.fit, self.plan)) != 1:
            raise ValueError(f"method {self.name!r} needs exactly one of impute (the contract), fit or plan")
        if self.impute is not None and not issubclass(self.config, ImputationConfig):
            raise ValueError(f"method {self.name!r}: an imputation method's config must be an ImputationConfig")
        unknown = set(self.traced) - {f.name for f in dataclasses.fields(self.config)}
        if unknown:
            raise ValueError(f"method {self.name!r}: traced names fields {self.config.__name__} lacks: {sorted(unknown)}")

    @property
    def has_rank(self) -> bool:
        """True if its config has a ``rank`` field (the paper hands it the true rank)."""
        return "rank" in {f.name for f in dataclasses.fields(self.config)}


def renamed(**old_to_new: str):
    """Class decorator: a config's renamed fields keep working under their old names, with a warning.

    ``Config(old=v)`` constructs ``Config(new=v)`` and ``config.old`` reads
    ``config.new``, each with a ``DeprecationWarning``. ``RENAMED`` on the
    class maps old to new names (the study records upgrade with it).
    """

    def wrap(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{cls.__name__} got both {new!r} and its deprecated name {old!r}")
                    _warn(cls, old, new)
                    kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        def alias(old, new):
            def read(self):
                _warn(cls, old, new)
                return getattr(self, new)

            return property(read, doc=f"Deprecated name of ``{new}``.")

        cls.__init__ = __init__
        for old, new in old_to_new.items():
            setattr(cls, old, alias(old, new))
        cls.RENAMED = dict(old_to_new)
        return cls

    return wrap


def _warn(cls, old: str, new: str) -> None:
    warnings.warn(f"{cls.__name__}.{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)
