"""codeal_jax: fast heterogeneous treatment effects on panels by causal matrix completion."""

from .api import METHODS as METHODS
from .api import default_config as default_config
from .api import estimate as estimate
from .api import resolve as resolve
from .codeal import CodealConfig as CodealConfig
from .covariates import CovariateConfig as CovariateConfig
from .panel import Panel as Panel
from .panel import effects as effects
from .result import Result as Result
from .result import Status as Status

__version__ = "0.1.0"
