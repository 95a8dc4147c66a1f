"""Uncertainty for every estimate: resampling draws refitted in one batched programme.

Modules: ``draws`` (bootstrap, jackknife and placebo draws that keep the
design), ``procedures`` (:func:`infer`: standard errors and intervals),
``pretrend`` (:func:`pretrend_test`), ``stability`` (:func:`key_atts`,
:func:`att_stability`: the spread of an estimate over fit keys against its SE).
"""

from .draws import PROCEDURES as PROCEDURES
from .procedures import Inference as Inference
from .procedures import infer as infer
from .pretrend import PretrendTest as PretrendTest
from .pretrend import pretrend_test as pretrend_test
from .stability import att_stability as att_stability
from .stability import key_atts as key_atts

__all__ = ["PROCEDURES", "Inference", "PretrendTest", "att_stability", "infer", "key_atts", "pretrend_test"]
