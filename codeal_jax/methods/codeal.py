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
from ..nets import init_mlp, init_mlp_ranked, init_mlp_stack, mlp, mlp_stack, uniform_rows, uniform_rows_ranked
from ..panel import Panel
from ..staggered import TRAIN_INPUTS
from ..train import loss_status, masked_mse, train, train_best


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
      validation: share of the fit cells held out at random (0 <= v < 1) to
        choose the training length: training runs ``steps`` steps and
        returns the parameters of the step with the lowest MSE on the
        held-out cells (early stopping with the best step restored), which
        stay zero in the encoder's input. 0 (the paper): the last step.
      ensemble: E >= 1 fits from independent initialisations (one ``vmap``)
        whose imputations are averaged; the first member is the E = 1 fit.
    """

    rank: int = 3
    encoder_hidden: tuple[int, ...] = (64, 64, 64)
    decoder_hidden: tuple[int, ...] = (64, 64, 64)
    steps: int = 50
    learning_rate: float = 2e-3
    train_inputs: str = "zero_filled"
    validation: float = 0.0
    ensemble: int = 1
    max_buckets: int = dataclasses.field(default=8, kw_only=True)

    def __post_init__(self):
        super().__post_init__()
        checks.at_least_one(self, "rank", "steps", "ensemble")
        checks.fraction(self, "validation")
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


def init_autoencoder(key: jax.Array, n_units: int, config: CodealConfig, fan_in=None, rank=None) -> dict:
    """Encoder N -> ... -> K and N stacked decoders K -> ... -> 1 (PyTorch init).

    Args:
      key: PRNG key.
      n_units: N, the input width and number of decoders.
      config: architecture.
      fan_in: optional (traced) number of units really present; the first
        encoder layer is then initialised as if its input had that width, so
        a subproblem padded to N units starts like the reference code's
        sub-panel network of ``fan_in`` inputs.
      rank: optional () traced latent size r <= ``config.rank``: the network
        of latent size r (same draws as ``rank=r`` in the config) padded to
        ``config.rank`` latent units with zeros (:func:`codeal_jax.nets.init_mlp_ranked`),
        so one compiled programme trains any r (a rank search).
    """
    k_rows, k_enc, k_dec = jax.random.split(key, 3)
    bound = 1.0 / jnp.sqrt(jnp.maximum(n_units if fan_in is None else fan_in, 1).astype(jnp.float32))
    dec_sizes = (config.rank, *config.decoder_hidden, 1)
    if config.encoder_hidden:
        h1 = config.encoder_hidden[0]
        enc_sizes = (h1, *config.encoder_hidden[1:], config.rank)
        if rank is None:
            rest = init_mlp(k_enc, enc_sizes)
        else:
            rest = init_mlp_ranked(k_enc, enc_sizes, (len(enc_sizes) - 1,), rank)
        # Row i of the first layer depends on (key, i) only: padding adds rows, changes none.
        w1 = uniform_rows(k_rows, n_units, h1) * bound
    else:  # the first layer is the latent one: N -> K
        h1, rest = config.rank, ()
        if rank is None:
            w1 = uniform_rows(k_rows, n_units, h1) * bound
        else:
            w1 = uniform_rows_ranked(k_rows, n_units, h1, rank) * bound
    b1 = jax.random.uniform(jax.random.fold_in(k_enc, 0), (h1,), jnp.float32, -1.0, 1.0) * bound
    if rank is not None and not config.encoder_hidden:
        b1 = jnp.where(jnp.arange(h1) < rank, b1, 0.0)
    encoder = ((w1, b1), *rest)
    if rank is None:
        decoders = init_mlp_stack(k_dec, n_units, dec_sizes)
    else:
        decoders = init_mlp_ranked(k_dec, dec_sizes, (0,), rank, count=n_units)
    return {"encoder": encoder, "decoders": decoders}


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


def _block_sse(params, inputs, y_tilde, masks, blocks) -> list[jax.Array]:
    """Sums of squared errors on ``masks``, evaluated only on the two rectangles that can hold fit cells.

    Equal to ``sum(mask * (apply_autoencoder(params, inputs) - y_tilde) ** 2)``
    for each mask whenever every masked cell lies in ``blocks`` (the
    decoders' work on the rest, mostly the D region, is skipped). ``params``
    holds the decoders whole, or as the blocks of :func:`_split_decoders`
    when ``blocks.split``. One forward pass serves every mask.
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
    sq_a = (pred_a - y_tilde[:a]) ** 2
    in_a = rows[:a, None] < blocks.ctrl
    sse = [jnp.sum(jnp.where(m[:a] & in_a, sq_a, 0.0)) for m in masks]
    # Treated units of the sub-panel: rows [ctrl, ctrl + b_rows), pre-periods.
    if b > 0 and c > 0:
        pred_b = mlp_stack(dec_b, latent[:c])[..., 0]
        y_b = jax.lax.dynamic_slice_in_dim(y_tilde[:, :c], start, b, axis=0)
        sq_b = (pred_b - y_b) ** 2
        in_b = (start + jnp.arange(b))[:, None] >= blocks.ctrl
        for i, m in enumerate(masks):
            m_b = jax.lax.dynamic_slice_in_dim(m[:, :c], start, b, axis=0) & in_b
            sse[i] += jnp.sum(jnp.where(m_b, sq_b, 0.0))
    return sse


def _mean(sse: jax.Array, mask: jax.Array) -> jax.Array:
    return sse / jnp.maximum(jnp.sum(mask), 1)


# fold_in tag of the validation draw, apart from the ensemble members' small integers.
_VALIDATION_STREAM = 0x5EED


def fit_autoencoder(
    key: jax.Array,
    y_tilde: jax.Array,
    mask: jax.Array,
    config: CodealConfig,
    blocks=None,
    train_inputs=None,
    rank=None,
):
    """Trains the multi-output autoencoder on the masked cells and reconstructs.

    Args:
      key: PRNG key for the initialisation (and the validation cells).
      y_tilde: (N, T) residuals, zero outside ``mask``.
      mask: (N, T) cells the loss is computed on (observed, untreated).
      config: architecture and training settings.
      blocks: optional :class:`codeal_jax.staggered.Blocks` layout of the
        mask (units sorted); training then skips the decoders' work on cells
        that cannot be in the loss. Same result, less work.
      train_inputs: optional (N, T) encoder input during training (the
        ``"sub_panel"`` variant of ``CodealConfig.train_inputs``); the
        reconstruction always reads the zero-filled ``y_tilde``.
      rank: optional () traced latent size r <= ``config.rank`` (see
        :func:`init_autoencoder`); None: ``config.rank``.

    Returns:
      ``(pred, losses, extra)``: (N, T) reconstruction, (steps,) training
      losses, and with ``config.validation`` > 0 ``{"val_loss": (steps + 1,),
      "best_step": ()}`` (else ``{}``).
    """
    held = None
    if config.validation > 0:
        draw = jax.random.uniform(jax.random.fold_in(key, _VALIDATION_STREAM), mask.shape)
        held = mask & (draw < config.validation)
    fit = mask if held is None else mask & ~held
    inputs = jnp.where(fit, y_tilde, 0.0)
    seen = inputs if train_inputs is None else train_inputs
    if held is not None and train_inputs is not None:
        seen = jnp.where(held, 0.0, seen)  # held-out cells are never read
    present = jnp.sum(jnp.any(mask, axis=1))  # units outside a (padded) sub-panel have no cells
    params = init_autoencoder(key, y_tilde.shape[0], config, fan_in=present, rank=rank)
    masks = (fit,) if held is None else (fit, held)

    if blocks is None:

        def errors(p):
            pred = apply_autoencoder(p, seen)
            return [masked_mse(pred, y_tilde, m) for m in masks]

    else:

        def errors(p):
            return [_mean(sse, m) for sse, m in zip(_block_sse(p, seen, y_tilde, masks, blocks), masks)]

        if blocks.split:
            params = _split_decoders(params, blocks)

    optimizer = optax.adam(config.learning_rate)
    extra = {}
    if held is None:
        params, losses = train(lambda p: errors(p)[0], params, optimizer, config.steps)
    else:
        params, losses, val, best = train_best(lambda p: tuple(errors(p)), params, optimizer, config.steps)
        extra = {"val_loss": val, "best_step": best}
    if blocks is not None and blocks.split:
        params = _join_decoders(params)
    return apply_autoencoder(params, inputs), losses, extra


def member_keys(key: jax.Array, count: int) -> jax.Array:
    """(count,) keys of an ensemble's members: the first is ``key`` itself (E = 1 is the plain fit)."""
    return jnp.stack([key] + [jax.random.fold_in(key, e) for e in range(1, count)])


def impute(
    key: jax.Array,
    y_tilde: jax.Array,
    mask: jax.Array,
    config: CodealConfig,
    blocks=None,
    train_inputs=None,
    hyper=None,
):
    """One four-block imputation on adjusted outcomes (the method contract).

    Args:
      key, y_tilde, mask, config, blocks, train_inputs: see :func:`fit_autoencoder`.
      hyper: optional traced config values (:data:`TRACED`): ``{"rank": ()}``
        fits latent size r <= ``config.rank`` in a network padded to
        ``config.rank`` (one programme for a whole rank search).

    Returns:
      ``(pred (R, C), status, info)``; status ``NONFINITE`` if a training loss
      was not finite; ``info["loss"]`` (steps,) (the members' mean for an
      ensemble), with ``config.validation`` > 0 also ``"val_loss"`` (steps + 1,)
      and ``"best_step"`` (() int32, (E,) for an ensemble of E > 1).
    """
    rank = None if hyper is None else hyper.get("rank")
    fit = lambda k: fit_autoencoder(k, y_tilde, mask, config, blocks, train_inputs, rank)
    if config.ensemble == 1:
        pred, losses, extra = fit(key)
        return pred, loss_status(losses), {"loss": losses, **extra}
    preds, losses, extra = jax.vmap(fit)(member_keys(key, config.ensemble))
    info = {"loss": jnp.mean(losses, axis=0)}
    if extra:
        info.update(val_loss=jnp.mean(extra["val_loss"], axis=0), best_step=extra["best_step"])
    return jnp.mean(preds, axis=0), loss_status(losses), info


# Config fields impute can also take traced, through ``hyper`` (a search compiles once).
TRACED = ("rank",)


METHOD = Method(
    "codeal",
    CodealConfig,
    impute=impute,
    needs_adoption=True,
    four_block_subproblem=True,
    paper=True,
    traced=TRACED,
    summary="CoDEAL: per-period covariate networks, then a multi-output autoencoder (the paper's method)",
)
