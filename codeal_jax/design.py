"""Adoption designs: adoption times, validation, four-block detection.

Everything here runs on the host (numpy) before tracing: designs decide shapes
and control flow, so they are static.
"""

from __future__ import annotations

import numpy as np

from .panel import Panel, _describe


def adoption_times(w) -> np.ndarray:
    """(N,) index of each unit's first treated period; T for never-treated units."""
    w = np.asarray(w, bool)
    n, t = w.shape
    first = np.argmax(w, axis=1)
    return np.where(w.any(axis=1), first, t)


def check_adoption(panel: Panel, method: str = "this method") -> None:
    """Checks what an adoption-design estimator needs, before tracing.

    Raises:
      ValueError: if no unit is treated, no unit is never treated, a treated
        unit has no untreated (pre-treatment) period, or treatment switches off
        again (naming the units).
    """
    w = np.asarray(panel.w, bool)
    obs = np.asarray(panel.observed, bool)
    units = panel.units
    ever = w.any(axis=1)
    if not ever.any():
        raise ValueError(f"{method} needs at least one treated cell; w is all zero")
    if ever.all():
        raise ValueError(f"{method} needs at least one never-treated (control) unit; every unit is treated")
    start = adoption_times(w)
    # Irreversible: once treated, treated in every later period.
    after = np.arange(w.shape[1])[None, :] >= start[:, None]
    reversing = np.nonzero((after & ~w).any(axis=1))[0]
    if reversing.size:
        raise ValueError(
            f"{method} assumes irreversible (staggered) adoption, but treatment switches off again "
            f"for units {_describe(reversing, units)}"
        )
    pre_obs = (~after & obs).any(axis=1)
    no_pre = np.nonzero(ever & ~pre_obs)[0]
    if no_pre.size:
        raise ValueError(
            f"{method} needs an observed pre-treatment period for every treated unit; units "
            f"{_describe(no_pre, units)} are treated from their first observed period"
        )


def is_four_block(w) -> bool:
    """True if every treated unit adopts in the same period (the r = 2 design)."""
    start = adoption_times(w)
    t = np.asarray(w).shape[1]
    return len(np.unique(start[start < t])) <= 1
