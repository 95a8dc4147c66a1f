"""CoDEAL: covariate removal, then a multi-output autoencoder imputes Y(0).

The autoencoder (paper eq. 5-6, reference code ``DisjointDecoderAE``) reads one
period at a time: the encoder maps the zero-filled N-vector of a period's
residual outcomes to K latent factors, and unit i's own decoder maps those
factors to unit i's outcome. The N decoders are one stacked pytree applied
with ``vmap`` (one batched matmul per layer). The loss is the mean squared
error on observed untreated cells; treated cells are zero in the input both
during training and imputation.

The driver (:mod:`codeal_jax.driver`) runs the covariate stage and hands
:func:`impute` every subproblem of the design; a four-block panel is its one
subproblem, whose layout lets training skip the treated block.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from .. import checks
from ..contract import ImputationConfig, Method, renamed
from ..nets import init_mlp, init_mlp_stack, mlp, mlp_stack, uniform_rows
from ..panel import Panel
from ..staggered import TRAIN_INPUTS
from ..train import loss_status, masked_mse, train


@renamed(latent_dim="rank")
@dataclasses.dataclass(frozen=True)
class CodealConfig(ImputationConfig):
    """Static settings of CoDEAL (defaults: the reference code's simulation settings).

    The fields the driver reads (``covariates``, ``centering``, ``staggered``,
    ``max_groups``, ``max_buckets``) are documented in
    :class:`~codeal_jax.contract.ImputationConfig`; here ``max_buckets``
    defaults to 8: against 4 it cuts the steady-state time of the paper's
    staggered Configs by 30-50% and adds 9-33 s of compilation on a 2-core
    CPU (``docs/performance.md``).

    Attributes:
      rank: K, the encoder's output width (formerly ``latent_dim``). The
        paper always passes the true factor rank; the default 3 is Config 2's.
      encoder_hidden: hidden widths of the encoder N -> ... -> K (64, 64, 64).
      decoder_hidden: hidden widths of each unit decoder K -> ... -> 1
        (64, 64, 64 as in the four-block script; the staggered script and the
        real-data notebook use (64, 64)).
      steps: full-batch Adam steps (50; 1000 for the paper's real data).
      learning_rate: Adam learning rate (2e-3; 1e-4 for the real data).
      train_inputs: staggered designs only: what the encoder reads while a
        subproblem trains. ``"zero_filled"`` (the paper, and the four-block
        script): every cell outside the loss is zero, in training and
        imputation alike. ``"sub_panel"`` (the staggered reference script):
        training reads the sub-panel's adjusted outcomes, treated cells
        included, while imputation still zero-fills them.
    """

    rank: int = 3
    encoder_hidden: tuple[int, ...] = (64, 64, 64)
    decoder_hidden: tuple[int, ...] = (64, 64, 64)
    steps: int = 50
    learning_rate: float = 2e-3
    train_inputs: str = "zero_filled"
    max_buckets: int = dataclasses.field(default=8, kw_only=True)

    def __post_init__(self):
        super().__post_init__()
        checks.at_least_one(self, "rank", "steps")
        checks.widths(self, "encoder_hidden", "decoder_hidden")
        checks.positive(self, "learning_rate")
        checks.one_of(self, "train_inputs", TRAIN_INPUTS)

    @property
    def reads_sub_panel(self) -> bool:
        return self.train_inputs == "sub_panel"

    @classmethod
    def paper_staggered(cls, **overrides) -> "CodealConfig":
        """The staggered script's settings (decoders with two hidden layers), K = 4."""
        return cls(**{"rank": 4, "decoder_hidden": (64, 64), **overrides})

    @classmethod
    def paper_real_data(cls, **overrides) -> "CodealConfig":
        """The OxCGRT notebook's settings: K = 2, 1000 steps, lr 1e-4, two hidden decoder layers."""
        return cls(**{"rank": 2, "decoder_hidden": (64, 64), "steps": 1000, "learning_rate": 1e-4, **overrides})

    def check(self, panel: Panel) -> None:
        checks.rank_fits(self, panel.shape)


def init_autoencoder(key: jax.Array, n_units: int, config: CodealConfig, fan_in=None) -> dict:
    """Encoder N -> ... -> K and N stacked decoders K -> ... -> 1 (PyTorch init).

    Args:
      key: PRNG key.
      n_units: N, the input width and number of decoders.
      config: architecture.
      fan_in: optional (traced) number of units really present; the first
        encoder layer is then initialised as if its input had that width, so
        a subproblem padded to N units starts like the reference code's
        sub-panel network of ``fan_in`` inputs.
    """
    k_rows, k_enc, k_dec = jax.random.split(key, 3)
    h1 = config.encoder_hidden[0] if config.encoder_hidden else config.rank
    bound = 1.0 / jnp.sqrt(jnp.maximum(n_units if fan_in is None else fan_in, 1).astype(jnp.float32))
    # Row i of the first layer depends on (key, i) only: padding adds rows, changes none.
    w1 = uniform_rows(k_rows, n_units, h1) * bound
    b1 = jax.random.uniform(jax.random.fold_in(k_enc, 0), (h1,), jnp.float32, -1.0, 1.0) * bound
    rest = init_mlp(k_enc, (h1, *config.encoder_hidden[1:], config.rank)) if config.encoder_hidden else ()
    encoder = ((w1, b1), *rest)
    dec_sizes = (config.rank, *config.decoder_hidden, 1)
    return {"encoder": encoder, "decoders": init_mlp_stack(k_dec, n_units, dec_sizes)}


def apply_autoencoder(params: dict, inputs: jax.Array) -> jax.Array:
    """Reconstructs a panel from its zero-filled residuals.

    Args:
      params: from :func:`init_autoencoder`.
      inputs: (N, T) zero-filled residual outcomes.

    Returns:
      (N, T) reconstruction: entry (i, t) is decoder_i(encoder(inputs[:, t])).
    """
    latent = mlp(params["encoder"], inputs.T)  # (T, K): one sample per period
    return mlp_stack(params["decoders"], latent)[..., 0]  # (N, T)


def _rows(tree, start, size: int):
    """Rows ``[start, start + size)`` of every leaf (``start`` traced, clamped to fit)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0), tree)


def _split_decoders(params: dict, blocks) -> dict:
    """Holds the decoders as the two row blocks the loss reads (``blocks.split`` only).

    The loss then uses each block whole: no slice of the 1.7 million decoder
    parameters and no scatter of their gradients at every step.
    """
    dec = params["decoders"]
    head = jax.tree.map(lambda p: p[: blocks.a_rows], dec)
    tail = jax.tree.map(lambda p: p[blocks.a_rows :], dec)
    return {"encoder": params["encoder"], "decoders_a": head, "decoders_b": tail}


def _join_decoders(params: dict) -> dict:
    """Inverse of :func:`_split_decoders`."""
    dec = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), params["decoders_a"], params["decoders_b"])
    return {"encoder": params["encoder"], "decoders": dec}


def _block_loss(params, inputs, y_tilde, mask, blocks) -> jax.Array:
    """Masked MSE evaluated only on the two rectangles that can hold training cells.

    Equal to ``masked_mse(apply_autoencoder(params, inputs), y_tilde, mask)``
    whenever every masked cell lies in ``blocks`` (the decoders' work on the
    rest, mostly the D region, is skipped). ``params`` holds the decoders
    whole, or as the blocks of :func:`_split_decoders` when ``blocks.split``.
    """
    n = y_tilde.shape[0]
    a, b, c = blocks.a_rows, blocks.b_rows, blocks.b_cols
    if blocks.split:
        dec_a, dec_b, start = params["decoders_a"], params["decoders_b"], a
    else:
        start = jnp.clip(blocks.ctrl, 0, n - b)
        dec_a = jax.tree.map(lambda p: p[:a], params["decoders"])
        dec_b = _rows(params["decoders"], start, b) if b > 0 else None
    latent = mlp(params["encoder"], inputs.T)  # (C, K)
    rows = jnp.arange(n)
    # Controls: rows [0, a_rows), all periods.
    pred_a = mlp_stack(dec_a, latent)[..., 0]
    m_a = mask[:a] & (rows[:a, None] < blocks.ctrl)
    sse = jnp.sum(jnp.where(m_a, (pred_a - y_tilde[:a]) ** 2, 0.0))
    # Treated units of the sub-panel: rows [ctrl, ctrl + b_rows), pre-periods.
    if b > 0 and c > 0:
        pred_b = mlp_stack(dec_b, latent[:c])[..., 0]
        y_b = jax.lax.dynamic_slice_in_dim(y_tilde[:, :c], start, b, axis=0)
        m_b = jax.lax.dynamic_slice_in_dim(mask[:, :c], start, b, axis=0)
        m_b = m_b & ((start + jnp.arange(b))[:, None] >= blocks.ctrl)
        sse += jnp.sum(jnp.where(m_b, (pred_b - y_b) ** 2, 0.0))
    return sse / jnp.maximum(jnp.sum(mask), 1)


def fit_autoencoder(
    key: jax.Array, y_tilde: jax.Array, mask: jax.Array, config: CodealConfig, blocks=None, train_inputs=None
):
    """Trains the multi-output autoencoder on the masked cells and reconstructs.

    Args:
      key: PRNG key for the initialisation.
      y_tilde: (N, T) residuals, zero outside ``mask``.
      mask: (N, T) cells the loss is computed on (observed, untreated).
      config: architecture and training settings.
      blocks: optional :class:`codeal_jax.staggered.Blocks` layout of the
        mask (units sorted); training then skips the decoders' work on cells
        that cannot be in the loss. Same result, less work.
      train_inputs: optional (N, T) encoder input during training (the
        ``"sub_panel"`` variant of ``CodealConfig.train_inputs``); the
        reconstruction always reads the zero-filled ``y_tilde``.

    Returns:
      ``(pred, losses)``: (N, T) reconstruction and (steps,) training losses.
    """
    inputs = jnp.where(mask, y_tilde, 0.0)
    seen = inputs if train_inputs is None else train_inputs
    present = jnp.sum(jnp.any(mask, axis=1))  # units outside a (padded) sub-panel have no cells
    params = init_autoencoder(key, y_tilde.shape[0], config, fan_in=present)

    if blocks is None:
        loss = lambda p: masked_mse(apply_autoencoder(p, seen), y_tilde, mask)
    else:
        loss = lambda p: _block_loss(p, seen, y_tilde, mask, blocks)
        if blocks.split:
            params = _split_decoders(params, blocks)

    params, losses = train(loss, params, optax.adam(config.learning_rate), config.steps)
    if blocks is not None and blocks.split:
        params = _join_decoders(params)
    return apply_autoencoder(params, inputs), losses


def impute(key: jax.Array, y_tilde: jax.Array, mask: jax.Array, config: CodealConfig, blocks=None, train_inputs=None):
    """One four-block imputation on adjusted outcomes (the method contract).

    Returns:
      ``(pred (R, C), status, {"loss": (steps,)})``; status ``NONFINITE`` if a
      training loss was not finite.
    """
    pred, losses = fit_autoencoder(key, y_tilde, mask, config, blocks, train_inputs)
    status = loss_status(losses)
    return pred, status, {"loss": losses}


METHOD = Method(
    "codeal",
    CodealConfig,
    impute=impute,
    needs_adoption=True,
    four_block_subproblem=True,
    paper=True,
    summary="CoDEAL: per-period covariate networks, then a multi-output autoencoder (the paper's method)",
)
