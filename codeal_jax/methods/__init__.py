"""The methods, one module each: a frozen config and its imputation (see :mod:`codeal_jax.contract`).

Each registers here, one line per method; a new method is one new module
plus one line (``docs/adding_a_method.md``).
"""

from ..registry import register
from . import aemc_ne, codeal, did, mc_nnm, single_ae, spectral, vert_reg

register(codeal.METHOD)
register(single_ae.METHOD)
register(aemc_ne.METHOD)
register(did.METHOD)
register(vert_reg.METHOD)
register(mc_nnm.METHOD)
register(spectral.METHOD)
