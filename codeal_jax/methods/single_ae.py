"""Single AE: CoDEAL's autoencoder with one shared decoder (paper section 3.1).

As in the reference code's ``SingleDecoderAE``: one sample per period (the
zero-filled N-vector of a period's residual outcomes), an encoder
N -> 16 -> 16 -> 16 -> K and a single decoder K -> 16 -> 16 -> 16 -> N (ReLU),
so its only unit-specific parameters are the decoder's last linear layer.
Masked MSE on observed untreated cells, Adam (lr 2e-3), 50 full-batch steps,
PyTorch-default initialisation. Treated and unobserved cells are zero in the
input during training and imputation.

The unit-indexed weights (the encoder's first layer, the decoder's last) are
drawn row by row (row i depends on the key and i only), and the first layer's
scale uses the number of units with fit cells, so a problem padded with empty
units trains exactly like the unpadded one. On a staggered design the paper
trained one Single AE per treated block (``staggered="subproblems"``, the
default; the driver, :mod:`codeal_jax.driver`, runs them).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from .. import checks
from ..contract import ImputationConfig, Method, renamed
from ..nets import Params, mlp, n_params, read_ranked, uniform_rows, unpack_mlp
from ..panel import Panel
from ..staggered import TRAIN_INPUTS
from ..train import loss_status, masked_mse, train


@renamed(latent_dim="rank")
@dataclasses.dataclass(frozen=True)
class SingleAEConfig(ImputationConfig):
    """Static settings of the Single AE (defaults: the reference code's).

    The fields the driver reads (``covariates``, ``centering``, ``staggered``,
    ``max_groups``, ``max_buckets``) are documented in
    :class:`~codeal_jax.contract.ImputationConfig`.

    Attributes:
      rank: K, the bottleneck width (3; at most min(N, T); formerly ``latent_dim``).
      encoder_hidden: hidden widths of the encoder N -> ... -> K.
      decoder_hidden: hidden widths of the decoder K -> ... -> N.
      steps: full-batch Adam steps.
      learning_rate: Adam learning rate.
      train_inputs: on a staggered design fitted per subproblem, what the
        encoder reads while a subproblem trains: ``"zero_filled"`` (zeros
        outside the loss, as in imputation) or ``"sub_panel"`` (the sub-panel's
        adjusted outcomes, treated cells included, as ``CodealConfig.train_inputs``).
    """

    rank: int = 3
    encoder_hidden: tuple[int, ...] = (16, 16, 16)
    decoder_hidden: tuple[int, ...] = (16, 16, 16)
    steps: int = 50
    learning_rate: float = 2e-3
    train_inputs: str = "zero_filled"

    def __post_init__(self):
        super().__post_init__()
        checks.at_least_one(self, "rank", "steps")
        checks.widths(self, "encoder_hidden", "decoder_hidden")
        checks.positive(self, "learning_rate")
        checks.one_of(self, "train_inputs", TRAIN_INPUTS)

    @property
    def reads_sub_panel(self) -> bool:
        return self.train_inputs == "sub_panel"

    def check(self, panel: Panel) -> None:
        checks.rank_fits(self, panel.shape)

    def traces(self, field: str) -> bool:
        # A traced rank reads the latent layers out of the flat draw; both sides need a hidden layer.
        return field != "rank" or bool(self.encoder_hidden and self.decoder_hidden)


def init_single_ae(key: jax.Array, n_units: int, config: SingleAEConfig, fan_in=None, rank=None) -> dict[str, Params]:
    """Encoder N -> ... -> K and one decoder K -> ... -> N (PyTorch init).

    Args:
      key: PRNG key.
      n_units: N, the input and output width.
      config: architecture.
      fan_in: optional (traced) number of units really present; the first
        layer is scaled as if its input had that width, so a problem padded
        with empty units starts like the unpadded one. Default N.
      rank: optional () traced bottleneck r <= ``config.rank`` (hidden layers
        on both sides required): the rank-r network's values padded with
        zeros to ``config.rank`` units (:func:`codeal_jax.nets.read_ranked`),
        so one programme trains any r.

    Returns:
      ``{"encoder": ..., "decoder": ...}`` MLP parameters. Unit i's row of the
      first encoder layer and column of the last decoder layer (with its
      bias) depend on ``(key, i)`` only.
    """
    k_units, k_rest = jax.random.split(key)
    enc = (n_units, *config.encoder_hidden, config.rank)
    dec = (config.rank, *config.decoder_hidden, n_units)
    h_in, h_out = enc[1], dec[-2]
    width = n_units if fan_in is None else fan_in
    bound = 1.0 / jnp.sqrt(jnp.maximum(width, 1).astype(jnp.float32))
    # Two draws (few random kernels compile fast): unit-indexed weights row by row, the rest flat.
    per_unit = uniform_rows(k_units, n_units, h_in + h_out + 1)
    enc_rest = enc[1:] if len(enc) > 2 else ()
    dec_rest = dec[:-1] if len(dec) > 2 else ()
    sizes = (h_in,) + tuple(n_params(x) for x in (enc_rest, dec_rest) if x)
    flat = jax.random.uniform(k_rest, (sum(sizes),), jnp.float32, -1.0, 1.0)
    first = (per_unit[:, :h_in] * bound, flat[:h_in] * bound)
    pos = h_in
    encoder, hidden = (first,), ()
    if rank is not None:
        if not config.traces("rank"):
            raise ValueError("a traced Single AE rank needs hidden layers in the encoder and the decoder")
        # Encoder rest and decoder hidden layers lie back to back in the draw: one network through the bottleneck.
        through = (*enc_rest, *dec_rest[1:])
        layers = read_ranked(flat, through, (len(enc_rest) - 1,), rank, offset=h_in)
        encoder, hidden = (first, *layers[: len(enc_rest) - 1]), layers[len(enc_rest) - 1 :]
    else:
        if enc_rest:
            encoder = (first, *unpack_mlp(flat[pos : pos + n_params(enc_rest)], enc_rest))
            pos += n_params(enc_rest)
        if dec_rest:
            hidden = unpack_mlp(flat[pos:], dec_rest)
    last = per_unit[:, h_in:] / jnp.sqrt(float(h_out))  # PyTorch bound 1/sqrt(fan_in)
    decoder = (*hidden, (last[:, :-1].T, last[:, -1]))
    return {"encoder": encoder, "decoder": decoder}


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


def impute(
    key: jax.Array,
    y_tilde: jax.Array,
    mask: jax.Array,
    config: SingleAEConfig,
    blocks=None,
    train_inputs=None,
    hyper=None,
):
    """Trains one Single AE on the masked cells and reconstructs: ``(pred, status, info)``.

    Args:
      key: PRNG key of the initialisation.
      y_tilde: (R, C) adjusted outcomes, zero outside ``mask``.
      mask: (R, C) bool fit cells; rows/columns without any (padding) get
        zero inputs and no loss, so they change nothing for the others.
      config: architecture and training settings.
      blocks: unused.
      train_inputs: optional (R, C) encoder input during training (the
        ``"sub_panel"`` variant of ``SingleAEConfig.train_inputs``); the
        reconstruction always reads the zero-filled ``y_tilde``.
      hyper: optional ``{"rank": ()}`` traced bottleneck r <= ``config.rank``
        (a rank search in one programme).

    Returns:
      (R, C) reconstruction, ``NONFINITE`` if a loss was not finite, and
      ``{"loss": (steps,)}``.
    """
    del blocks
    inputs = jnp.where(mask, y_tilde, 0.0)
    seen = inputs if train_inputs is None else train_inputs
    present = jnp.sum(jnp.any(mask, axis=1))
    rank = None if hyper is None else hyper.get("rank")
    params = init_single_ae(key, y_tilde.shape[0], config, fan_in=present, rank=rank)

    def loss(p):
        return masked_mse(apply_single_ae(p, seen), y_tilde, mask)

    params, losses = train(loss, params, optax.adam(config.learning_rate), config.steps)
    status = loss_status(losses)
    return apply_single_ae(params, inputs), status, {"loss": losses}


METHOD = Method(
    "single_ae",
    SingleAEConfig,
    impute=impute,
    paper=True,
    traced=("rank",),
    summary="Single AE: CoDEAL's autoencoder with one shared decoder",
)
