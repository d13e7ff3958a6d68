"""TVAE: a variational autoencoder over mode-specific normalised rows (Xu et al., 2019).

Rows are encoded by :class:`~synthkit.prepare.neural.NeuralTableEncoder`: every numerical or
datetime column becomes a scalar in [-1, 1] (an "alpha" block) plus one-hot blocks (its mode,
its null flag), every categorical or boolean column a one-hot block. An encoder network maps a
row to the mean and log-variance of a latent code; a decoder network maps a code back to the
row's width. The loss, as in the paper and SDV, is ``loss_factor`` times the reconstruction
(a Gaussian likelihood with a learned standard deviation per alpha value on ``tanh`` of the
output; cross-entropy per one-hot block) plus the KL divergence from the standard normal prior.

Sampling decodes standard normal codes: ``tanh`` plus the learned noise for alpha values, a
softmax per one-hot block (``inverse_transform`` takes its argmax). Training runs in the shared
:class:`~synthkit.nn.Trainer` (device, AMP, checkpoints and resume, early stopping); only what
sampling needs (the decoder, its sigmas and the table encoding) is saved.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field
from torch import nn

from synthkit.errors import DataError
from synthkit.generators.base import Generator
from synthkit.generators.neural import (
    NeuralConfig,
    adam,
    encode_private,
    encode_table,
    family_state,
    load_encoder,
    make_trainer,
    privacy_report,
    private_condition_values,
    run_fingerprint,
    save_encoder,
)
from synthkit.generators.tabular.tvae_step import TVAEStep
from synthkit.nn import (
    StepContext,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)
from synthkit.nn.blocks import OneHotBlocks
from synthkit.nn.chunks import sample_chunks
from synthkit.nn.draws import gumbel_draws, normal_draws
from synthkit.nn.graphs import CapturedStep
from synthkit.nn.optim import adam_step
from synthkit.nn.precision import mlp_no_grad, sampling_dtype
from synthkit.prepare.neural import OutputBlock
from synthkit.schema import Schema

_STATE_FILE = "tvae.json"
_STATE_VERSION = 1
_DECODER = "decoder"
#: Rows decoded at once when validating (sampling: nn.chunks.sample_chunk_rows): bounds memory.
_CHUNK_ROWS = 20_000
#: Range the learned standard deviations are clamped to after every step (as in TVAE).
_SIGMA_MIN, _SIGMA_MAX = 0.01, 1.0
_SIGMA_INIT = 0.1
#: Normal values drawn at once for written-out CPU steps' noise: four steps of 500 rows.
_NOISE_POOL = 4 * 500 * 128

PositiveInt = Annotated[int, Field(ge=1)]


class TVAEConfig(NeuralConfig):
    """Options of TVAE; the defaults are the paper's and SDV's."""

    embedding_dim: int = Field(128, ge=1, description="Size of the latent code.")
    compress_dims: tuple[PositiveInt, ...] = Field(
        (128, 128), description="Hidden layer sizes of the encoder network."
    )
    decompress_dims: tuple[PositiveInt, ...] = Field(
        (128, 128), description="Hidden layer sizes of the decoder network."
    )
    l2scale: float = Field(1e-5, ge=0.0, description="Adam weight decay.")
    loss_factor: float = Field(
        2.0, gt=0.0, description="Weight of the reconstruction loss against the KL term."
    )
    learning_rate: float = Field(1e-3, gt=0.0, description="Adam learning rate.")
    decoding: Literal["sample", "argmax"] = Field(
        "sample",
        description="How sampling turns the decoder's category and null-flag outputs into "
        "values: 'sample' (the default) draws each from the decoder's softmax, as the Gaussian "
        "noise already draws numbers within their mode; 'argmax' takes the most likely slot, as "
        "the TVAE paper and SDV do (it piles rows on each column's likeliest categories). "
        "Modes of numerical columns take the argmax either way (drawn independently per column "
        "they break correlations between numbers). SDMetrics quality over three seeds against "
        "argmax: wage 0.947 vs 0.866, credit_data 0.940 vs 0.926, mlc_churn 0.927 vs 0.851, "
        "diamonds 0.927 vs 0.921; sampling draws a uniform per category slot (about 0.8x the "
        "rows per second).",
    )
    train_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Matrix products of the hidden layers in training: 'auto' (the default) "
        "uses bf16 on a CPU where bf16 is fast (AMX tiles, AVX-512 BF16) and fp32 elsewhere (a "
        "CUDA GPU keeps its fp32 step under bf16 autocast); 'bfloat16' asks for it on any fast device, "
        "'float32' never. The output layer, losses, gradients handed to Adam and the weights "
        "stay fp32; never under dp. Over three seeds bf16 scored at least fp32's quality (wage "
        "0.876 vs 0.865, credit_data 0.930 vs 0.929, mlc_churn 0.851 vs 0.843) in about 0.9x "
        "its fit time.",
    )
    cuda_graphs: bool = Field(
        True,
        description="On a CUDA GPU, record the whole training step (forward, loss, backward, "
        "Adam) once per batch shape as a CUDA graph and replay it: at TVAE's small batches a "
        "step is a hundred tiny kernels whose launches, not their arithmetic, take the time. "
        "Plain runs only (not under dp or compile); a capture that fails falls back to eager "
        "steps with a warning. No effect on a CPU.",
    )


class TVAEEncoderNet(nn.Module):
    """Encoded row -> mean and log-variance of its latent code (Linear+ReLU stack, two heads)."""

    def __init__(self, data_dim: int, compress_dims: tuple[int, ...], embedding_dim: int) -> None:
        super().__init__()
        self.seq = _mlp(data_dim, compress_dims)
        hidden = compress_dims[-1] if compress_dims else data_dim
        self.mu = nn.Linear(hidden, embedding_dim)
        self.logvar = nn.Linear(hidden, embedding_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.seq(x)
        return self.mu(h), self.logvar(h)


class TVAEDecoderNet(nn.Module):
    """Latent code -> raw outputs of the row's width; ``sigma`` is each alpha value's learned noise."""

    def __init__(
        self, embedding_dim: int, decompress_dims: tuple[int, ...], data_dim: int, n_alpha: int
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        hidden = decompress_dims[-1] if decompress_dims else embedding_dim
        self.seq = nn.Sequential(*_mlp(embedding_dim, decompress_dims), nn.Linear(hidden, data_dim))
        self.sigma = nn.Parameter(torch.full((n_alpha,), _SIGMA_INIT))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.seq(z)


def _mlp(dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Linear+ReLU layers of the given sizes (none: the identity)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(dim, size), nn.ReLU()]
        dim = size
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class _Layout:
    """Where the alpha values and one-hot slots sit in an encoded row, as index tensors.

    Per-block log-sum-exp runs on the slots gathered side by side
    (:class:`~synthkit.nn.blocks.OneHotBlocks`): a few ops whatever the number of blocks.
    """

    width: int
    alpha: torch.Tensor  # (n_alpha,) positions of alpha values
    slots: torch.Tensor  # (n_slots,) every one-hot position, block by block
    slot_mask: torch.Tensor  # (width,) 1.0 at one-hot positions, 0.0 at alpha values
    blocks: OneHotBlocks
    n_blocks: int
    #: maximal runs of consecutive positions of the blocks sampling draws from (categories
    #: and null flags of two or more slots; not the modes of numbers), as (start, end) in the
    #: encoded row
    drawn_runs: tuple[tuple[int, int], ...] = ()
    #: positions of mode slots sampling never decodes into (modes of a few far outliers:
    #: NeuralTableEncoder.rare_mode_positions), in the encoded row
    rare: torch.Tensor | None = None

    @classmethod
    def of(
        cls, blocks: list[OutputBlock], width: int, device: torch.device,
        rare: Sequence[int] = (),
    ) -> _Layout:
        alpha = [p for b in blocks if b.kind == "alpha" for p in range(b.start, b.start + b.width)]
        softmax = [b for b in blocks if b.kind == "softmax"]
        slots = [p for b in softmax for p in range(b.start, b.start + b.width)]
        mask = torch.zeros(width, dtype=torch.float32)
        mask[slots] = 1.0
        return cls(
            width=width,
            alpha=torch.as_tensor(alpha, dtype=torch.long, device=device),
            slots=torch.as_tensor(slots, dtype=torch.long, device=device),
            slot_mask=mask.to(device),
            blocks=OneHotBlocks([b.width for b in softmax], device),
            n_blocks=len(softmax),
            drawn_runs=_runs([p for b in softmax if b.role != "mode" and b.width > 1
                              for p in range(b.start, b.start + b.width)]),
            rare=torch.as_tensor(list(rare), dtype=torch.long, device=device) if rare else None,
        )

    @classmethod
    def alpha_first(cls, blocks: list[OutputBlock], width: int, device: torch.device) -> tuple[np.ndarray, _Layout]:
        """The encoded row's columns reordered for training, alpha values first and one-hot
        slots after, block by block: ``(order, layout)``, where column ``j`` of the reordered
        row is column ``order[j]`` of the encoded one and ``layout`` describes the reordered row.

        Trained on reordered rows, the written-out step reads its targets and the output
        layer's rows as two contiguous ranges (no gather of the batch, of the output layer or of
        its gradient in every step); the decoder's output rows go back to the encoded order
        after training (:func:`_restore_row_order`)."""
        moved: list[OutputBlock] = []
        order: list[int] = []
        for kind in ("alpha", "softmax"):
            for b in blocks:
                if b.kind == kind:
                    moved.append(OutputBlock(b.column, b.kind, b.role, len(order), b.width))
                    order.extend(range(b.start, b.start + b.width))
        if sorted(order) != list(range(width)):  # pragma: no cover - encoder invariant
            raise ValueError("the encoded row's blocks do not tile its width")
        return np.asarray(order, dtype=np.int64), cls.of(moved, width, device)

    @property
    def n_alpha(self) -> int:
        return int(self.alpha.numel())

    @property
    def is_alpha_first(self) -> bool:
        """True when the alpha values are the row's first columns and the one-hot slots the
        rest, block by block (the layout :meth:`alpha_first` makes, which the written-out
        step needs)."""
        positions = torch.cat([self.alpha, self.slots]).cpu()
        return bool(torch.equal(positions, torch.arange(self.width)))

    def activate_(
        self, raw: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator,
        *, sample: bool = True,
    ) -> torch.Tensor:
        """``raw`` (rows × width) turned in place into what ``inverse_transform`` reads: a draw
        from the decoder's distribution of each row. Alpha values: tanh + standard normal noise ·
        sigma. Category and null-flag blocks: logits plus standard Gumbel noise, so decoding's
        argmax of a block is a draw from the block's softmax; with ``sample=False`` they stay as
        they are (argmax decoding, the paper's and SDV's). Mode blocks keep their argmax: a mode
        drawn for each numerical column independently breaks correlations between them (on
        diamonds x, y and z: column pair trends 0.91 -> 0.85); :attr:`rare` modes are set to
        -inf, out of the argmax's reach. Works
        feature-major: the rows of ``raw.t()`` are contiguous for a column-major ``raw`` (as the
        bf16 sampler returns)."""
        raw_t = raw.t()
        if self.rare is not None:
            raw_t.index_fill_(0, self.rare, float("-inf"))
        if self.n_alpha:
            noise = normal_draws((self.n_alpha, raw.shape[0]), generator, raw.device)
            alpha = raw_t.index_select(0, self.alpha).tanh_().addcmul_(noise, sigma[:, None])
            raw_t.index_copy_(0, self.alpha, alpha)
        if sample and self.drawn_runs:
            n_slots = sum(end - start for start, end in self.drawn_runs)
            gumbel = gumbel_draws((n_slots, raw.shape[0]), generator, raw.device)
            at = 0
            for start, end in self.drawn_runs:
                raw_t[start:end].add_(gumbel[at : at + end - start])
                at += end - start
        return raw


def _runs(positions: list[int]) -> tuple[tuple[int, int], ...]:
    """Ascending positions as maximal runs of consecutive ones, ``(start, end)`` each."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1])
    return tuple((a, b) for a, b in runs)


def tvae_losses(
    raw: torch.Tensor,
    target: torch.Tensor,
    sigma: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    layout: _Layout,
    loss_factor: float,
    *,
    per_row: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted reconstruction loss and KL divergence, both per row (TVAE's loss): their means
    over the batch, or (``per_row``) one value per row, as DP-SGD's ghost clipping needs.

    Alpha values: Gaussian negative log-likelihood of the target given ``tanh`` of the output
    and the learned ``sigma``; one-hot blocks: cross-entropy against the one-hot target.
    """
    rows = target.shape[0]
    if per_row:
        total = raw.new_zeros(rows)
        if layout.n_alpha:
            diff = target.index_select(1, layout.alpha) - torch.tanh(raw.index_select(1, layout.alpha))
            total = total + (diff.square() / (2.0 * sigma.square())).sum(1) + torch.log(sigma).sum()
        if layout.n_blocks:
            lse = layout.blocks.logsumexp(raw.index_select(1, layout.slots)).sum(1)
            total = total + lse - (raw * (target * layout.slot_mask)).sum(1)
        kl = -0.5 * torch.sum(1.0 + logvar - mu.square() - logvar.exp(), dim=1)
        return total * loss_factor, kl
    total = raw.new_zeros(())
    if layout.n_alpha:
        diff = target.index_select(1, layout.alpha) - torch.tanh(raw.index_select(1, layout.alpha))
        total = (
            total + (diff.square() / (2.0 * sigma.square())).sum() + torch.log(sigma).sum() * rows
        )
    if layout.n_blocks:
        # cross-entropy per block = logsumexp(block) - logit of the target slot (targets are one-hot)
        lse = layout.blocks.logsumexp(raw.index_select(1, layout.slots)).sum()
        total = total + lse - (raw * (target * layout.slot_mask)).sum()
    kl = -0.5 * torch.sum(1.0 + logvar - mu.square() - logvar.exp())
    return total * loss_factor / rows, kl / rows


class TVAETrainingTask(TrainingTask):
    """TVAE's model and loss for the shared Trainer: one Adam over encoder and decoder."""

    def __init__(
        self,
        encoder: TVAEEncoderNet,
        decoder: TVAEDecoderNet,
        layout: _Layout,
        *,
        learning_rate: float,
        l2scale: float,
        loss_factor: float,
        written_out: bool = True,
        cuda_graphs: bool = True,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.layout = layout
        self.loss_factor = loss_factor
        #: plain CPU steps written out (tvae_step) for rows laid out alpha values first; off
        #: for compiled networks, whose compiled forward only the autograd step calls
        self.use_written_out = written_out and layout.is_alpha_first
        params = list(encoder.parameters()) + list(decoder.parameters())
        self.optimizer = adam(params, lr=learning_rate, weight_decay=l2scale)
        self.written_step = TVAEStep(encoder, decoder, layout.n_alpha, layout.blocks, loss_factor)
        #: the CUDA step replayed from graphs (synthkit.nn.graphs); None where graphs are off
        self.captured_step = (CapturedStep(self._graph_body, [self.optimizer])
                              if cuda_graphs and written_out else None)
        self._amp = False  # bf16 autocast in the captured step (the Trainer's choice, per run)
        self._noise_pool: torch.Tensor | None = None
        self._noise_at = 0
        self._noise_epoch = -1

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, _DECODER: self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    dp_row_losses = True  # a private step hands ctx.optimize its per-row losses

    def private_modules(self) -> tuple[list[str], list[str]]:
        """Both networks see real rows (the encoder reads them, the decoder rebuilds them)."""
        return ["encoder", _DECODER], ["adam"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One step on a batch: reparameterised code, reconstruction + KL, sigma clamped.

        On a CPU a plain step runs written out (:mod:`.tvae_step`: the same gradients without
        an autograd graph, products in ``ctx.dtype``); private and CUDA steps use autograd, as
        do networks the Trainer wrapped (DDP replicas all-reduce their gradients in autograd's
        backward pass)."""
        plain = (self.encoder is self.written_step.encoder and self.decoder is self.written_step.decoder
                 and self.decoder.sigma.requires_grad)  # (frozen noise scales: private runs only)
        if ctx.private is None and ctx.device.type == "cpu" and plain and self.use_written_out:
            reconstruction, kl = self.written_step(batch, self._noise(batch.shape[0], ctx), ctx.dtype)
            adam_step(self.optimizer, self.written_step.flat)
            with torch.no_grad():
                self.decoder.sigma.clamp_(_SIGMA_MIN, _SIGMA_MAX)
            loss = reconstruction + kl
            return {"loss": loss, "reconstruction": reconstruction, "kl": kl}
        if (ctx.private is None and ctx.device.type == "cuda" and plain
                and self.captured_step is not None and self.captured_step.enabled):
            self._amp = ctx.amp
            losses = self.captured_step(batch, self._noise(batch.shape[0], ctx))
            return {"loss": losses[0], "reconstruction": losses[1], "kl": losses[2]}
        with ctx.autocast():
            mu, logvar = self.encoder(batch)
            eps = self._noise(batch.shape[0], ctx)
            raw = self.decoder(mu + eps * torch.exp(0.5 * logvar))
        if ctx.private is not None:  # per-row losses: DP-SGD clips each row's gradient
            recon_rows, kl_rows = self._losses(raw, batch, mu, logvar, per_row=True)
            rows = recon_rows + kl_rows
            reconstruction, kl, loss = recon_rows.mean(), kl_rows.mean(), rows.mean()
            ctx.optimize(loss, self.optimizer, rows=rows)
        else:
            reconstruction, kl = self._losses(raw, batch, mu, logvar)
            loss = reconstruction + kl
            ctx.optimize(loss, self.optimizer)
        with torch.no_grad():
            self.decoder.sigma.clamp_(_SIGMA_MIN, _SIGMA_MAX)
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    def _graph_body(self, batch: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The plain CUDA step as :class:`~synthkit.nn.graphs.CapturedStep` records it: the
        autograd step above with its noise handed in; returns (loss, reconstruction, kl)."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._amp, cache_enabled=False):
            mu, logvar = self.encoder(batch)
            raw = self.decoder(mu + eps * torch.exp(0.5 * logvar))
        reconstruction, kl = self._losses(raw, batch, mu, logvar)
        loss = reconstruction + kl
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.decoder.sigma.clamp_(_SIGMA_MIN, _SIGMA_MAX)
        return torch.stack([loss, reconstruction, kl]).detach()

    def _noise(self, rows: int, ctx: StepContext) -> torch.Tensor:
        """Standard normal reparameterisation noise for a step, ``(rows, code)``.

        On a CPU drawn :data:`_NOISE_POOL` values at a time by 16-bit inverse transform sampling
        (:func:`~synthkit.nn.draws.normal_draws`: a pool that large takes its random words from
        numpy's SFC64), a few steps' worth, where ``torch.randn`` took ~0.23 ms of a ~3 ms step
        filling each step's 500 × 128 values from the Mersenne twister. A pool is dropped when
        the epoch changes, so a run resumed from an epoch's checkpoint draws what the
        uninterrupted run drew."""
        code = self.encoder.mu.out_features
        if ctx.device.type != "cpu":  # (exact draws: CUDA's Philox generator is fast)
            return torch.randn((rows, code), generator=ctx.generator, device=ctx.device)
        need = rows * code
        pool = self._noise_pool
        if pool is None or self._noise_epoch != ctx.epoch or self._noise_at + need > pool.numel():
            pool = normal_draws((max(need, _NOISE_POOL),), ctx.generator, ctx.device)
            self._noise_pool, self._noise_at, self._noise_epoch = pool, 0, ctx.epoch
        eps = pool[self._noise_at : self._noise_at + need].view(rows, -1)
        self._noise_at += need
        return eps

    def validation_loss(self, data: torch.Tensor, ctx: StepContext) -> float | None:
        """Mean loss on held-out rows, decoded at the posterior mean so epochs compare fairly."""
        if data.shape[0] == 0:
            return None
        total = 0.0
        with torch.no_grad():
            for start in range(0, data.shape[0], _CHUNK_ROWS):
                chunk = data[start : start + _CHUNK_ROWS]
                with ctx.autocast():
                    mu, logvar = self.encoder(chunk)
                    raw = self.decoder(mu)
                reconstruction, kl = self._losses(raw, chunk, mu, logvar)
                total += float(reconstruction + kl) * chunk.shape[0]
        return total / data.shape[0]

    def _losses(
        self,
        raw: torch.Tensor,
        batch: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        *,
        per_row: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss in float32, whatever precision the forward pass ran in."""
        return tvae_losses(
            raw.float(),
            batch.float(),
            self.decoder.sigma.float(),
            mu.float(),
            logvar.float(),
            self.layout,
            self.loss_factor,
            per_row=per_row,
        )


#: How training reorders the encoded row, part of a checkpoint's fingerprint: a checkpoint
#: written under another order (before the reordering) is not resumed.
_TRAINING_ORDER = "rows: alpha values first, then one-hot slots"


def _restore_row_order(decoder: TVAEDecoderNet, order: np.ndarray) -> None:
    """Put the output layer's rows, trained in ``order`` (:meth:`_Layout.alpha_first`), back
    in the encoded row's order, which sampling and saved models use."""
    out = decoder.seq[-1]
    inverse = torch.as_tensor(np.argsort(order), device=out.weight.device)
    with torch.no_grad():
        out.weight.copy_(out.weight.index_select(0, inverse))
        out.bias.copy_(out.bias.index_select(0, inverse))


class TVAEGenerator(Generator):
    """TVAE (Xu et al., 2019): a variational autoencoder for mixed-type tables."""

    name = "tabular/tvae"
    config_class = TVAEConfig
    config: TVAEConfig
    supports_resume: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = False

    # --- fit ---------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool = False) -> None:
        """Encode the table, train both networks in the shared Trainer, keep what sampling needs."""
        cfg = self.config
        if df.width == 0:
            raise DataError(
                "TVAE has no column to learn: the table holds only ids, personal data or text.",
                hint="Keep at least one numerical, categorical, boolean or datetime column, "
                "or use tabular/copula, which fills such tables without training.",
            )
        plan = None
        if cfg.dp is not None:
            encoder, matrix, plan = encode_private(df, schema, cfg, self.data_fingerprint_)
            trainer = make_trainer(cfg, "tabular/tvae (private)", dp=plan.sgd)
        else:
            encoder, matrix = encode_table(df, schema, cfg, self.data_fingerprint_)
            trainer = make_trainer(cfg, "tabular/tvae")
        layout = _Layout.of(encoder.blocks, encoder.width, trainer.device,
                            encoder.rare_mode_positions())
        # both networks train on rows reordered alpha values first (see _Layout.alpha_first)
        order, train_layout = _Layout.alpha_first(encoder.blocks, encoder.width, trainer.device)
        matrix = np.ascontiguousarray(matrix[:, order])
        with seeded(cfg.seed):
            enc_net = TVAEEncoderNet(encoder.width, cfg.compress_dims, cfg.embedding_dim)
            dec_net = TVAEDecoderNet(
                cfg.embedding_dim, cfg.decompress_dims, encoder.width, layout.n_alpha
            )
        if plan is not None:
            # the noise scales are fixed in a private run: a parameter outside the per-sample
            # gradient hooks would be updated from unclipped, unnoised gradients
            dec_net.sigma.requires_grad_(False)
        task = TVAETrainingTask(
            enc_net.to(trainer.device),
            dec_net.to(trainer.device),
            train_layout,
            learning_rate=cfg.learning_rate,
            l2scale=cfg.l2scale,
            loss_factor=cfg.loss_factor,
            written_out=not cfg.compile,
            cuda_graphs=cfg.cuda_graphs,
        )
        result = trainer.fit(
            task, matrix, resume=resume,
            fingerprint=run_fingerprint(cfg, self.data_fingerprint_, encoder, _TRAINING_ORDER),
        )
        _restore_row_order(dec_net, order)
        self.encoder_ = encoder
        self.decoder_ = dec_net.eval()
        self.layout_ = layout
        self.device_ = trainer.device
        self.fit_report_["training"] = result.to_dict()
        self.fit_report_.setdefault("warnings", []).extend(result.warnings)
        if plan is not None:
            self.fit_report_["privacy"] = privacy_report(plan, result.privacy)
            self.condition_values_ = private_condition_values(encoder)
        step, captured = task.written_step, task.captured_step
        self.fit_report_["tvae"] = {
            "data_width": encoder.width,
            "parameters": sum(p.numel() for p in (*enc_net.parameters(), *dec_net.parameters())),
            # how the last training step ran: compiled on this machine (synthkit.nn.native),
            # written out in Python, replayed from a CUDA graph, or through autograd (private,
            # compiled networks, CUDA without graphs)
            "training_step": ("native" if step.ran_native else "written-out" if step.ran
                              else "cuda-graph" if captured is not None and captured.captured
                              else "autograd"),
        }
        if captured is not None and captured.failure is not None:
            self.fit_report_["tvae"]["cuda_graph_failure"] = captured.failure

    # --- sample ------------------------------------------------------------------------------
    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        """Decode standard normal codes, in chunks; conditions are left to the base's filter."""
        device = self.device_
        seed = int(rng.integers(2**63 - 1))
        sigma = self.decoder_.sigma.detach()
        dim = self.decoder_.embedding_dim
        dtype = sampling_dtype(self.config.sample_precision, device)  # bf16 hidden layers where fast
        sample = self.config.decoding == "sample"
        # the decoder's weights cast once per call, not once per pass
        decoder = copy.deepcopy(self.decoder_.seq).to(dtype) if dtype != torch.float32 else self.decoder_.seq

        def generate(m: int, gen: torch.Generator) -> torch.Tensor:
            z = normal_draws((m, dim), gen, device, dtype)  # 16-bit inverse transform (nn.draws)
            # every output column in ``dtype`` (no fp32 pass for alpha values, as CTGAN needs):
            # the noise activate_ adds to alpha values (sigma >= 0.01) is three times the
            # widest step of bf16's grid after tanh (r·sech²(r)·2⁻⁷ <= 0.0035), which smooths
            # the grid away (ripple ~exp(-2π²σ²/step²)); the shift is at most half a step.
            # Left in ``dtype``: sample_chunks widens it while copying it into its block.
            return mlp_no_grad(decoder, z, dtype, widen=False)

        def finish(raw: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            return self.layout_.activate_(raw, sigma, gen, sample=sample)

        with torch.no_grad():  # bounded memory for any n
            frames = [self.encoder_.inverse_transform(block, rng=rng)
                      for block in sample_chunks(n, device, generate, finish, seed=seed,
                                                  width=self.encoder_.width)]
        return pl.concat(frames, how="vertical")

    # --- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Decoder weights and sigmas, the table encoding's arrays ("encoder."), tvae.json."""
        tensors = module_state({_DECODER: self.decoder_})
        encoder_arrays, enc_meta = save_encoder(self.encoder_)
        tensors.update(encoder_arrays)
        cfg = self.config
        state = {
            "version": _STATE_VERSION,
            "data_width": self.encoder_.width,
            "embedding_dim": cfg.embedding_dim,
            "decompress_dims": list(cfg.decompress_dims),
            "n_alpha": self.layout_.n_alpha,
            "encoder": enc_meta,
        }
        return tensors, {_STATE_FILE: state}

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        """Rebuild the table encoding and the decoder (on ``config.device``) from ``_state``."""
        state = family_state(files, _STATE_FILE, _STATE_VERSION)
        self.encoder_ = load_encoder(tensors, state["encoder"])
        self.device_ = resolve_device(self.config.device, fallback=True)
        decoder = TVAEDecoderNet(
            int(state["embedding_dim"]),
            tuple(int(d) for d in state["decompress_dims"]),
            int(state["data_width"]),
            int(state["n_alpha"]),
        )
        load_module_state(
            {_DECODER: decoder},
            {k: v for k, v in tensors.items() if k.startswith(_DECODER + ".")},
        )
        self.decoder_ = decoder.to(self.device_).eval()
        self.layout_ = _Layout.of(self.encoder_.blocks, self.encoder_.width, self.device_,
                                  self.encoder_.rare_mode_positions())
