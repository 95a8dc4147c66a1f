"""Uncertainty for every estimate: resampling draws refitted in one batched programme.

Modules: ``draws`` (bootstrap, jackknife and placebo draws that keep the
design), ``procedures`` (:func:`infer`: standard errors and intervals),
``pretrend`` (:func:`pretrend_test`).
"""

from .draws import PROCEDURES as PROCEDURES
from .procedures import Inference as Inference
from .procedures import infer as infer
from .pretrend import PretrendTest as PretrendTest
from .pretrend import pretrend_test as pretrend_test

__all__ = ["PROCEDURES", "Inference", "PretrendTest", "infer", "pretrend_test"]
