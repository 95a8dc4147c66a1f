"""Initialisation helper shared by the autoencoder baselines."""

from __future__ import annotations

import math

import jax

from ..nets import Params


def torch_layers(u: jax.Array, sizes) -> Params:
    """Cuts flat U(-1, 1) draws into layers of widths ``sizes`` with PyTorch's ``nn.Linear`` bounds.

    Args:
      u: (n_params(sizes),) uniform draws on (-1, 1).
      sizes: layer widths, input first.

    Returns:
      Tuple of ``(w (fan_in, fan_out), b (fan_out,))``, both scaled by 1/sqrt(fan_in).
    """
    out, pos = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = u[pos : pos + fan_in * fan_out].reshape(fan_in, fan_out) * bound
        pos += fan_in * fan_out
        out.append((w, u[pos : pos + fan_out] * bound))
        pos += fan_out
    return tuple(out)
