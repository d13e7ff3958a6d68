"""CTGAN: a conditional GAN for mixed tables (Xu et al., 2019, "Modeling Tabular Data using
Conditional GAN"), written from the paper's ideas on synthkit's shared parts.

* Encoding: :class:`~synthkit.prepare.neural.NeuralTableEncoder` (mode-specific normalisation of
  numerical columns: an ``alpha`` value and a one-hot ``mode``; one-hot categories).
* Generator net: residual blocks (Linear, BatchNorm, ReLU; each block's output concatenated to
  its input), then one linear layer to the encoded width; ``tanh`` on alpha blocks and a Gumbel
  softmax (tau 0.2) on one-hot blocks while training, plain softmax when sampling.
* Discriminator net (PacGAN): ``pac`` rows packed into one input, Linear + LeakyReLU(0.2) +
  Dropout(0.5) layers, trained with the WGAN-GP loss (gradient penalty, lambda 10, on packed
  interpolates).
* Training by sampling: each generated row gets a conditional vector that names one category
  of one discrete column (column uniform, category by log-frequency or frequency); the
  discriminator sees real rows drawn with that same kind of condition, and the generator loss
  adds the cross-entropy between its output for that column and the named category. So rare
  categories are trained as often as frequent ones, and sampling can ask for a category.

Notes on how this fits the shared :class:`~synthkit.nn.Trainer`:

* The Trainer hands out real-data batches in random order, but training by sampling needs
  real rows *of a chosen category*. The task therefore keeps its own copy of the whole encoded
  training matrix on the device and draws conditioned real rows from it with
  ``ctx.generator`` (one precomputed index array per category slot, vectorised); a batch from
  the Trainer is used for its size only. The matrix sits on the device twice; it is small next
  to the nets' activations for any table that fits in memory.
* GANs have no validation loss that tracks sample quality, so early stopping is unavailable
  (``early_stopping_patience`` must stay ``None``). Instead a mode-collapse monitor ends every
  epoch of a short run and 30 evenly spaced epochs of a long one (always the last): a
  fixed-seed probe of 2,000 generated rows and the share of frequent categories and modes it
  covers, recorded in the fit report's training history, with a warning naming any column that
  falls below half.
* Resume (``fit(..., resume=True)`` with ``checkpoint_dir``) continues from the last checkpoint
  when the model configuration and the data are the same; run-control options (``epochs``,
  ``progress``, ``checkpoint_dir``, ``checkpoint_every``, ``device``, ``compile``) may change, so
  a finished run can be trained for more epochs.
* On a CPU the latent codes, Gumbel noise and dropout masks come from :mod:`synthkit.nn.draws`
  (16-bit inverse transform normals and Gumbel values, dropout bits 64 to a draw), in training
  as in sampling: the exact Mersenne-twister draws took ~5% of a step. A plain CPU critic step
  runs written out (:mod:`.ctgan_critic`: the WGAN-GP loss's weight gradients in closed form,
  no autograd graph), and so does a generator step (:mod:`.ctgan_generator_step`); private,
  CUDA and compiled runs keep autograd.

Conditional sampling sets the conditional vector to the asked category. CTGAN's vector names
one column at a time, so with several conditions the first discrete one is set and the base
class's rejection filter enforces the rest. Without conditions the vector is drawn as CTGAN
does: a column uniformly, then a category by its training frequency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from synthkit.generators.base import Generator
from synthkit.generators.neural import (
    NeuralConfig,
    adam,
    encode_private,
    encode_table,
    encoder_seed,
    family_state,
    load_encoder,
    make_trainer,
    privacy_report,
    private_condition_values,
    run_fingerprint,
    save_encoder,
)
from synthkit.generators.tabular.ctgan_critic import critic_step
from synthkit.generators.tabular.ctgan_generator_step import generator_step
from synthkit.nn import (
    StepContext,
    Trainer,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)
from synthkit.nn.blocks import OneHotBlocks
from synthkit.nn.chunks import sample_chunks
from synthkit.nn.draws import coin_draws, gumbel_draws, normal_draws
from synthkit.nn.optim import adam_step
from synthkit.nn.precision import linear_split_t, sampling_dtype
from synthkit.prepare.neural import NeuralTableEncoder
from synthkit.schema import Schema

_STATE_FILE = "ctgan.json"
_STATE_VERSION = 1
#: Temperature of the Gumbel softmax on one-hot blocks during training (the paper's 0.2).
_TAU = 0.2
#: Dropout rate in the discriminator (the paper's 0.5).
_DROPOUT = 0.5
#: Weight of the WGAN gradient penalty.
_GP_LAMBDA = 10.0
#: Rows in the mode-collapse probe, its fixed seed, and what counts as collapse.
_PROBE_ROWS = 2_000
_PROBE_SEED = 20_190_701
_FREQUENT_SHARE = 0.01
_LOW_COVERAGE = 0.5
#: Most epochs a run probes for mode collapse (evenly spaced, the last epoch always).
_PROBES_PER_RUN = 30

_Width = Annotated[int, Field(ge=1)]


class CTGANConfig(NeuralConfig):
    """Options of CTGAN; the defaults are the paper's (and SDV's)."""

    batch_size: int = Field(500, ge=1, description="Rows per step; a multiple of pac.")
    embedding_dim: int = Field(128, ge=1, description="Size of the generator's noise input.")
    generator_dim: tuple[_Width, ...] = Field(
        (256, 256), min_length=1, description="Widths of the generator's residual blocks."
    )
    discriminator_dim: tuple[_Width, ...] = Field(
        (256, 256), min_length=1, description="Widths of the discriminator's hidden layers."
    )
    generator_learning_rate: float = Field(2e-4, gt=0, description="Adam learning rate of G.")
    generator_decay: float = Field(1e-6, ge=0, description="Adam weight decay of G.")
    discriminator_learning_rate: float = Field(2e-4, gt=0, description="Adam learning rate of D.")
    discriminator_decay: float = Field(1e-6, ge=0, description="Adam weight decay of D.")
    discriminator_steps: int = Field(
        1, ge=1, description="Discriminator updates per generator update (WGAN uses 5; CTGAN 1)."
    )
    pac: int = Field(10, ge=1, description="Rows packed into one discriminator input (PacGAN).")
    train_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Matrix products in training: 'auto' (the default) uses bf16 on a CPU where "
        "bf16 is fast (AMX tiles, AVX-512 BF16) and fp32 elsewhere (a CUDA GPU keeps fp32 steps "
        "under bf16 autocast); 'bfloat16' asks for it on any fast device, 'float32' never. Weights, "
        "BatchNorm statistics, activations and losses stay fp32; never under dp. Over three "
        "seeds bf16 fitted in about four fifths of the time at the same quality (wage 0.872 vs "
        "fp32's 0.861, credit_data 0.871 vs 0.873, mlc_churn 0.848 vs 0.859).",
    )
    numerical: Literal["mode", "quantile"] = Field(
        "quantile",
        description="Numerical encoding: a quantile (normal-score) transform, the default, or "
        "the paper's mode-specific normalisation ('mode'). Over two to three seeds against "
        "SDV's CTGAN the quantile encoding scored 0.873 vs mode's 0.812 on credit_data, 0.860 vs "
        "0.804 on mlc_churn and 0.861 vs 0.864 on wage (SDMetrics quality), and fits faster "
        "(no mode blocks): 36 vs 54 CPU-s on credit_data, 59 vs 98 on mlc_churn.",
    )
    spread_ties: bool = Field(
        True,
        description="With the quantile encoding, spread each repeated value (a count's zeros, "
        "a term's two values) uniformly over its stretch of the normal-score scale for training, "
        "so the generator learns a smooth distribution instead of spikes whose upper side "
        "decodes into the next value; every point of a stretch still decodes to its value.",
    )
    discrete_numerical: int = Field(
        0,
        ge=0,
        description="Numerical columns with at most this many distinct values (each seen at "
        "least 10 times on average) are generated as one category per value. Off (0) by "
        "default for CTGAN: on wage, year as a 7-value category cost about 0.025 SDMetrics "
        "quality over three seeds (0.838 vs 0.864), with no gain on credit_data or mlc_churn "
        "over two seeds; TVAE, which gains from it, keeps 20.",
    )
    log_frequency: bool = Field(
        True,
        description="Draw training conditions by log-frequency (rare categories more often) "
        "rather than by frequency.",
    )
    early_stopping_patience: int | None = Field(
        None,
        description="Unavailable for CTGAN: a GAN has no validation loss that tracks sample "
        "quality. Must stay None; watch the coverage history in the fit report instead.",
    )

    @model_validator(mode="before")
    @classmethod
    def _private_packing(cls, data: Any) -> Any:
        """Under dp, pac defaults to 1: a pack of rows would be one 'sample' to the accountant."""
        if isinstance(data, dict) and data.get("dp") is not None and "pac" not in data:
            return {**data, "pac": 1}
        return data

    @model_validator(mode="after")
    def _check_consistent(self) -> CTGANConfig:
        """batch_size must split into packs; early stopping has no signal to stop on."""
        if self.batch_size % self.pac:
            fixed = max(self.pac, self.batch_size - self.batch_size % self.pac)
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of pac ({self.pac}): the "
                f"discriminator judges packs of {self.pac} rows. Use e.g. batch_size={fixed}."
            )
        if self.early_stopping_patience is not None:
            raise ValueError(
                "early_stopping_patience is unavailable for tabular/ctgan: a GAN has no "
                "validation loss that tracks sample quality. Leave it None and read the "
                "coverage history in fit_report_['training']['history'] instead."
            )
        if self.dp is not None and (self.pac != 1 or self.discriminator_steps != 1):
            raise ValueError(
                "With dp, tabular/ctgan needs pac=1 and discriminator_steps=1: DP-SGD clips "
                "each row's gradient and accounts one fresh Poisson batch per critic step."
            )
        return self


# --- torch modules -------------------------------------------------------------------------------
class _ResidualBlock(nn.Module):
    """Linear + BatchNorm + ReLU, its output concatenated to its input."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width_in, width_out)
        self.bn = nn.BatchNorm1d(width_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class CTGANGeneratorNet(nn.Module):
    """Noise + conditional vector in, raw (not yet activated) encoded row out."""

    def __init__(self, input_dim: int, generator_dim: tuple[int, ...], data_dim: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = input_dim
        for hidden in generator_dim:
            blocks.append(_ResidualBlock(width, hidden))
            width += hidden
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width, data_dim)

    def weights(self, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The linear layers' weights and biases in ``dtype`` (differentiable casts)."""
        layers = [block.fc for block in self.blocks] + [self.out]
        return [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in layers]

    def forward(
        self,
        x: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        weights: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Raw outputs; ``dtype=torch.bfloat16`` runs the matrix products in bf16 (mixed
        precision training where bf16 is fast; BatchNorm statistics stay fp32) and returns bf16,
        with ``weights`` from :meth:`weights` when a step reuses its casts."""
        if dtype != torch.float32:
            weights = self.weights(dtype) if weights is None else weights
            h = x.to(dtype)
            for block, (weight, bias) in zip(self.blocks, weights, strict=False):
                z = block.bn(F.linear(h, weight, bias))
                h = torch.cat([F.relu(z), h], dim=1)
            return F.linear(h, *weights[-1])
        if torch.is_grad_enabled():
            return self.out(self.blocks(x))
        return self.forward_no_grad(x)

    def forward_no_grad(
        self, x: torch.Tensor, dtype: torch.dtype = torch.float32, exact: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The same outputs without autograd (a critic step's fakes, sampling): the blocks write
        into one preallocated ``[h_k, ..., h_1, x]`` buffer instead of concatenating a growing
        input per block, and in eval mode BatchNorm is folded into its linear layer.

        ``dtype=torch.bfloat16`` (eval mode, for sampling) runs the blocks in bf16, and of the
        output layer only the ``exact`` columns (alpha values) in fp32 (see
        :mod:`synthkit.nn.precision`)."""
        if dtype != torch.float32 and not self.training and all(_foldable(b.bn) for b in self.blocks):
            return self._forward_low(x, dtype, exact)
        x = x.float()  # a no-op unless the caller built a low-precision input for the path above
        widths = [block.fc.out_features for block in self.blocks]
        total = x.shape[1] + sum(widths)
        buffer = x.new_empty(x.shape[0], total)
        start = total - x.shape[1]
        buffer[:, start:] = x
        for block, width in zip(self.blocks, widths, strict=True):
            inputs, bn = buffer[:, start:], block.bn
            if not _foldable(bn):
                h = bn(block.fc(inputs))
            else:  # eval: BatchNorm is an affine map per channel
                weight, bias = _folded(block)
                h = F.linear(inputs, weight, bias)
            start -= width
            buffer[:, start : start + width] = h.relu_()
        return self.out(buffer)

    def _forward_low(self, x: torch.Tensor, dtype: torch.dtype, exact: torch.Tensor | None) -> torch.Tensor:
        """:meth:`forward_no_grad` in ``dtype`` on a transposed buffer ``[h_k; ...; h_1; x]``
        (features × rows): each block's input is then a contiguous block of rows. (A bf16 linear
        on a column slice of a row-major buffer reads outside the slice in PyTorch's CPU kernels.)"""
        widths = [block.fc.out_features for block in self.blocks]
        total = x.shape[1] + sum(widths)
        buffer = x.new_empty(total, x.shape[0], dtype=dtype)
        start = total - x.shape[1]
        buffer[start:] = x.t()
        for block, width in zip(self.blocks, widths, strict=True):
            weight, bias = _folded(block)
            out = buffer[start - width : start]
            torch.addmm(bias.to(dtype)[:, None], weight.to(dtype), buffer[start:], out=out)
            out.relu_()
            start -= width
        return linear_split_t(self.out, buffer, exact)


def _foldable(bn: nn.BatchNorm1d) -> bool:
    return not bn.training and bn.running_mean is not None and bn.running_var is not None


def _folded(block: _ResidualBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's linear layer with its (eval-mode) BatchNorm folded in: weight and bias."""
    bn = block.bn
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return block.fc.weight * scale[:, None], (block.fc.bias - bn.running_mean) * scale + bn.bias


class CTGANDiscriminatorNet(nn.Module):
    """PacGAN critic: ``pac`` rows packed into one input, one score per pack.

    Dropout is applied by hand so its masks can come from a seeded ``torch.Generator``.
    """

    def __init__(self, input_dim: int, discriminator_dim: tuple[int, ...], pac: int) -> None:
        super().__init__()
        self.pac = pac
        self.packed_dim = input_dim * pac
        widths = [self.packed_dim, *discriminator_dim]
        self.hidden = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.out = nn.Linear(widths[-1], 1)

    def weights(self, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's weight and bias in ``dtype`` (cast once per step, differentiable)."""
        return [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in (*self.hidden, self.out)]

    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        weights: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """One score per pack; with ``weights`` (from :meth:`weights`) in their dtype.

        Without ``weights`` every layer is called as its module, so module hooks see it: DP-SGD
        (Opacus) computes per-row gradients from such hooks, and a private critic step must
        never bypass them."""
        h = x.reshape(-1, self.packed_dim)
        if weights is not None:
            h = h.to(weights[0][0].dtype)
        for i, layer in enumerate(self.hidden):
            h = F.leaky_relu(layer(h) if weights is None else F.linear(h, *weights[i]), 0.2)
            if self.training:
                h = h * _dropout_mask(h, generator)
        return self.out(h) if weights is None else F.linear(h, *weights[-1])

    def input_gradient(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        weights: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Each pack's gradient of its score with respect to its packed input, ``(packs, width)``.

        Built from plain differentiable ops (forward pass, then the chain rule by hand), so the
        gradient penalty needs one backward pass instead of autograd's double backward. Leaky
        ReLU's derivative is piecewise constant (1 where its input is positive, else 0.2, as
        torch's own backward takes it), so this equals ``autograd.grad(score.sum(), x,
        create_graph=True)`` under the same dropout masks, and so do the weights' gradients.
        """
        if weights is None:  # the layers' own parameters (a cast to their dtype is a no-op)
            weights = self.weights(self.out.weight.dtype)
        h = x.reshape(-1, self.packed_dim).to(weights[0][0].dtype)
        packs, hidden = h.shape[0], weights[:-1]
        inputs: list[torch.Tensor] = []  # each hidden layer's pre-activation
        masks: list[torch.Tensor | None] = []
        for i, (weight, bias) in enumerate(hidden):
            z = F.linear(h, weight, bias)
            # the same masks forward() would draw, in the same order
            mask = _dropout_mask(z, generator) if self.training else None
            inputs.append(z)
            masks.append(mask)
            if i + 1 < len(hidden):  # the last layer's activations are not needed, its slopes are
                h = F.leaky_relu(z, 0.2)
                h = h if mask is None else h * mask
        grad = weights[-1][0].expand(packs, -1)
        for (weight, _), z, mask in zip(reversed(hidden), reversed(inputs), reversed(masks), strict=True):
            grad = grad if mask is None else grad * mask
            # leaky ReLU's backward: differentiable in grad (the penalty's own gradient)
            grad = torch.ops.aten.leaky_relu_backward(grad, z, 0.2, False) @ weight
        return grad


def _dropout_mask(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout's mask for CTGAN's rate of one half: 0 or 2 with equal odds, in
    ``like``'s shape and dtype (one draw op, no comparison or cast)."""
    return coin_draws(tuple(like.shape), generator, like.device, like.dtype, 1.0 / (1.0 - _DROPOUT))


# --- conditional vectors -------------------------------------------------------------------------
@dataclass(frozen=True)
class _DiscreteLayout:
    """Where each discrete column's slots sit in the conditional vector."""

    columns: list[str]
    cond_start: torch.Tensor  # (d,) long: block start in the conditional vector
    widths: list[int]
    cond_dim: int
    width_of: torch.Tensor  # (d,) long: each column's number of categories

    @classmethod
    def of(
        cls, encoder: NeuralTableEncoder, device: torch.device, *, conditional: bool = True
    ) -> _DiscreteLayout:
        """The layout of ``encoder``'s discrete blocks; empty for an unconditional (private) model."""
        widths = [b.width for b in encoder.discrete] if conditional else []
        cond_start = (
            np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64) if widths else []
        )
        return cls(
            columns=[b.column for b in encoder.discrete] if conditional else [],
            cond_start=torch.as_tensor(cond_start, dtype=torch.long, device=device),
            widths=widths,
            cond_dim=int(sum(widths)),
            width_of=torch.as_tensor(widths, dtype=torch.long, device=device),
        )


def _slot_probabilities(counts: np.ndarray, widths: list[int], *, log: bool) -> np.ndarray:
    """(d, max width) category probabilities per discrete column from row counts (zero padded).

    ``log``: CTGAN's log-frequency, ``log(count + 1)``, which draws rare categories more often.
    """
    table = np.zeros((len(widths), max(widths, default=1)), dtype=np.float64)
    start = 0
    for j, w in enumerate(widths):
        part = counts[start : start + w]
        part = np.log1p(part) if log else part
        table[j, :w] = part / max(part.sum(), 1e-300)
        start += w
    return table


def _draw_conditions(
    n: int, probs: torch.Tensor, layout: _DiscreteLayout, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(conditional vectors, chosen column, chosen cond slot): column uniform, category by probs."""
    device = probs.device
    cols = torch.randint(len(layout.widths), (n,), generator=generator, device=device)
    # inverse CDF (a category with probability 0 is never drawn): one uniform per row, a fraction
    # of torch.multinomial's cost
    u = torch.rand((n, 1), generator=generator, device=device, dtype=torch.float64)
    cats = torch.searchsorted(_cumulative(probs).index_select(0, cols), u, right=True).squeeze(1)
    cats = torch.minimum(cats, layout.width_of.index_select(0, cols) - 1)
    slots = layout.cond_start[cols] + cats
    return _one_hot(slots, layout.cond_dim), cols, slots


def _cumulative(probs: torch.Tensor) -> torch.Tensor:
    """Per-column cumulative probabilities in float64, ending at exactly 1 (padding stays at 1)."""
    cum = probs.to(torch.float64).cumsum(1)
    return cum / cum[:, -1:].clamp_min(1e-300)


def _one_hot(slots: torch.Tensor, width: int) -> torch.Tensor:
    out = torch.zeros(slots.shape[0], width, device=slots.device)
    return out.scatter_(1, slots.unsqueeze(1), 1.0)


# --- activations ---------------------------------------------------------------------------------
class _Activation:
    """tanh on alpha blocks; Gumbel softmax (tau 0.2) on one-hot blocks, or plain softmax.

    Vectorised over blocks: the one-hot slots gathered side by side
    (:class:`~synthkit.nn.blocks.OneHotBlocks`: block sums as one matrix product), one gather
    back into row order; no Python loop over columns.
    """

    def __init__(self, encoder: NeuralTableEncoder, device: torch.device) -> None:
        alpha = [p for b in encoder.blocks if b.kind == "alpha" for p in range(b.start, b.start + b.width)]
        softmax = [(b.start, b.width) for b in encoder.blocks if b.kind == "softmax"]
        self.width = encoder.width
        self.tau = _TAU
        self.alpha = torch.as_tensor(alpha, dtype=torch.long, device=device)
        self.blocks = OneHotBlocks([width for _, width in softmax], device)
        slots = [start + i for start, width in softmax for i in range(width)]
        self.slots = torch.as_tensor(slots, dtype=torch.long, device=device)
        covered = alpha + slots
        # where each encoded column sits in cat([tanh(alpha), block softmaxes])
        restore = np.empty(self.width, dtype=np.int64)
        restore[np.asarray(covered, dtype=np.int64)] = np.arange(len(covered))
        if len(covered) != self.width or len(set(covered)) != self.width:
            raise AssertionError("the encoded row's blocks must cover every column once")
        self.restore = torch.as_tensor(restore, dtype=torch.long, device=device)
        #: mode slots sampling never decodes into (``numerical="mode"``: modes of a few far
        #: outliers, NeuralTableEncoder.rare_mode_positions)
        rare = encoder.rare_mode_positions()
        self.rare = torch.as_tensor(rare, dtype=torch.long, device=device) if rare else None

    def __call__(self, raw: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """With Gumbel noise the argmax that decoding takes is a draw from the block's
        categorical distribution (the Gumbel-max trick), which sampling needs: a plain argmax
        would always pick each block's most likely slot and flatten the categories' frequencies.
        """
        return self.parts(raw, generator)[2]

    def parts(
        self, raw: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tanh of the alpha columns, softmax of the one-hot slots, the activated row in
        encoded order)``: the written-out generator step reads the first two back."""
        raw = raw.float()
        # the noise is drawn per encoded column, not per padded slot (fewer random numbers)
        noisy = (raw + _gumbel(raw, generator)) / self.tau if generator is not None else raw
        t = torch.tanh(raw.index_select(1, self.alpha))
        p = self.blocks.softmax(noisy.index_select(1, self.slots))
        return t, p, torch.cat([t, p], dim=1).index_select(1, self.restore)

    def decodable(self, raw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What decoding reads, for sampling: ``tanh`` on alpha values and Gumbel-perturbed
        logits on one-hot slots. A block's argmax is then the same categorical draw that the
        argmax of its tempered Gumbel softmax gives (softmax is monotonic), without the softmax.
        Rare modes (:attr:`rare`) are set to -inf, out of the argmax's reach."""
        raw = raw.float()
        out = raw + _gumbel(raw, generator)
        if self.rare is not None:
            out.index_fill_(1, self.rare, float("-inf"))
        return out.index_copy_(1, self.alpha, torch.tanh(raw.index_select(1, self.alpha)))


def _gumbel(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise shaped like ``like``, in its memory layout when that is the
    transpose of a contiguous matrix (the column-major outputs of a bf16 sampling pass), drawn
    by :func:`~synthkit.nn.draws.gumbel_draws` (16-bit inverse transform sampling on a CPU)."""
    if like.dim() == 2 and like.t().is_contiguous() and not like.is_contiguous():
        return _gumbel(like.t(), generator).t()
    return gumbel_draws(tuple(like.shape), generator, like.device)


# --- the training task ---------------------------------------------------------------------------
class _CTGANTask(TrainingTask):
    """WGAN-GP with training by sampling; draws conditioned real rows from its own matrix copy."""

    def __init__(
        self,
        config: CTGANConfig,
        encoder: NeuralTableEncoder,
        matrix: np.ndarray,
        generator_net: CTGANGeneratorNet,
        discriminator_net: CTGANDiscriminatorNet,
        device: torch.device,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.g = generator_net
        self.d = discriminator_net
        self.device = device
        self.private = config.dp is not None
        #: plain CPU steps written out (ctgan_critic, ctgan_generator_step); off for compiled
        #: networks, whose compiled forward only the autograd step calls
        self.written_steps = not config.compile
        # the networks as built (in a tuple, which a data-parallel trainer's swap of the task's
        # network attributes for DDP replicas leaves alone): replicas all-reduce their gradients
        # in autograd's backward pass, so a replicated step keeps autograd
        self._built = (generator_net, discriminator_net)
        self.activate = _Activation(encoder, device)
        self.opt_g = adam(
            self.g.parameters(),
            lr=config.generator_learning_rate,
            betas=(0.5, 0.9),
            weight_decay=config.generator_decay,
        )
        self.opt_d = adam(
            self.d.parameters(),
            lr=config.discriminator_learning_rate,
            betas=(0.5, 0.9),
            weight_decay=config.discriminator_decay,
        )
        self.layout = _DiscreteLayout.of(encoder, device, conditional=not self.private)
        if self.private:
            # a private GAN reads real rows only through the Trainer's Poisson batches and keeps
            # no statistics of them (no training by sampling, no coverage probe)
            return
        self.data = torch.as_tensor(matrix, dtype=torch.float32, device=device)
        counts = _slot_counts(matrix, encoder)
        self.train_probs = torch.as_tensor(
            _slot_probabilities(counts, self.layout.widths, log=config.log_frequency),
            dtype=torch.float32,
            device=device,
        )
        self.sample_probs = torch.as_tensor(
            _slot_probabilities(counts, self.layout.widths, log=False),
            dtype=torch.float32,
            device=device,
        )
        self.rows_by_slot, self.slot_start, self.slot_count = _rows_by_slot(matrix, encoder, device)
        # where each discrete column's block sits in the encoded row, for the condition loss
        self.data_start = torch.as_tensor([b.start for b in encoder.discrete], dtype=torch.long, device=device)
        self.cond_width = torch.as_tensor(self.layout.widths, dtype=torch.long, device=device)
        self.cond_offsets = torch.arange(max(self.layout.widths, default=1), device=device)
        self.coverage = _CoverageProbe(matrix, encoder)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.g, "discriminator": self.d}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    dp_row_losses = True  # the private critic step hands ctx.optimize its per-row losses

    def private_modules(self) -> tuple[list[str], list[str]]:
        """Only the discriminator sees real rows: DP-SGD privatises it; the generator learns
        from its (private) judgements alone."""
        return ["discriminator"], ["discriminator"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """``discriminator_steps`` critic updates, then one generator update.

        ``loss_d`` is the critic's full objective (Wasserstein estimate plus gradient penalty);
        ``loss_g`` the generator's (critic score plus the condition cross-entropy). The matrix
        products run in ``ctx.dtype`` (bf16 with ``train_precision="bfloat16"`` where it is
        fast), losses and activations in fp32.
        """
        if self.private:
            return self._private_step(batch, ctx)
        pac = self.config.pac
        n = pac * max(batch.shape[0] // pac, 2 if pac == 1 else 1)  # BatchNorm needs 2+ rows
        gen = ctx.generator
        dtype = ctx.dtype  # bf16 matrix products where they are fast, else fp32
        written = (self.written_steps and ctx.device.type == "cpu"
                   and self.g is self._built[0] and self.d is self._built[1])
        # the generator's cast weights serve its passes of both halves (it changes only at the end)
        with torch.set_grad_enabled(not written):
            g_weights = self.g.weights(dtype) if dtype != torch.float32 else None
        self.d.requires_grad_(True)
        for _ in range(self.config.discriminator_steps):
            with ctx.autocast():  # CUDA mixed precision when the step itself runs in fp32
                with torch.no_grad():
                    cond, _, slots = self._conditions(n, gen)
                    fake = self.activate(self.g(self._g_input(cond, gen, dtype), dtype, g_weights), gen)
                    fake_in = torch.cat([fake, cond], dim=1)
                    real_cond, real_slots = self._shuffled(cond, slots, gen)
                    real_in = torch.cat([self._real_rows(real_slots, n, gen), real_cond], dim=1)
                if written:
                    # the same gradients without autograd (:mod:`.ctgan_critic`)
                    loss_d = critic_step(
                        self.d, fake_in, real_in, lambda like: _dropout_mask(like, gen),
                        lambda packs: torch.rand(packs, 1, generator=gen, device=self.device),
                        _GP_LAMBDA, dtype,
                    )
                    adam_step(self.opt_d)
                    continue
                weights = self.d.weights(dtype)
                # one critic pass for both (it scores each pack on its own)
                score_fake, score_real = self.d(torch.cat([fake_in, real_in]), gen, weights).float().chunk(2)
                penalty = self._gradient_penalty(real_in, fake_in, gen, weights)
                loss_d = score_fake.mean() - score_real.mean() + penalty
            ctx.optimize(loss_d, self.opt_d)
        if written:  # the same gradients without autograd (:mod:`.ctgan_generator_step`)
            cond, cols, slots = self._conditions(n, gen)
            loss_g = generator_step(
                list(self.g.blocks), self.g.out, self.d, self._g_input(cond, gen, dtype), cond,
                self.activate, gen, lambda like: _dropout_mask(like, gen),
                self._condition_parts(cols, slots), dtype,
            )
            adam_step(self.opt_g)
            return {"loss_d": loss_d.detach(), "loss_g": loss_g}
        self.d.requires_grad_(False)
        with ctx.autocast():
            cond, cols, slots = self._conditions(n, gen)
            raw = self.g(self._g_input(cond, gen, dtype), dtype, g_weights)
            fake = self.activate(raw, gen)
            score = self.d(torch.cat([fake, cond], dim=1), gen, self.d.weights(dtype)).float()
            loss_g = -score.mean() + self._condition_loss(raw, cols, slots)
        ctx.optimize(loss_g, self.opt_g)
        self.d.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def _private_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One DP-SGD critic step on a Poisson batch of real rows, then one generator step.

        The critic is a plain (non-saturating) GAN discriminator: the WGAN gradient penalty
        needs a double backward pass that per-sample gradients cannot carry. Real and generated
        rows go through the critic in one pass, so every row's gradient is clipped alike.
        """
        gen = ctx.generator
        rows = batch.shape[0]
        assert ctx.private is not None
        # generated rows: the plan's expected batch, not this batch's size, so that no real row
        # changes more than its own term (the generator's BatchNorm needs 2+ rows)
        n = max(ctx.private.expected_batch, 2)
        with ctx.autocast():
            with torch.no_grad():
                fake = self.activate(self.g(self._g_input(self._no_condition(n), gen)), gen)
            scores = self.d(torch.cat([batch.to(fake.dtype), fake], dim=0), gen).float().view(-1)
        # per-row losses whose mean is mean(real) + mean(fake): DP-SGD clips each row's gradient
        total = rows + n
        row_losses = torch.cat([F.softplus(-scores[:rows]) * (total / rows),
                                F.softplus(scores[rows:]) * (total / n)])
        loss_d = row_losses.mean()
        ctx.optimize(loss_d, self.opt_d, rows=row_losses)
        self.d.requires_grad_(False)
        try:
            with ctx.outside_privacy(), ctx.autocast():
                fake = self.activate(self.g(self._g_input(self._no_condition(n), gen)), gen)
                loss_g = F.softplus(-self.d(fake, gen).float()).mean()
                ctx.optimize(loss_g, self.opt_g)
        finally:
            self.d.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def _no_condition(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 0, device=self.device)

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> dict[str, float | str]:
        """Mode-collapse monitor: coverage of frequent categories and modes in a fixed probe.

        It runs on at most ``_PROBES_PER_RUN`` evenly spaced epochs and always on the last one
        (every 10th epoch of 300): a probe costs about one training step, so probing every
        epoch would slow a 6-step epoch by a sixth.
        """
        if self.private:
            return {}  # the probe compares with real-row statistics, which a private run keeps none of
        every = -(-self.config.epochs // _PROBES_PER_RUN)
        if (epoch + 1) % every and epoch + 1 != self.config.epochs:
            return {}
        probe = torch.Generator(device=self.device).manual_seed(_PROBE_SEED)
        was_training = self.g.training
        self.g.eval()
        try:
            with torch.no_grad():
                cond, _, _ = self._conditions(_PROBE_ROWS, probe, probs=self.sample_probs)
                drawn = self.activate.decodable(self.g(self._g_input(cond, probe)), probe)
        finally:
            self.g.train(was_training)
        return self.coverage.measure(drawn)

    # --- pieces ---------------------------------------------------------------------------
    def _conditions(
        self, n: int, gen: torch.Generator, probs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if not self.layout.cond_dim:
            return torch.zeros(n, 0, device=self.device), None, None
        return _draw_conditions(n, self.train_probs if probs is None else probs, self.layout, gen)

    def _g_input(
        self, cond: torch.Tensor, gen: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Noise and conditional vector side by side, in ``dtype`` (the generator's products')."""
        z = normal_draws((cond.shape[0], self.config.embedding_dim), gen, self.device, dtype)
        return torch.cat([z, cond.to(dtype)], dim=1)

    def _shuffled(
        self, cond: torch.Tensor, slots: torch.Tensor | None, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same conditions in another order (CTGAN pairs real packs with permuted ones)."""
        if slots is None:
            return cond, None
        perm = torch.randperm(cond.shape[0], generator=gen, device=self.device)
        return cond[perm], slots[perm]

    def _real_rows(self, slots: torch.Tensor | None, n: int, gen: torch.Generator) -> torch.Tensor:
        """Real encoded rows: one of each slot's rows at random, or any rows without slots."""
        u = torch.rand(n, generator=gen, device=self.device)
        if slots is None:
            return self.data[(u * self.data.shape[0]).long().clamp_max(self.data.shape[0] - 1)]
        count = self.slot_count[slots]
        pick = self.slot_start[slots] + (u * count).long().clamp_max(count - 1)
        return self.data[self.rows_by_slot[pick].long()]

    def _gradient_penalty(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        gen: torch.Generator,
        weights: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """WGAN-GP on packed interpolates: one mixing weight per pack; the critic's input
        gradient comes from :meth:`CTGANDiscriminatorNet.input_gradient` (no double backward)."""
        packs = real.shape[0] // self.config.pac
        alpha = torch.rand(packs, 1, generator=gen, device=self.device)
        # alpha * real + (1 - alpha) * fake, pack by pack
        mixed = torch.lerp(fake.float().reshape(packs, -1), real.float().reshape(packs, -1), alpha)
        norm = self.d.input_gradient(mixed, gen, weights).float().norm(2, dim=1)
        return _GP_LAMBDA * ((norm - 1.0) ** 2).mean()

    def _condition_loss(
        self, raw: torch.Tensor, cols: torch.Tensor | None, slots: torch.Tensor | None
    ) -> torch.Tensor:
        """Cross-entropy between the generated logits of the conditioned column and its category.

        Vectorised over columns: each row's conditioned block is gathered into one padded
        ``(rows, widest discrete block)`` matrix (padding ``-inf``), so it is one cross-entropy.
        """
        parts = self._condition_parts(cols, slots)
        if parts is None:
            return raw.new_zeros((), dtype=torch.float32)
        index, padding, target = parts
        logits = raw.float().gather(1, index).masked_fill(padding, -torch.inf)
        return F.cross_entropy(logits, target)

    def _condition_parts(
        self, cols: torch.Tensor | None, slots: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Where each row's conditioned block sits in the raw output, padded to the widest
        block (``index``, ``padding``), and the named category within it (``target``)."""
        if cols is None or slots is None:
            return None
        width = self.cond_width[cols].unsqueeze(1)
        offsets = self.cond_offsets.unsqueeze(0)
        index = self.data_start[cols].unsqueeze(1) + offsets.clamp_max(width - 1)
        return index, (offsets >= width).expand_as(index), slots - self.layout.cond_start[cols]


def _slot_counts(matrix: np.ndarray, encoder: NeuralTableEncoder) -> np.ndarray:
    """Training rows of every discrete slot, in conditional-vector order."""
    parts = [
        matrix[:, b.start : b.start + b.width].sum(axis=0, dtype=np.float64)
        for b in encoder.discrete
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def _rows_by_slot(
    matrix: np.ndarray, encoder: NeuralTableEncoder, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row indices grouped by conditional slot: (rows, start of each slot, count of each slot)."""
    n = matrix.shape[0]
    keys, offset = [], 0
    for block in encoder.discrete:
        keys.append(offset + matrix[:, block.start : block.start + block.width].argmax(axis=1))
        offset += block.width
    if not keys:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty.int(), empty, empty
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    rows = (order % n).astype(np.int32)
    count = np.bincount(key, minlength=offset)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    as_long = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
    return torch.as_tensor(rows, device=device), as_long(start), as_long(count)


class _CoverageProbe:
    """Share of each column's frequent categories (and modes) that a generated probe covers."""

    def __init__(self, matrix: np.ndarray, encoder: NeuralTableEncoder) -> None:
        self.blocks = []
        for block in encoder.blocks:
            if block.role not in ("category", "mode"):
                continue
            part = matrix[:, block.start : block.start + block.width]
            share = np.bincount(part.argmax(axis=1), minlength=block.width) / max(
                matrix.shape[0], 1
            )
            frequent = share >= _FREQUENT_SHARE
            if frequent.any():
                self.blocks.append((block, frequent))

    def measure(self, raw: torch.Tensor) -> dict[str, float | str]:
        """Coverage means by role, and a warning naming the columns under half."""
        shares: list[float] = []
        for block, frequent in self.blocks:
            picks = raw[:, block.start : block.start + block.width].argmax(dim=1)
            seen = torch.bincount(picks, minlength=block.width).cpu().numpy() > 0
            shares.append(float(seen[frequent].mean()))
        out: dict[str, float | str] = {}
        for role, key in (("category", "coverage_categories"), ("mode", "coverage_modes")):
            vals = [s for (b, _), s in zip(self.blocks, shares, strict=True) if b.role == role]
            if vals:
                out[key] = round(float(np.mean(vals)), 4)
        low = [
            f"{b.column}{' (modes)' if b.role == 'mode' else ''} {s:.0%}"
            for (b, _), s in zip(self.blocks, shares, strict=True)
            if s < _LOW_COVERAGE
        ]
        if low:
            out["warning"] = (
                "possible mode collapse: a generated probe covers under half of the categories "
                f"or modes with at least 1% training share in: {', '.join(low)}"
            )
        return out


# --- the generator -------------------------------------------------------------------------------
class CTGANGenerator(Generator):
    """CTGAN: conditional WGAN-GP with PacGAN and training by sampling; can sample by category."""

    name = "tabular/ctgan"
    config_class = CTGANConfig
    config: CTGANConfig
    supports_resume = True
    supports_conditions = True

    # --- fit ---------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        cfg = self.config
        plan = None
        if cfg.dp is not None:
            encoder, matrix, plan = encode_private(df, schema, cfg, self.data_fingerprint_)
            trainer = make_trainer(cfg, "tabular/ctgan (private)", dp=plan.sgd)
        else:
            encoder, matrix = encode_table(df, schema, cfg, self.data_fingerprint_)
            trainer = make_trainer(cfg, "tabular/ctgan")
            if type(trainer) is Trainer:
                # an epoch is rows // batch_size full steps, as in SDV's CTGAN: a short last
                # batch would cost a whole step's generator work for a fraction of the rows.
                # (Not under data-parallel training, whose ranks must agree on their step count.)
                trainer.drop_last = True
        if cfg.spread_ties:
            encoder.spread_ties(df, matrix, seed=encoder_seed(cfg, self.data_fingerprint_))
        device = trainer.device
        cond_dim = sum(b.width for b in encoder.discrete) if plan is None else 0
        with seeded(cfg.seed):
            g = CTGANGeneratorNet(
                cfg.embedding_dim + cond_dim, cfg.generator_dim, encoder.width
            ).to(device)
            d = CTGANDiscriminatorNet(encoder.width + cond_dim, cfg.discriminator_dim, cfg.pac).to(
                device
            )
        task = _CTGANTask(cfg, encoder, matrix, g, d, device)
        result = trainer.fit(
            task, matrix, resume=resume,
            fingerprint=run_fingerprint(cfg, self.data_fingerprint_, encoder),
        )
        g.eval()
        self.encoder_ = encoder
        self.generator_net_ = g
        self.device_ = device
        self.conditional_ = plan is None
        self.cond_frequency_ = (
            _slot_counts(matrix, encoder) / matrix.shape[0] if plan is None else np.zeros(0)
        )
        training = result.to_dict()
        self.fit_report_["training"] = training
        if plan is not None:
            self.fit_report_["privacy"] = privacy_report(plan, result.privacy)
            self.condition_values_ = private_condition_values(encoder)
        self.fit_report_["ctgan"] = {
            "encoded_width": encoder.width,
            "conditional_width": cond_dim,
            "conditional_columns": [b.column for b in encoder.discrete],
        }
        last = result.history[-1] if result.history else {}
        if "warning" in last:  # earlier epochs' warnings stay in the history
            self.fit_report_["warnings"].append(f"tabular/ctgan, final epoch: {last['warning']}")

    # --- sample ------------------------------------------------------------------------------
    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        device = self.device_
        seed = int(rng.integers(2**63 - 1))
        layout = _DiscreteLayout.of(self.encoder_, device, conditional=self.conditional_)
        fixed = self._condition_slot(conditions, layout)
        probs = torch.as_tensor(
            _slot_probabilities(self.cond_frequency_, layout.widths, log=False),
            dtype=torch.float32,
            device=device,
        )
        net = self.generator_net_.eval()
        dtype = sampling_dtype(self.config.sample_precision, device)  # bf16 hidden layers where fast
        activate = _Activation(self.encoder_, device)

        def generate(m: int, gen: torch.Generator) -> torch.Tensor:
            if not layout.cond_dim:
                cond = torch.zeros(m, 0, device=device)
            elif fixed is not None:
                cond = _one_hot(torch.full((m,), fixed, dtype=torch.long, device=device), layout.cond_dim)
            else:
                cond, _, _ = _draw_conditions(m, probs, layout, gen)
            # the network's input built feature-major ([z; cond], features x rows): a bf16 pass
            # copies it into its transposed buffer contiguously instead of by a strided transpose
            emb = self.config.embedding_dim
            x_t = torch.empty(emb + cond.shape[1], m, device=device, dtype=dtype)
            x_t[:emb] = normal_draws((emb, m), gen, device, dtype)  # 16-bit inverse transform
            x_t[emb:] = cond.t()
            raw = net.forward_no_grad(x_t.t(), dtype, activate.alpha)
            return activate.decodable(raw, gen)

        with torch.no_grad():  # bounded memory for any n
            parts = [self.encoder_.inverse_transform(block, rng=rng)
                     for block in sample_chunks(n, device, generate, seed=seed,
                                                 width=self.encoder_.width)]
        if not parts:
            empty = np.zeros((0, self.encoder_.width), dtype=np.float32)
            return self.encoder_.inverse_transform(empty, rng=rng)
        return pl.concat(parts, how="vertical")

    def _condition_slot(
        self, conditions: Mapping[str, Any] | None, layout: _DiscreteLayout
    ) -> int | None:
        """Conditional-vector slot of the first condition on a discrete column, if any."""
        for column, value in (conditions or {}).items():
            if column in layout.columns:
                j = layout.columns.index(column)
                return int(layout.cond_start[j]) + int(self.encoder_.slot_of(column, value))
        return None

    # --- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        encoder_arrays, encoder_meta = save_encoder(self.encoder_)
        tensors = module_state({"generator": self.generator_net_})
        tensors.update(encoder_arrays)
        tensors["ctgan.cond_frequency"] = np.ascontiguousarray(
            self.cond_frequency_, dtype=np.float64
        )
        net = self.generator_net_
        meta = {
            "version": _STATE_VERSION,
            "embedding_dim": self.config.embedding_dim,
            "generator_dim": list(self.config.generator_dim),
            "input_dim": net.blocks[0].fc.in_features,
            "data_dim": net.out.out_features,
            "conditional": self.conditional_,
            "encoder": encoder_meta,
        }
        return tensors, {_STATE_FILE: meta}

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        meta = family_state(files, _STATE_FILE, _STATE_VERSION)
        self.encoder_ = load_encoder(tensors, meta["encoder"])
        self.device_ = resolve_device(self.config.device, fallback=True)
        net = CTGANGeneratorNet(meta["input_dim"], tuple(meta["generator_dim"]), meta["data_dim"])
        weights = {k: v for k, v in tensors.items() if k.startswith("generator.")}
        load_module_state({"generator": net}, weights)
        self.generator_net_ = net.to(self.device_).eval()
        self.cond_frequency_ = np.asarray(tensors["ctgan.cond_frequency"], dtype=np.float64)
        self.conditional_ = bool(meta.get("conditional", True))
