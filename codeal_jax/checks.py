"""Host-side validation of config fields, shared by every method's config.

Each helper raises ``ValueError`` naming ``Class.field`` and the bad value.
Types are checked too: a float where a size is expected (``steps=2.5``) or a
string where a rate is expected would otherwise fail deep inside tracing with
an unrelated error.
"""

from __future__ import annotations

import math
import numbers


def _name(cfg, field: str) -> str:
    return f"{type(cfg).__name__}.{field}"


def _is_int(value) -> bool:
    """True for Python/numpy integers (bools excluded: ``steps=True`` is a mistake)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def at_least(cfg, low: int, *fields: str) -> None:
    """Integer fields that must be >= ``low``."""
    for f in fields:
        value = getattr(cfg, f)
        if not _is_int(value):
            raise ValueError(f"{_name(cfg, f)} must be an integer >= {low}, got {value!r} ({type(value).__name__})")
        if value < low:
            raise ValueError(f"{_name(cfg, f)} must be >= {low}, got {value}")


def at_least_one(cfg, *fields: str) -> None:
    """Integer fields that must be >= 1 (sizes, steps)."""
    at_least(cfg, 1, *fields)


def positive(cfg, *fields: str) -> None:
    """Float fields that must be finite and > 0 (learning rates, tolerances)."""
    for f in fields:
        value = getattr(cfg, f)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ValueError(f"{_name(cfg, f)} must be a number > 0, got {value!r} ({type(value).__name__})")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{_name(cfg, f)} must be > 0, got {value}")


def widths(cfg, *fields: str) -> None:
    """Hidden-width tuples: every width an integer >= 1; lists become tuples so the config stays hashable."""
    for f in fields:
        raw = getattr(cfg, f)
        if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
            raise ValueError(f"{_name(cfg, f)} must be a tuple of widths, e.g. (64, 64), got {raw!r}")
        value = tuple(raw)
        if not all(_is_int(h) for h in value):
            raise ValueError(f"{_name(cfg, f)} widths must be integers, got {value}")
        if any(h < 1 for h in value):
            raise ValueError(f"{_name(cfg, f)} widths must be >= 1, got {value}")
        object.__setattr__(cfg, f, tuple(int(h) for h in value))


def one_of(cfg, field: str, allowed: tuple[str, ...]) -> None:
    """A string option that must be one of ``allowed``."""
    value = getattr(cfg, field)
    if value not in allowed:
        raise ValueError(f"{_name(cfg, field)} must be one of {allowed}, got {value!r}")


def rank_fits(cfg, shape: tuple[int, int], field: str = "rank") -> None:
    """A rank field must not exceed min(N, T) of the panel it is fitted to."""
    n, t = shape
    value = getattr(cfg, field)
    if value > min(n, t):
        raise ValueError(f"{_name(cfg, field)} K={value} exceeds min(N, T)={min(n, t)} for a {n}x{t} panel")


def fraction(cfg, *fields: str) -> None:
    """Float fields in [0, 1) (shares of cells held out)."""
    for f in fields:
        value = getattr(cfg, f)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ValueError(f"{_name(cfg, f)} must be a number in [0, 1), got {value!r} ({type(value).__name__})")
        if not 0 <= value < 1:
            raise ValueError(f"{_name(cfg, f)} must be in [0, 1), got {value}")
