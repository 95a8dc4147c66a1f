"""How much an estimate moves with the fit's key, measured against its standard error.

A neural method's ATT depends on the key that initialises its networks. On a
small panel that spread can be as large as the sampling uncertainty itself;
:func:`key_atts` refits one config under several keys (the panel fixed) and
:func:`att_stability` sums the spread up next to a standard error (e.g. the
placebo SE of :func:`~codeal_jax.inference.infer`), whose ratio says whether
the key matters: below about a quarter, a reader changing the seed would not
notice it in the interval.
"""

from __future__ import annotations

import jax
import numpy as np

from ..driver import UNSET, plan
from ..panel import Panel
from ..result import Status


def key_atts(key: jax.Array, panel: Panel, config=None, *, keys: int = 10, method: str | None = None,
             covariates=UNSET) -> tuple[np.ndarray, np.ndarray]:
    """The ATT of one config refitted under ``keys`` keys split from ``key``, on the same panel.

    The fits run one after another through the one compiled plan (one
    compilation; on a CPU a single fit of a small panel is no faster batched).

    Args:
      key: PRNG key; fit i uses ``jax.random.split(key, keys)[i]``.
      panel: a validated :class:`Panel`.
      config, method, covariates: the method, as in :func:`codeal_jax.estimate`.
      keys: number of fits (>= 2).

    Returns:
      ``(att, status)``: (keys,) float64 ATTs and (keys,) int status codes.

    Raises:
      ValueError: fewer than 2 keys, or a panel or config :func:`codeal_jax.plan` rejects.
    """
    if not (isinstance(keys, int) and keys >= 2):
        raise ValueError(f"keys must be an integer >= 2 to measure a spread, got {keys!r}")
    fit = plan(panel, config, method=method, covariates=covariates)
    data = panel.without_labels()
    att, status = np.empty(keys), np.empty(keys, int)
    for i, k in enumerate(jax.random.split(key, keys)):
        res = fit(k, data)
        att[i], status[i] = float(res.att), int(res.status)
    return att, status


def att_stability(atts, se: float, status=None) -> dict[str, float]:
    """Spread of ATTs over keys and its ratio to a standard error.

    Args:
      atts: (K,) ATTs of the same config and panel under K keys.
      se: the estimate's standard error (e.g. the placebo SE), > 0.
      status: optional (K,) status codes; fits not ``Status.OK`` or with a
        non-finite ATT are left out and counted.

    Returns:
      ``mean``, ``sd`` (ddof 1), ``min``, ``max`` of the kept ATTs, ``se``,
      ``sd_over_se`` (``sd / se``), ``keys`` (kept) and ``failed``.

    Raises:
      ValueError: ``atts`` not 1-D, a status of another length, fewer than 2
        usable fits, or an SE that is not a positive finite number.
    """
    atts = np.asarray(atts, np.float64)
    if atts.ndim != 1:
        raise ValueError(f"atts must be 1-D (one ATT per key), got shape {atts.shape}")
    ok = np.isfinite(atts)
    if status is not None:
        status = np.asarray(status)
        if status.shape != atts.shape:
            raise ValueError(f"status has shape {status.shape} but atts has shape {atts.shape}")
        ok &= status == Status.OK
    if ok.sum() < 2:
        raise ValueError(f"need at least 2 usable fits to measure a spread, got {int(ok.sum())} of {atts.size}")
    if not (np.isfinite(se) and se > 0):
        raise ValueError(f"se must be a positive finite number, got {se!r}")
    kept = atts[ok]
    sd = float(np.std(kept, ddof=1))
    return {"mean": float(kept.mean()), "sd": sd, "min": float(kept.min()), "max": float(kept.max()),
            "se": float(se), "sd_over_se": sd / float(se), "keys": int(ok.sum()), "failed": int((~ok).sum())}
