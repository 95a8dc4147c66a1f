"""The method settings the paper's simulation study used for a given DGP."""

from __future__ import annotations

import dataclasses

from ..api import default_config
from .dgp import DGPConfig

# The paper always gives the true factor rank K to the methods that take one.
RANK_FIELDS = {"codeal": "latent_dim", "single_ae": "latent_dim", "mc_nnm": "rank"}


def paper_config(method: str, dgp: DGPConfig):
    """``method``'s default config with the paper's per-DGP choices.

    The latent dimension / rank is the DGP's true rank, and CoDEAL on a
    staggered design uses the staggered script's decoders (two hidden layers).
    """
    cfg = default_config(method)
    if method in RANK_FIELDS:
        cfg = dataclasses.replace(cfg, **{RANK_FIELDS[method]: dgp.rank})
    if method == "codeal" and dgp.design == "staggered":
        cfg = dataclasses.replace(cfg, decoder_hidden=(64, 64))
    return cfg


def paper_methods(methods, dgp: DGPConfig) -> list[tuple[str, object]]:
    """``[(name, config), ...]`` for :func:`codeal_jax.sim.run_study`."""
    return [(m, paper_config(m, dgp)) for m in methods]
