"""The ``Panel`` pytree: outcomes, treatment, covariates and the observed mask."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


_F32_MAX = float(np.finfo(np.float32).max)


def _describe(indices: np.ndarray, labels: Sequence[Any] | None, limit: int = 8) -> str:
    """Formats offending indices (or their labels) for an error message."""
    idx = [int(i) for i in np.asarray(indices).ravel()]
    names = [labels[i] for i in idx] if labels is not None else idx
    text = ", ".join(repr(n) if isinstance(n, str) else str(n) for n in names[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"[{text}{more}]"


@struct.dataclass
class Panel:
    """A balanced N x T panel (unobserved cells are flagged, not dropped).

    Build it with :meth:`Panel.from_arrays` or
    :func:`codeal_jax.io.panel_from_long` (both validate on the host); the
    constructor itself does no checking so that ``vmap``/``jit`` can rebuild it.

    Attributes:
      y: (N, T) float32 outcomes; zero at unobserved cells.
      w: (N, T) bool treatment indicator.
      x: (N, P) float32 time-invariant unit covariates; P may be 0.
      observed: (N, T) bool, False where the unit-period was not observed.
      units: optional unit labels (static metadata, not traced).
      times: optional period labels (static metadata, not traced).
    """

    y: jax.Array
    w: jax.Array
    x: jax.Array
    observed: jax.Array
    units: tuple | None = struct.field(pytree_node=False, default=None)
    times: tuple | None = struct.field(pytree_node=False, default=None)

    @property
    def shape(self) -> tuple[int, int]:
        """(N, T)."""
        return tuple(self.y.shape[-2:])

    @property
    def n_units(self) -> int:
        return self.y.shape[-2]

    @property
    def n_periods(self) -> int:
        return self.y.shape[-1]

    @property
    def n_covariates(self) -> int:
        return self.x.shape[-1]

    def without_labels(self) -> "Panel":
        """The same arrays with labels dropped, so that jit caches depend on shapes only."""
        return self.replace(units=None, times=None)

    @classmethod
    def from_arrays(
        cls,
        y,
        w,
        x=None,
        observed=None,
        *,
        units: Sequence[Any] | None = None,
        times: Sequence[Any] | None = None,
    ) -> "Panel":
        """Builds a validated panel from numpy or JAX arrays.

        Args:
          y: (N, T) outcomes. Must be finite wherever ``observed`` is True.
          w: (N, T) treatment, binary (0/1 or bool).
          x: optional (N, P) time-invariant unit covariates, finite.
          observed: optional (N, T) bool mask of observed cells (default: all).
          units: optional N unit labels, used in error messages and tables.
          times: optional T period labels.

        Returns:
          A ``Panel`` with float32 ``y``/``x`` and bool ``w``/``observed``.

        Raises:
          ValueError: naming the offending shape, units or periods, if shapes
            disagree, the panel is empty, values are not finite, or ``w`` is not
            binary.
        """
        y = np.asarray(y)
        w = np.asarray(w)
        if y.ndim != 2:
            raise ValueError(f"y must be a 2-D (units, periods) array, got shape {y.shape}")
        n, t = y.shape
        if n == 0 or t == 0:
            raise ValueError(f"the panel is empty: y has shape {y.shape}")
        if w.shape != y.shape:
            raise ValueError(f"w has shape {w.shape} but y has shape {y.shape}; they must match")
        if units is not None:
            units = tuple(units)
            if len(units) != n:
                raise ValueError(f"got {len(units)} unit labels for {n} units")
        if times is not None:
            times = tuple(times)
            if len(times) != t:
                raise ValueError(f"got {len(times)} period labels for {t} periods")
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise ValueError(f"y must be numeric, got dtype {y.dtype}")

        if observed is None:
            obs = np.ones((n, t), bool)
        else:
            obs = np.asarray(observed)
            if obs.shape != y.shape:
                raise ValueError(f"observed has shape {obs.shape} but y has shape {y.shape}")
            if not _is_binary(obs):
                raise ValueError("observed must be a binary (0/1 or bool) mask")
            obs = obs.astype(bool)
            if not obs.any():
                raise ValueError("no cell of the panel is observed")

        yf = y.astype(np.float64)
        bad = obs & ~np.isfinite(yf)
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise ValueError(
                f"y has {bad.sum()} non-finite observed values, at units "
                f"{_describe(np.unique(rows), units)} (periods {_describe(np.unique(cols), times)}); "
                "drop them or mark them unobserved"
            )
        # Finite in float64 but inf once stored as float32: would poison every fit silently.
        big = obs & (np.abs(yf) > _F32_MAX)
        if big.any():
            rows, cols = np.nonzero(big)
            raise ValueError(
                f"y has {big.sum()} observed values beyond the float32 range (|y| > {_F32_MAX:.3g}), at units "
                f"{_describe(np.unique(rows), units)} (periods {_describe(np.unique(cols), times)}); rescale y"
            )
        if not _is_binary(w):
            vals = np.unique(w[~np.isin(w, [0, 1])] if w.dtype != bool else w)
            rows = np.unique(np.nonzero(~np.isin(w, [0, 1]))[0])
            raise ValueError(
                f"w must be binary (0/1); found values {vals[:5].tolist()} at units {_describe(rows, units)}"
            )

        if x is None:
            xa = np.zeros((n, 0), np.float32)
        else:
            xa = np.asarray(x)
            if xa.ndim == 1:
                xa = xa[:, None]
            if xa.ndim != 2 or xa.shape[0] != n:
                raise ValueError(f"x must have shape (N, P) = ({n}, P), got {xa.shape}")
            if not np.issubdtype(xa.dtype, np.number):
                raise ValueError(f"x must be numeric, got dtype {xa.dtype}")
            badx = ~np.isfinite(xa.astype(np.float64))
            if badx.any():
                raise ValueError(
                    f"x has non-finite values at units {_describe(np.unique(np.nonzero(badx)[0]), units)} "
                    f"(covariate columns {np.unique(np.nonzero(badx)[1]).tolist()})"
                )
            bigx = np.abs(xa.astype(np.float64)) > _F32_MAX
            if bigx.any():
                raise ValueError(
                    f"x has values beyond the float32 range at units {_describe(np.unique(np.nonzero(bigx)[0]), units)} "
                    f"(covariate columns {np.unique(np.nonzero(bigx)[1]).tolist()}); rescale x"
                )
        return cls(
            y=jnp.asarray(np.where(obs, yf, 0.0), jnp.float32),
            w=jnp.asarray(w.astype(bool)),
            x=jnp.asarray(xa, jnp.float32),
            observed=jnp.asarray(obs),
            units=units,
            times=times,
        )


def _is_binary(a: np.ndarray) -> bool:
    if a.dtype == bool:
        return True
    if not np.issubdtype(a.dtype, np.number):
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.isin(a, [0, 1]).all())


def fit_cells(panel: Panel) -> jax.Array:
    """(N, T) bool: observed untreated cells, the only ones any method may fit on."""
    return panel.observed & ~panel.w


def effects(panel: Panel, result) -> jax.Array:
    """(N, T) cell effects ``y - y0_hat`` on observed treated cells, NaN elsewhere."""
    cells = panel.w & panel.observed
    return jnp.where(cells, panel.y - result.y0_hat, jnp.nan)
