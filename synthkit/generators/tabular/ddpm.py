"""TabDDPM-style diffusion (Kotelnikov et al., 2023): Gaussian diffusion for numbers, multinomial
diffusion for categories, one MLP denoiser for both.

* Encoding: :class:`~synthkit.prepare.neural.NeuralTableEncoder`, by default with the quantile
  option (each numerical or datetime column a normal score, TabDDPM's choice) and one-hot
  categories; ``numerical="mode"`` uses CTGAN's mode-specific normalisation instead (its mode
  one-hot then diffuses as one more categorical variable). Null flags diffuse as categories too.
  Repeated values (years, ages, counts) are spread uniformly over their stretch of the quantile
  scale for training (dequantisation), so the Gaussian part learns a smooth density, and every
  point of a stretch still decodes to its value.
* Model, schedule and sampler are separate objects from :mod:`synthkit.nn.diffusion`: a
  :class:`~synthkit.nn.diffusion.DenoiserNet` predicts the Gaussian noise of the numerical values
  and the logits of the clean categories; a :class:`~synthkit.nn.diffusion.GaussianSchedule` and a
  :class:`~synthkit.nn.diffusion.MultinomialSchedule` share one beta schedule (cosine, 100
  timesteps by default); sampling runs :class:`~synthkit.nn.diffusion.AncestralSampler`
  (``sampler="ddpm"``, the default: every timestep, the best samples),
  :class:`~synthkit.nn.diffusion.DDIMSampler` (``sampler="ddim"``: ``sampling_steps`` strided
  steps, the fast sampler) or :class:`~synthkit.nn.diffusion.DPMSolverSampler` (``"dpm"``).
  :meth:`DDPMGenerator.with_sampler` swaps the sampler of a fitted model without retraining.
* Loss, per row: mean squared error of the predicted noise plus the multinomial variational-bound
  term (and ``x0_loss_weight`` times the cross-entropy of the predicted clean categories, D3PM's
  hybrid loss) averaged over categorical blocks; timesteps uniform. AdamW with a linearly decaying
  learning rate, and an exponential moving average of the weights (what is saved and sampled).
* Training length: ``epochs=None`` (the default) trains for ``train_steps`` optimisation steps
  whatever the table's size, as TabDDPM does; an explicit ``epochs`` overrides it.
* Conditions: with ``condition_share > 0`` a share of training rows shows the denoiser a random
  subset of its categorical values (a conditioning input, zero when nothing is shown), so the
  model learns every "these columns are known" conditional as well as the unconditional
  distribution. Sampling with ``conditions`` feeds the asked values to that input and keeps them
  in the chain (replaced by a forward-process draw after every step, the values at the end), so
  every row meets the conditions at the cost of an unconditional sample, however rare the value.

The denoiser uses only Linear, ReLU/SiLU, Dropout (and optionally LayerNorm) layers; the loss is
computed per row, so Opacus' per-sample gradients apply to it: ``dp={"epsilon": ...}`` trains it
with DP-SGD (private quantile encoding, Poisson batches, per-row clipping and noise, Opacus'
accountant), and the weight average, computed from privatised updates, stays covered.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field

from synthkit.errors import DataError
from synthkit.generators.base import Generator
from synthkit.generators.neural import (
    NeuralConfig,
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
from synthkit.nn import (
    StepContext,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)
from synthkit.nn.diffusion import (
    AncestralSampler,
    DDIMSampler,
    DenoiserNet,
    DiffusionSampler,
    DPMSolverSampler,
    GaussianSchedule,
    KnownValues,
    MultinomialSchedule,
    OneHotBlocks,
)
from synthkit.prepare.modes import ALPHA_LIMIT, SPREAD, QuantileNormalizer
from synthkit.prepare.neural import OTHER, NeuralTableEncoder
from synthkit.schema import Schema

_STATE_FILE = "ddpm.json"
_STATE_VERSION = 1
_NET = "denoiser"
_EMA = "ema"
#: Rows denoised at once when sampling or validating: bounds memory for any n ...
_CHUNK_ROWS = 20_000
#: ... and fewer for wide tables, so a chunk's widest tensors hold about this many values.
_CHUNK_VALUES = 16_000_000
#: Seed of the fixed noise the validation loss is computed with (epochs compare fairly).
_VALIDATION_SEED = 20_231_101
#: Categorical columns wider than this (near-unique labels) stay out of the conditioning input,
#: which would otherwise dominate the denoiser's cost; conditions on them are still met exactly
#: (imposed in the chain), only not learned as a conditional.
_MAX_CONDITION_WIDTH = 128
#: Share of a revealed row's categorical columns that are shown (each independently).
_REVEAL_PROBABILITY = 0.5
#: Config fields that change how a fitted model samples or how long it trains, not what a
#: checkpoint holds: a resumed run may change them.
_SAMPLING_FIELDS = ("sampler", "sampling_steps", "eta", "spacing", "train_steps")

PositiveInt = Annotated[int, Field(ge=1)]


class DDPMConfig(NeuralConfig):
    """Options of tabular/ddpm: TabDDPM's design, with defaults tuned on the benchmark tables and
    sized so that a CPU trains and samples in reasonable time."""

    epochs: int | None = Field(  # type: ignore[assignment]
        None,
        ge=1,
        description="Passes over the training rows; None trains for train_steps optimisation "
        "steps whatever the table's size.",
    )
    train_steps: int = Field(
        8_000, ge=1, description="Optimisation steps when epochs is None (TabDDPM counts steps)."
    )
    batch_size: int = Field(1024, ge=1, description="Rows per optimisation step.")
    numerical: Literal["mode", "quantile"] = Field(
        "quantile",
        description="Numerical encoding: a quantile (normal-score) transform, TabDDPM's, or "
        "mode-specific normalisation (its mode then diffuses as a category).",
    )
    discrete_numerical: int = Field(
        0,
        ge=0,
        description="Numerical columns with at most this many distinct values are diffused as "
        "categories (one per value); 0 (the default, as benchmarked) keeps them numerical.",
    )
    hidden_dims: tuple[PositiveInt, ...] = Field(
        (256, 256, 256), description="Hidden layer sizes of the denoiser MLP."
    )
    time_embedding_dim: int = Field(
        128, ge=2, description="Width of the timestep embedding and of the input projection."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    layer_norm: bool = Field(False, description="LayerNorm in each hidden layer.")
    activation: Literal["relu", "silu"] = Field(
        "relu", description="Activation of the hidden layers (ReLU: TabDDPM's, fastest on a CPU)."
    )
    timesteps: int = Field(
        100,
        ge=2,
        description="Diffusion timesteps of the noise schedule (TabDDPM uses 1,000; 100 trains "
        "each step more often and scored higher on the benchmark tables).",
    )
    schedule: Literal["cosine", "linear"] = Field(
        "cosine", description="Beta schedule shared by the Gaussian and multinomial parts."
    )
    x0_loss_weight: float = Field(
        0.01,
        ge=0.0,
        description="Weight of an extra cross-entropy of the predicted clean categories (D3PM's "
        "hybrid loss), which strengthens the categorical signal; 0 keeps TabDDPM's variational "
        "bound alone.",
    )
    learning_rate: float = Field(1e-3, gt=0.0, description="AdamW learning rate at the start.")
    weight_decay: float = Field(1e-5, ge=0.0, description="AdamW weight decay.")
    lr_schedule: Literal["linear", "constant"] = Field(
        "linear", description="'linear' decays the learning rate to 0 over the run (TabDDPM)."
    )
    ema_decay: float | None = Field(
        0.999,
        ge=0.0,
        lt=1.0,
        description="Decay of the moving average of the weights that is saved and sampled; "
        "None keeps the last weights.",
    )
    condition_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Share of training rows that show the denoiser some of their categorical "
        "values, so that conditional sampling is learned; 0 turns the conditioning input off.",
    )
    sampler: Literal["ddpm", "ddim", "dpm"] = Field(
        "ddpm",
        description="'ddpm': the ancestral chain over every timestep (the best samples); "
        "'ddim': sampling_steps strided DDIM steps (the fast sampler); 'dpm': DPM-Solver++(2M), "
        "second-order strided steps.",
    )
    sampling_steps: int = Field(
        20, ge=1, description="Denoiser evaluations per sample of the 'ddim' and 'dpm' samplers."
    )
    eta: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Noise of the DDIM steps: 1 (DDPM-like) keeps rare extremes rare; 0 "
        "(deterministic) piles some rows onto the extremes of long-tailed columns.",
    )
    spacing: Literal["uniform", "quadratic"] = Field(
        "uniform",
        description="Where the strided samplers' steps fall: evenly in time, or denser near "
        "the data.",
    )
    clip_denoised: bool = Field(
        True, description="Clip predicted clean numerical values to the encoded range."
    )


# --- layout ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Where the encoded table's parts go in the diffusion's ``[numerical | categorical]`` rows."""

    width: int  # the encoder's width
    num_pos: np.ndarray  # encoder positions of the Gaussian values
    cat_pos: np.ndarray  # encoder positions of every one-hot slot, block by block (by width)
    widths: list[int]  # one-hot block widths
    columns: list[str]  # column of each one-hot block
    category_blocks: list[int]  # blocks of categorical and boolean columns: conditions fix them
    cond_blocks: list[int]  # those of the conditioning input (all but very wide ones)
    scale: float  # encoded value -> unit-scale Gaussian feature

    @classmethod
    def of(cls, encoder: NeuralTableEncoder) -> _Layout:
        num = [b.start for b in encoder.blocks if b.kind == "alpha"]
        # blocks sorted by width: equal widths sit together and are processed as one tensor
        soft = sorted((b for b in encoder.blocks if b.kind == "softmax"), key=lambda b: b.width)
        scale = QuantileNormalizer.Z_SCALE if encoder.numerical == "quantile" else SPREAD
        return cls(
            width=encoder.width,
            num_pos=np.asarray(num, dtype=np.int64),
            cat_pos=np.asarray([p for b in soft for p in range(b.start, b.start + b.width)],
                               dtype=np.int64),
            widths=[b.width for b in soft],
            columns=[b.column for b in soft],
            category_blocks=[i for i, b in enumerate(soft) if b.role == "category"],
            cond_blocks=[
                i for i, b in enumerate(soft)
                if b.role == "category" and b.width <= _MAX_CONDITION_WIDTH
            ],
            scale=float(scale),
        )

    @property
    def n_num(self) -> int:
        return int(self.num_pos.size)

    @property
    def n_slots(self) -> int:
        return int(self.cat_pos.size)

    @property
    def starts(self) -> list[int]:
        return [int(s) for s in np.cumsum([0, *self.widths])[:-1]]

    @property
    def cond_slots(self) -> np.ndarray:
        """Positions, inside the categorical part, of the slots of conditionable blocks."""
        starts = self.starts
        return np.asarray(
            [starts[j] + k for j in self.cond_blocks for k in range(self.widths[j])], dtype=np.int64
        )

    @property
    def cond_dim(self) -> int:
        return int(self.cond_slots.size)

    @property
    def clip(self) -> float:
        """Largest magnitude of a training value on the Gaussian scale."""
        return ALPHA_LIMIT * self.scale

    def to_diffusion(self, matrix: np.ndarray) -> np.ndarray:
        """Encoded rows -> ``[numerical * scale | one-hot slots]`` float32 rows."""
        return np.ascontiguousarray(
            np.concatenate([matrix[:, self.num_pos] * self.scale, matrix[:, self.cat_pos]], axis=1),
            dtype=np.float32,
        )

    def to_encoded(self, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
        """Diffusion output back in the encoder's layout (what ``inverse_transform`` reads)."""
        out = np.zeros((x_num.shape[0], self.width), dtype=np.float32)
        out[:, self.num_pos] = x_num / self.scale
        out[:, self.cat_pos] = x_cat
        return out


class _Reveal:
    """Index tensors that pick a random subset of conditionable blocks and build the cond input."""

    def __init__(self, layout: _Layout, device: torch.device) -> None:
        self.n_blocks = len(layout.widths)
        self.blocks = torch.as_tensor(layout.cond_blocks, dtype=torch.long, device=device)
        self.slots = torch.as_tensor(layout.cond_slots, dtype=torch.long, device=device)
        owner = [i for i, j in enumerate(layout.cond_blocks) for _ in range(layout.widths[j])]
        self.block_of_slot = torch.as_tensor(owner, dtype=torch.long, device=device)

    def draw(
        self, x_cat: torch.Tensor, share: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond input, revealed mask over every categorical block) for a batch."""
        rows, device = x_cat.shape[0], x_cat.device
        chosen = torch.rand((rows, 1), generator=generator, device=device) < share
        shown = (torch.rand((rows, self.blocks.numel()), generator=generator, device=device)
                 < _REVEAL_PROBABILITY) & chosen
        cond = x_cat[:, self.slots] * shown[:, self.block_of_slot].to(x_cat.dtype)
        revealed = torch.zeros((rows, self.n_blocks), dtype=torch.bool, device=device)
        revealed[:, self.blocks] = shown
        return cond, revealed


# --- training ----------------------------------------------------------------------------------
class DDPMTrainingTask(TrainingTask):
    """TabDDPM's model and loss for the shared Trainer: AdamW, linear decay, weight EMA."""

    def __init__(
        self,
        net: DenoiserNet,
        ema: DenoiserNet | None,
        layout: _Layout,
        gaussian: GaussianSchedule,
        multinomial: MultinomialSchedule,
        *,
        learning_rate: float,
        weight_decay: float,
        lr_schedule: str,
        total_steps: int,
        ema_decay: float | None,
        condition_share: float,
        x0_loss_weight: float = 0.0,
    ) -> None:
        self.net = net
        self.ema = ema
        self.layout = layout
        self.gaussian = gaussian
        self.multinomial = multinomial
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.total_steps = max(int(total_steps), 1)
        self.ema_decay = ema_decay
        self.x0_loss_weight = x0_loss_weight
        self.condition_share = condition_share if layout.cond_dim else 0.0
        self.reveal = _Reveal(layout, gaussian.device)
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=learning_rate, weight_decay=weight_decay
        )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {_NET: self.net, **({_EMA: self.ema} if self.ema is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    dp_row_losses = True  # train_step hands ctx.optimize its per-row losses

    def private_modules(self) -> tuple[list[str], list[str]]:
        """The denoiser is the one network that sees real rows; the moving average of its
        weights is computed from the privatised updates (post-processing)."""
        return [_NET], ["adamw"]

    @property
    def sampling_net(self) -> DenoiserNet:
        """The weights that are saved and sampled: the moving average when there is one."""
        return self.ema if self.ema is not None else self.net

    def row_losses(
        self,
        net: DenoiserNet,
        batch: torch.Tensor,
        generator: torch.Generator,
        ctx: StepContext,
        *,
        reveal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian and multinomial loss of every row, ``(rows,)`` each, in float32."""
        lay = self.layout
        rows, device = batch.shape[0], batch.device
        x_num, x_cat = batch[:, : lay.n_num], batch[:, lay.n_num :]
        t = torch.randint(0, self.gaussian.timesteps, (rows,), generator=generator, device=device)
        noise = torch.randn(x_num.shape, generator=generator, device=device)
        uniform = torch.rand((rows, len(lay.widths)), generator=generator, device=device)
        x_num_t = self.gaussian.q_sample(x_num, t, noise)
        x_cat_t = self.multinomial.q_sample(x_cat, t, uniform) if lay.n_slots else x_cat
        cond, revealed = None, None
        if reveal and self.condition_share > 0:
            cond, revealed = self.reveal.draw(x_cat, self.condition_share, generator)
        with ctx.autocast():
            out = net(torch.cat([x_num_t, x_cat_t], dim=1), t, cond).float()
        gaussian = (
            (out[:, : lay.n_num] - noise).square().mean(dim=1)
            if lay.n_num else out.new_zeros(rows)
        )
        multinomial = out.new_zeros(rows)
        if lay.n_slots:
            logits = out[:, lay.n_num :]
            log_x0 = self.multinomial.blocks.log_softmax(logits)
            per_block = self.multinomial.loss(x_cat, x_cat_t, t, logits, log_x0=log_x0)
            if self.x0_loss_weight > 0:
                per_block = per_block + self.x0_loss_weight * self.multinomial.nll(x_cat, log_x0)
            if revealed is not None:  # shown values are given, not predicted
                per_block = per_block.masked_fill(revealed, 0.0)
            multinomial = per_block.sum(dim=1) / len(lay.widths)
        return gaussian, multinomial

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One step: noise a batch at random timesteps, predict, AdamW, then update the EMA."""
        if self.lr_schedule == "linear":
            share_left = max(0.0, 1.0 - ctx.step / self.total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate * share_left
        gaussian, multinomial = self.row_losses(self.net, batch, ctx.generator, ctx, reveal=True)
        rows = gaussian + multinomial
        loss = rows.mean()
        ctx.optimize(loss, self.optimizer, rows=rows)
        self._update_ema(ctx.step)
        return {
            "loss": loss.detach(),
            "gaussian": gaussian.mean().detach(),
            "multinomial": multinomial.mean().detach(),
        }

    def _update_ema(self, step: int) -> None:
        if self.ema is None or self.ema_decay is None:
            return
        decay = min(self.ema_decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for avg, live in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                avg.lerp_(live.detach(), 1.0 - decay)

    def validation_loss(self, data: torch.Tensor, ctx: StepContext) -> float | None:
        """Mean loss of the sampled weights on held-out rows, with fixed noise each epoch."""
        if data.shape[0] == 0:
            return None
        generator = torch.Generator(device=data.device).manual_seed(_VALIDATION_SEED)
        total = 0.0
        with torch.no_grad():
            for start in range(0, data.shape[0], _CHUNK_ROWS):
                chunk = data[start : start + _CHUNK_ROWS]
                g, m = self.row_losses(self.sampling_net, chunk, generator, ctx, reveal=False)
                total += float((g + m).sum())
        return total / data.shape[0]


# --- the generator -----------------------------------------------------------------------------
class DDPMGenerator(Generator):
    """TabDDPM-style diffusion: Gaussian for numbers, multinomial for categories; conditional."""

    name = "tabular/ddpm"
    config_class = DDPMConfig
    config: DDPMConfig
    supports_resume: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = True

    # --- fit ---------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        """Encode the table, train the denoiser in the shared Trainer, keep what sampling needs."""
        cfg = self.config
        if df.width == 0:
            raise DataError(
                "tabular/ddpm has no column to learn: the table holds only ids, personal data "
                "or text.",
                hint="Keep at least one numerical, categorical, boolean or datetime column, "
                "or use tabular/copula, which fills such tables without training.",
            )
        plan = None
        if cfg.dp is not None:
            encoder, matrix, plan = encode_private(df, schema, cfg, self.data_fingerprint_)
        else:
            encoder, matrix = encode_table(df, schema, cfg, self.data_fingerprint_)
        # repeated values spread over their stretch of the quantile scale (dequantisation)
        encoder.spread_ties(df, matrix, seed=encoder_seed(cfg, self.data_fingerprint_))
        layout = _Layout.of(encoder)
        data = layout.to_diffusion(matrix)
        n_train = data.shape[0] - int(round(data.shape[0] * cfg.validation_fraction))
        if plan is not None:  # Poisson batches: the accountant's steps per epoch
            per_epoch = max(1, round(n_train / min(cfg.batch_size, n_train)))
        else:
            per_epoch = math.ceil(max(n_train, 1) / cfg.batch_size)
        epochs = cfg.epochs if cfg.epochs is not None else math.ceil(cfg.train_steps / per_epoch)
        trainer = make_trainer(
            cfg.model_copy(update={"epochs": epochs}),
            "tabular/ddpm" + (" (private)" if plan is not None else ""),
            dp=plan.sgd if plan is not None else None,
        )
        device = trainer.device
        gaussian, multinomial = _schedules(cfg, layout, device)
        with seeded(cfg.seed):
            net = _net(cfg, layout).to(device)
        ema = copy.deepcopy(net).requires_grad_(False) if cfg.ema_decay is not None else None
        task = DDPMTrainingTask(
            net,
            ema,
            layout,
            gaussian,
            multinomial,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            lr_schedule=cfg.lr_schedule,
            total_steps=epochs * per_epoch,
            ema_decay=cfg.ema_decay,
            condition_share=cfg.condition_share,
            x0_loss_weight=cfg.x0_loss_weight,
        )
        fingerprint_cfg = cfg.model_copy(
            update={k: DDPMConfig.model_fields[k].default for k in _SAMPLING_FIELDS}
        )
        result = trainer.fit(
            task, data, resume=resume,
            fingerprint=run_fingerprint(fingerprint_cfg, self.data_fingerprint_, encoder),
        )
        self.encoder_ = encoder
        self.net_ = task.sampling_net.eval()
        self.layout_ = layout
        self.device_ = device
        self.gaussian_, self.multinomial_ = gaussian, multinomial
        self.fit_report_["training"] = result.to_dict()
        self.fit_report_.setdefault("warnings", []).extend(result.warnings)
        if plan is not None:
            self.fit_report_["privacy"] = privacy_report(plan, result.privacy)
            self.condition_values_ = private_condition_values(encoder)
        self.fit_report_["ddpm"] = {
            "encoded_width": encoder.width,
            "numerical_features": layout.n_num,
            "categorical_slots": layout.n_slots,
            "conditioning_width": net.cond_dim,
            "parameters": sum(p.numel() for p in net.parameters()),
            "epochs": epochs,
            "steps": result.epochs_run * per_epoch,
        }

    # --- sample ------------------------------------------------------------------------------
    def with_sampler(
        self,
        sampler: Literal["ddpm", "ddim", "dpm"] | None = None,
        *,
        sampling_steps: int | None = None,
        eta: float | None = None,
        spacing: Literal["uniform", "quadratic"] | None = None,
    ) -> DDPMGenerator:
        """The same fitted model with another sampler (no retraining; the weights are shared)."""
        self._check_fitted()
        asked = {"sampler": sampler, "sampling_steps": sampling_steps, "eta": eta,
                 "spacing": spacing}
        changes = {k: v for k, v in asked.items() if v is not None}
        other = copy.copy(self)
        other.config = type(self)(**{**self.config.model_dump(), **changes}).config
        return other

    def diffusion_sampler(self) -> DiffusionSampler:
        """The sampler object the config names (a new one: samplers hold no state)."""
        cfg = self.config
        if cfg.sampler == "ddpm":
            return AncestralSampler(variance="small")
        if cfg.sampler == "ddim":
            return DDIMSampler(steps=cfg.sampling_steps, eta=cfg.eta, spacing=cfg.spacing)
        return DPMSolverSampler(steps=cfg.sampling_steps, spacing=cfg.spacing)

    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        """Run the reverse chain in chunks of rows; conditions are imposed in the chain."""
        device = self.device_
        gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**63 - 1)))
        layout, net = self.layout_, self.net_
        known, cond = self._condition_tensors(conditions, device)
        sampler = self.diffusion_sampler()
        clip = layout.clip if self.config.clip_denoised else None
        frames = []
        width = layout.n_num + layout.n_slots + net.cond_dim
        chunk = max(1, min(_CHUNK_ROWS, _CHUNK_VALUES // max(width, 1)))
        with torch.inference_mode():
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                cond_rows = cond.expand(m, -1) if cond is not None else None

                def denoise(x_num, x_cat, t, cond_rows=cond_rows):
                    out = net(torch.cat([x_num, x_cat], dim=1), t, cond_rows).float()
                    return out[:, : layout.n_num], out[:, layout.n_num :]

                x_num, x_cat = sampler.sample(
                    denoise, self.gaussian_, self.multinomial_ if layout.n_slots else None, m,
                    n_numerical=layout.n_num, generator=gen, clip=clip, known=known,
                )
                encoded = layout.to_encoded(x_num.cpu().numpy(), x_cat.cpu().numpy())
                frames.append(self.encoder_.inverse_transform(encoded, rng=rng))
        if not frames:
            empty = np.zeros((0, self.encoder_.width), dtype=np.float32)
            return self.encoder_.inverse_transform(empty, rng=rng)
        return pl.concat(frames, how="vertical")

    def _condition_tensors(
        self, conditions: Mapping[str, Any] | None, device: torch.device
    ) -> tuple[KnownValues | None, torch.Tensor | None]:
        """The known one-hot values (and their mask) and the conditioning input for conditions."""
        layout = self.layout_
        if not conditions or not layout.n_slots:
            return None, None
        values = torch.zeros((1, layout.n_slots), device=device)
        mask = torch.zeros((1, layout.n_slots), dtype=torch.bool, device=device)
        starts = layout.starts
        for column, value in conditions.items():
            block = next((j for j in layout.category_blocks if layout.columns[j] == column), None)
            if block is None:
                continue
            slot = starts[block] + int(self.encoder_.slot_of(column, value))
            values[0, slot] = 1.0
            mask[0, starts[block] : starts[block] + layout.widths[block]] = True
        if not bool(mask.any()):
            return None, None
        cond = None
        if self.net_.cond_dim:
            cond = values[:, torch.as_tensor(layout.cond_slots, dtype=torch.long, device=device)]
        return KnownValues(categorical=values, categorical_mask=mask), cond

    def _sample_meeting(
        self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None
    ) -> pl.DataFrame:
        """Conditions on kept categories are met by construction: sample exactly ``n`` rows.

        Values that share the encoder's OTHER slot (rare categories beyond ``max_categories``)
        are not, so those fall back to the base class's keep-what-meets-them loop.
        """
        if not conditions or not all(self._imposed(c, v) for c, v in conditions.items()):
            return super()._sample_meeting(n, rng, conditions)
        out = self._sample(n, rng=rng, conditions=conditions)
        mask = pl.all_horizontal(
            pl.col(c).eq_missing(pl.lit(v).cast(out.schema[c])) for c, v in conditions.items()
        )
        if bool(out.select(mask.all()).item()):
            return out
        return pl.concat([out.filter(mask), super()._sample_meeting(n, rng, conditions)]).head(n)

    def _imposed(self, column: str, value: Any) -> bool:
        layout = self.layout_
        if not any(layout.columns[j] == column for j in layout.category_blocks):
            return False
        slot = self.encoder_.slot_of(column, value)
        return self.encoder_.discrete_block(column).values[slot] is not OTHER

    # --- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Denoiser weights (the moving average), the table encoding's arrays, ddpm.json."""
        tensors = module_state({_NET: self.net_})
        encoder_arrays, enc_meta = save_encoder(self.encoder_)
        tensors.update(encoder_arrays)
        net = self.net_
        state = {
            "version": _STATE_VERSION,
            "data_dim": net.data_dim,
            "cond_dim": net.cond_dim,
            "encoded_width": self.encoder_.width,
            "encoder": enc_meta,
        }
        return tensors, {_STATE_FILE: state}

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        """Rebuild the encoding, layout, schedules and denoiser (on ``config.device``)."""
        state = family_state(files, _STATE_FILE, _STATE_VERSION)
        self.encoder_ = load_encoder(tensors, state["encoder"])
        self.layout_ = _Layout.of(self.encoder_)
        self.device_ = resolve_device(self.config.device, fallback=True)
        net = _net(self.config, self.layout_, cond=int(state["cond_dim"]) > 0)
        if net.data_dim != int(state["data_dim"]):
            from synthkit.errors import ArtifactError

            raise ArtifactError(
                f"The saved denoiser has width {state['data_dim']}, the saved encoding implies "
                f"{net.data_dim}.",
                hint="The model directory is inconsistent; re-train it.",
            )
        load_module_state({_NET: net}, {k: v for k, v in tensors.items() if k.startswith(_NET + ".")})
        self.net_ = net.to(self.device_).eval()
        self.gaussian_, self.multinomial_ = _schedules(self.config, self.layout_, self.device_)


def _net(cfg: DDPMConfig, layout: _Layout, *, cond: bool | None = None) -> DenoiserNet:
    """The denoiser for a layout (with a conditioning input when conditions are trained)."""
    use_cond = (cfg.condition_share > 0 and layout.cond_dim > 0) if cond is None else cond
    return DenoiserNet(
        layout.n_num + layout.n_slots,
        cfg.hidden_dims,
        time_embedding_dim=cfg.time_embedding_dim,
        cond_dim=layout.cond_dim if use_cond else 0,
        dropout=cfg.dropout,
        layer_norm=cfg.layer_norm,
        activation=cfg.activation,
    )


def _schedules(
    cfg: DDPMConfig, layout: _Layout, device: torch.device
) -> tuple[GaussianSchedule, MultinomialSchedule]:
    gaussian = GaussianSchedule.named(cfg.schedule, cfg.timesteps, device)
    blocks = OneHotBlocks(layout.widths, device)
    return gaussian, MultinomialSchedule(gaussian.betas_np, blocks, device)
