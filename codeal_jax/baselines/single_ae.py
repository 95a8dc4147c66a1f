"""Single AE: CoDEAL's autoencoder with one shared decoder (paper section 3.1).

As in the reference code's ``SingleDecoderAE``: one sample per period (the
zero-filled N-vector of a period's residual outcomes), an encoder
N -> 16 -> 16 -> 16 -> K and a single decoder K -> 16 -> 16 -> 16 -> N (ReLU),
so its only unit-specific parameters are the decoder's last linear layer.
Masked MSE on observed untreated cells, Adam (lr 2e-3), 50 full-batch steps,
PyTorch-default initialisation. Treated and unobserved cells are zero in the
input during training and imputation.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from .. import checks
from ..covariates import CovariateConfig, prepare
from ..estimator import finalize
from ..nets import Params, init_mlp, mlp
from ..panel import Panel
from ..result import Result, Status
from ..train import masked_mse, train


@dataclasses.dataclass(frozen=True)
class SingleAEConfig:
    """Static settings of the Single AE (defaults: the reference code's).

    Attributes:
      latent_dim: K, the bottleneck width (3; at most min(N, T)).
      encoder_hidden: hidden widths of the encoder N -> ... -> K.
      decoder_hidden: hidden widths of the decoder K -> ... -> N.
      steps: full-batch Adam steps.
      learning_rate: Adam learning rate.
      covariates: the covariate stage.
      centering: ``"blocks"``, ``"controls"`` or ``"none"``.
    """

    latent_dim: int = 3
    encoder_hidden: tuple[int, ...] = (16, 16, 16)
    decoder_hidden: tuple[int, ...] = (16, 16, 16)
    steps: int = 50
    learning_rate: float = 2e-3
    covariates: CovariateConfig = CovariateConfig()
    centering: str = "blocks"

    def __post_init__(self):
        checks.at_least_one(self, "latent_dim", "steps")
        checks.widths(self, "encoder_hidden", "decoder_hidden")
        checks.positive(self, "learning_rate")
        checks.covariate_stage(self)

    def check(self, panel: Panel) -> None:
        """Panel-dependent checks, before tracing."""
        n, t = panel.shape
        if self.latent_dim > min(n, t):
            raise ValueError(
                f"latent_dim K={self.latent_dim} exceeds min(N, T)={min(n, t)} for a {n}x{t} panel"
            )


def init_single_ae(key: jax.Array, n_units: int, config: SingleAEConfig) -> dict[str, Params]:
    """Encoder N -> ... -> K and one decoder K -> ... -> N (PyTorch init)."""
    k_enc, k_dec = jax.random.split(key)
    return {
        "encoder": init_mlp(k_enc, (n_units, *config.encoder_hidden, config.latent_dim)),
        "decoder": init_mlp(k_dec, (config.latent_dim, *config.decoder_hidden, n_units)),
    }


def apply_single_ae(params: dict[str, Params], inputs: jax.Array) -> jax.Array:
    """Reconstructs a panel from its zero-filled residuals.

    Args:
      params: from :func:`init_single_ae`.
      inputs: (N, T) zero-filled residual outcomes.

    Returns:
      (N, T) reconstruction; column t is decoder(encoder(inputs[:, t])).
    """
    latent = mlp(params["encoder"], inputs.T)  # (T, K): one sample per period
    return mlp(params["decoder"], latent).T


@functools.partial(jax.jit, static_argnames="config")
def fit(key: jax.Array, panel: Panel, config: SingleAEConfig = SingleAEConfig()) -> Result:
    """Single-AE imputation of the untreated outcomes (any mask).

    Args:
      key: PRNG key (covariate networks and autoencoder initialisation).
      panel: (N, T) panel.
      config: static settings.

    Returns:
      ``Result`` with ``info`` holding ``loss`` (steps,), ``mu0`` and, when the
      DNN covariate stage ran, ``covariate_loss``.
    """
    k_cov, k_ae = jax.random.split(key)
    prep = prepare(k_cov, panel, config.covariates, config.centering)
    inputs = jnp.where(prep.mask, prep.y_tilde, 0.0)
    params = init_single_ae(k_ae, panel.n_units, config)

    def loss(p):
        return masked_mse(apply_single_ae(p, inputs), prep.y_tilde, prep.mask)

    params, losses = train(loss, params, optax.adam(config.learning_rate), config.steps)
    pred = apply_single_ae(params, inputs)
    status = jnp.where(jnp.all(jnp.isfinite(losses)), Status.OK, Status.NONFINITE)
    return finalize(panel, pred, prep.offset, status, {**prep.info, "loss": losses})
