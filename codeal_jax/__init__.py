"""codeal_jax: fast heterogeneous treatment effects on panels by causal matrix completion."""

from .api import METHODS as METHODS
from .api import default_config as default_config
from .api import estimate as estimate
from .api import resolve as resolve
from .codeal import CodealConfig as CodealConfig
from .covariates import CovariateConfig as CovariateConfig
from .longdata import panel_from_long as panel_from_long
from .longdata import panel_to_long as panel_to_long
from .panel import Panel as Panel
from .panel import effects as effects
from .result import Result as Result
from .spectral import SpectralConfig as SpectralConfig
from .spectral import SpectralResult as SpectralResult
from .spectral import difference_in_means as difference_in_means
from .spectral import spectral as spectral
from .baselines.aemc_ne import AEMCNEConfig as AEMCNEConfig
from .baselines.did import DiDConfig as DiDConfig
from .baselines.mc_nnm import MCNNMConfig as MCNNMConfig
from .baselines.single_ae import SingleAEConfig as SingleAEConfig
from .baselines.vert_reg import VertRegConfig as VertRegConfig
from .result import Status as Status
from .xla_flags import tune_cpu as tune_cpu

__version__ = "0.1.0"
