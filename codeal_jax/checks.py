"""Host-side validation of config fields, shared by every method's config.

Each helper raises ``ValueError`` naming ``Class.field`` and the bad value.
"""

from __future__ import annotations



def _name(cfg, field: str) -> str:
    return f"{type(cfg).__name__}.{field}"


def at_least_one(cfg, *fields: str) -> None:
    """Integer fields that must be >= 1 (sizes, steps)."""
    for f in fields:
        if getattr(cfg, f) < 1:
            raise ValueError(f"{_name(cfg, f)} must be >= 1, got {getattr(cfg, f)}")


def positive(cfg, *fields: str) -> None:
    """Float fields that must be > 0 (learning rates, tolerances)."""
    for f in fields:
        if not getattr(cfg, f) > 0:
            raise ValueError(f"{_name(cfg, f)} must be > 0, got {getattr(cfg, f)}")


def widths(cfg, *fields: str) -> None:
    """Hidden-width tuples: every width >= 1; lists become tuples so the config stays hashable."""
    for f in fields:
        value = tuple(getattr(cfg, f))
        if any(int(h) < 1 for h in value):
            raise ValueError(f"{_name(cfg, f)} widths must be >= 1, got {value}")
        object.__setattr__(cfg, f, value)


def covariate_stage(cfg, centerings: tuple[str, ...] | None = None) -> None:
    """The ``covariates`` and ``centering`` fields every imputation method has."""
    from .covariates import CENTERINGS, CovariateConfig  # covariates.py itself uses this module

    if not isinstance(cfg.covariates, CovariateConfig):
        raise ValueError(f"{_name(cfg, 'covariates')} must be a CovariateConfig, got {type(cfg.covariates).__name__}")
    centerings = CENTERINGS if centerings is None else centerings
    if cfg.centering not in centerings:
        shown = "'auto' or one of " + str(CENTERINGS) if "auto" in centerings else f"one of {centerings}"
        raise ValueError(f"{_name(cfg, 'centering')} must be {shown}, got {cfg.centering!r}")
