"""The Trainer: one training loop for every torch generator.

A family writes its networks and its loss as a :class:`TrainingTask`; the Trainer does the rest:
device choice, mixed precision on CUDA, whole-tensor batching (the data sits on the device, one
permutation per epoch, no DataLoader), seeds, a rich progress line with live losses, early
stopping on a validation signal, loss history, and checkpoints that a killed run resumes from.

Checkpoints are written every ``checkpoint_every`` epochs (and at the end), atomically; a run
that is killed, however abruptly, loses at most the epochs since its last checkpoint.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthkit.errors import ConfigError
from synthkit.nn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from synthkit.nn.device import resolve_device
from synthkit.nn.optim import adam_step
from synthkit.nn.precision import fast_bf16, flush_denormals
from synthkit.nn.privacy import PrivateTraining, SGDBudget

#: Keep the data on the GPU only while it takes less than this share of free memory.
_DEVICE_DATA_SHARE = 0.5


@dataclass
class StepContext:
    """What a training step needs besides its batch: device, position, seeded noise, AMP."""

    device: torch.device
    generator: torch.Generator
    amp: bool = False
    epoch: int = 0
    step: int = 0
    #: DP-SGD state when the run is differentially private (see synthkit.nn.privacy).
    private: PrivateTraining | None = None
    #: Precision of the matrix products for families that cast explicitly instead of using
    #: :meth:`autocast`: bf16 when the Trainer was asked for ``low_precision`` and bf16 is fast
    #: (a CUDA GPU, a CPU with AMX tiles or AVX-512 BF16) and the run is not private, else fp32.
    dtype: torch.dtype = torch.float32

    def autocast(self) -> Any:
        """bf16 autocast on CUDA when mixed precision is on; a no-op otherwise."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def outside_privacy(self) -> Any:
        """A context in which private networks are used without capturing per-sample
        gradients (e.g. a GAN's generator step); a no-op in a run without dp."""
        return self.private.hooks_paused() if self.private is not None else nullcontext()

    def optimize(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        *,
        retain_graph: bool = False,
        rows: torch.Tensor | None = None,
    ) -> None:
        """Zero the gradients, back-propagate ``loss`` and take one optimizer step.

        In a private run an optimizer of a network that touches real rows is Opacus' wrapper:
        per-sample clipping and noise happen in its step. ``rows`` (per-row losses whose mean
        is ``loss``, from tasks with ``dp_row_losses``) let it clip by ghost clipping.
        """
        if self.private is not None:
            optimizer = self.private.optimizer_for(optimizer)
            optimizer.zero_grad(set_to_none=True)
            self.private.backward(loss, optimizer, rows, retain_graph=retain_graph)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward(retain_graph=retain_graph)
        adam_step(optimizer)  # optimizer.step(), minus torch.optim's per-call overhead


class TrainingTask(ABC):
    """What a family hands the Trainer: its networks, optimizers and one optimisation step."""

    #: True when ``train_step`` passes ``rows=`` (per-row losses) to ``ctx.optimize`` for its
    #: private optimizers: DP-SGD may then clip by Opacus' ghost clipping (no per-row gradients).
    dp_row_losses: bool = False

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """Every network that is trained and checkpointed, by name."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer, by name (checkpointed too)."""

    @abstractmethod
    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimisation step on ``batch``; return detached scalar losses by name."""

    def private_modules(self) -> tuple[list[str], list[str]] | None:
        """Names of the networks and optimizers that see real rows, for DP-SGD.

        None (the default) means the family cannot be trained with differential privacy.
        """
        return None

    def validation_loss(self, data: torch.Tensor, ctx: StepContext) -> float | None:
        """Loss on held-out rows (called without gradients); None disables early stopping."""
        return None

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> dict[str, Any]:
        """Extra numbers for this epoch's history; a ``"warning"`` string is shown and kept."""
        return {}

    def extra_checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Task state beyond modules and optimizers that a resumed run needs."""
        return {}, {}

    def load_extra_checkpoint_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Restore what :meth:`extra_checkpoint_state` returned (nothing by default)."""
        return None


@dataclass
class TrainResult:
    """What a training run did: per-epoch history and how it ended."""

    history: list[dict[str, Any]]
    epochs_run: int
    resumed_from: int | None
    stopped_early: bool
    best_epoch: int | None
    seconds: float
    device: str
    warnings: list[str] = field(default_factory=list)
    privacy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Runs a :class:`TrainingTask` for ``epochs`` over a float32 matrix of encoded rows."""

    def __init__(
        self,
        *,
        epochs: int,
        batch_size: int,
        device: str = "auto",
        amp: bool = True,
        seed: int | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 10,
        early_stopping_patience: int | None = None,
        validation_fraction: float = 0.0,
        progress: bool = True,
        compile: bool = False,
        description: str = "Training",
        drop_last: bool = False,
        dp: SGDBudget | None = None,
        low_precision: bool = False,
    ) -> None:
        if epochs < 1 or batch_size < 1 or checkpoint_every < 1:
            raise ConfigError(
                f"epochs ({epochs}), batch_size ({batch_size}) and checkpoint_every "
                f"({checkpoint_every}) must be at least 1."
            )
        if not 0.0 <= validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
        if early_stopping_patience is not None and validation_fraction == 0.0:
            raise ConfigError(
                "early_stopping_patience needs a validation signal.",
                hint="Set validation_fraction (e.g. 0.1) to hold out rows to stop on.",
            )
        if dp is not None and (validation_fraction > 0 or early_stopping_patience is not None):
            raise ConfigError(
                "Differentially private training cannot hold out rows for validation or early "
                "stopping: choosing by a loss on real rows would spend budget no accountant sees.",
                hint="Leave validation_fraction at 0 and early_stopping_patience at None with dp.",
            )
        self.dp = dp
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.amp = bool(amp) and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.low_precision = bool(low_precision) and dp is None and fast_bf16(self.device)
        self.seed = seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.patience = early_stopping_patience
        self.validation_fraction = validation_fraction
        self.progress = progress
        self.compile = compile
        self.description = description
        self.drop_last = drop_last

    # --- the loop ----------------------------------------------------------------------------
    def fit(
        self,
        task: TrainingTask,
        data: np.ndarray | torch.Tensor,
        *,
        resume: bool = False,
        fingerprint: str = "",
    ) -> TrainResult:
        """Train ``task`` on ``data``; ``resume=True`` continues from the last checkpoint."""
        started = time.perf_counter()
        ckpt = None
        if resume and self.checkpoint_dir is not None:
            ckpt = load_checkpoint(self.checkpoint_dir)
            if ckpt is not None and ckpt.fingerprint != fingerprint:
                raise ConfigError(
                    f"The checkpoint in {self.checkpoint_dir} belongs to another run "
                    "(different data or configuration).",
                    hint="Resume with the same data and settings, or delete the checkpoint "
                    "directory to start afresh.",
                )
        state = _RunState.from_meta(ckpt.meta) if ckpt is not None else _RunState()
        if state.seed is None:  # a resumed run keeps its seed: the same validation split
            state.seed = self.seed if self.seed is not None else int(
                np.random.SeedSequence().generate_state(1)[0])
        seed = state.seed
        matrix = torch.as_tensor(np.asarray(data, dtype=np.float32))
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ConfigError(f"Training data must be a non-empty 2-D matrix, got {tuple(matrix.shape)}.")
        train, valid = self._split(matrix, seed)
        train = self._place(train)
        valid = valid.to(self.device) if valid is not None else None
        modules, optimizers = task.modules(), task.optimizers()
        for module in modules.values():  # in place: the optimizers keep their parameters
            module.to(self.device)
        if self.compile:
            for module in modules.values():
                module.compile()
        order_gen = torch.Generator().manual_seed(seed)
        ctx = StepContext(
            device=self.device,
            generator=torch.Generator(device=self.device).manual_seed(seed + 1),
            amp=self.amp,
            dtype=torch.bfloat16 if self.low_precision else torch.float32,
        )
        private = self._private(task, modules, optimizers, train.shape[0], seed)
        ctx.private = private
        resumed_from = None
        if ckpt is not None:
            ckpt.restore(modules, optimizers, task, order_gen, ctx.generator)
            resumed_from = state.epoch
            if private is not None:
                private.restore(state.dp_steps, state.dp_noise_multiplier or private.noise_multiplier)
        ctx.step = state.step
        try:
            with flush_denormals():  # denormals make long CPU runs many times slower
                self._loop(task, modules, optimizers, train, valid, order_gen, ctx, state, fingerprint)
        finally:
            if private is not None:
                private.detach()
        if state.best_weights is not None:
            for name, module in modules.items():
                module.load_state_dict(state.best_weights[name])
        for module in modules.values():
            module.eval()
        return TrainResult(
            history=state.history,
            epochs_run=state.epoch,
            resumed_from=resumed_from,
            stopped_early=state.stopped_early,
            best_epoch=state.best_epoch,
            seconds=round(time.perf_counter() - started, 3),
            device=str(self.device),
            warnings=state.warnings,
            privacy=private.report() if private is not None else None,
        )

    def _private(
        self,
        task: TrainingTask,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        n_rows: int,
        seed: int,
    ) -> PrivateTraining | None:
        """Set up DP-SGD for a private run (None otherwise)."""
        if self.dp is None:
            return None
        names = task.private_modules()
        if names is None:
            raise ConfigError(
                f"{type(task).__name__} does not support differentially private training.",
                hint="Use a family that supports dp= (tabular/ctgan, tabular/tvae, ...).",
            )
        private = PrivateTraining(
            self.dp, n_rows=n_rows, batch_size=self.batch_size, epochs=self.epochs
        )
        noise = torch.Generator(device=self.device).manual_seed(seed + 3)
        private.attach(modules, optimizers, names, noise, row_losses=task.dp_row_losses)
        return private

    def _loop(
        self,
        task: TrainingTask,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        train: torch.Tensor,
        valid: torch.Tensor | None,
        order_gen: torch.Generator,
        ctx: StepContext,
        state: _RunState,
        fingerprint: str,
    ) -> None:
        with self._progress() as bar:
            task_id = bar.add_task(self.description, total=self.epochs, completed=state.epoch, losses="")
            for epoch in range(state.epoch, self.epochs):
                ctx.epoch = epoch
                record = self._epoch(task, modules, train, order_gen, ctx)
                if valid is not None:
                    self._validate(task, modules, valid, ctx, record, state)
                extras = dict(task.on_epoch_end(epoch, ctx))
                warning = extras.pop("warning", None)
                record.update(extras)
                if warning:
                    record["warning"] = str(warning)
                    state.warnings.append(f"epoch {epoch + 1}: {warning}")
                if ctx.private is not None:
                    # losses are computed on real rows: a private run keeps only what DP covers
                    record = {"epoch": epoch + 1, "epsilon": round(ctx.private.epsilon(), 6)}
                    state.dp_steps = ctx.private.steps
                    state.dp_noise_multiplier = ctx.private.noise_multiplier
                state.history.append(record)
                state.epoch, state.step = epoch + 1, ctx.step
                bar.update(task_id, completed=epoch + 1, losses=_format(record))
                stop = self.patience is not None and state.bad_epochs >= self.patience
                if self.checkpoint_dir is not None and (
                    (epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs or stop
                ):
                    save_checkpoint(
                        self.checkpoint_dir,
                        Checkpoint.capture(modules, optimizers, task, order_gen, ctx.generator,
                                           fingerprint=fingerprint, meta=state.to_meta()),
                    )
                if stop:
                    state.stopped_early = True
                    break

    def _epoch(
        self,
        task: TrainingTask,
        modules: dict[str, torch.nn.Module],
        train: torch.Tensor,
        order_gen: torch.Generator,
        ctx: StepContext,
    ) -> dict[str, Any]:
        for module in modules.values():
            module.train()
        n = train.shape[0]
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for index in self._batch_indices(n, order_gen, ctx, train.device):
            if index.numel() == 0:  # an empty Poisson batch: noise only, still accounted
                assert ctx.private is not None
                ctx.private.step()
                continue
            batch = train.index_select(0, index.to(train.device))
            if batch.device != self.device:
                batch = batch.to(self.device, non_blocking=True)
            losses = task.train_step(batch, ctx)
            if ctx.private is not None:
                ctx.private.step()
            ctx.step += 1
            steps += 1
            for name, value in losses.items():
                value = value.detach().float()
                sums[name] = sums[name] + value if name in sums else value
        record: dict[str, Any] = {"epoch": ctx.epoch + 1}
        record.update({name: float(total) / max(steps, 1) for name, total in sums.items()})
        return record

    def _batch_indices(
        self, n: int, order_gen: torch.Generator, ctx: StepContext, device: torch.device
    ) -> Iterator[torch.Tensor]:
        """Row indices of each step: a shuffled pass, or Poisson samples in a private run.

        The epoch's permutation is drawn on the CPU (the same stream on every device) and moved
        to the data's device once, not one small copy per step."""
        if ctx.private is not None:
            yield from ctx.private.batches(n, order_gen)
            return
        order = torch.randperm(n, generator=order_gen).to(device)
        stop = n - (n % self.batch_size) if self.drop_last and n >= self.batch_size else n
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def _validate(
        self,
        task: TrainingTask,
        modules: dict[str, torch.nn.Module],
        valid: torch.Tensor,
        ctx: StepContext,
        record: dict[str, Any],
        state: _RunState,
    ) -> None:
        for module in modules.values():
            module.eval()
        with torch.no_grad():
            loss = task.validation_loss(valid, ctx)
        if loss is None:
            return
        record["val_loss"] = float(loss)
        if state.best_loss is None or loss < state.best_loss - 1e-7:
            state.best_loss, state.best_epoch, state.bad_epochs = float(loss), ctx.epoch + 1, 0
            if self.patience is not None:
                state.best_weights = {n: copy.deepcopy(m.state_dict()) for n, m in modules.items()}
        else:
            state.bad_epochs += 1

    # --- helpers -----------------------------------------------------------------------------
    def _split(self, matrix: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        n_valid = int(round(matrix.shape[0] * self.validation_fraction))
        if n_valid == 0:
            return matrix, None
        if matrix.shape[0] - n_valid < 1:
            raise ConfigError("validation_fraction leaves no rows to train on.")
        order = torch.randperm(matrix.shape[0], generator=torch.Generator().manual_seed(seed + 2))
        return matrix[order[n_valid:]], matrix[order[:n_valid]]

    def _place(self, matrix: torch.Tensor) -> torch.Tensor:
        """Move the data to the device when it fits comfortably; else pin it for fast copies."""
        if self.device.type != "cuda":
            return matrix
        free, _ = torch.cuda.mem_get_info(self.device)
        if matrix.element_size() * matrix.nelement() < _DEVICE_DATA_SHARE * free:
            return matrix.to(self.device)
        return matrix.pin_memory()

    @contextmanager
    def _progress(self) -> Iterator[Any]:
        if not self.progress:
            yield _SilentProgress()
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[losses]}"),
            console=Console(stderr=True),
            transient=False,
        ) as bar:
            yield bar


@dataclass
class _RunState:
    """Where a run stands: what a checkpoint records besides weights."""

    epoch: int = 0
    step: int = 0
    seed: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    best_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    dp_steps: int = 0
    dp_noise_multiplier: float | None = None
    best_weights: dict[str, dict[str, torch.Tensor]] | None = None

    def to_meta(self) -> dict[str, Any]:
        meta = asdict(self)
        meta.pop("best_weights")
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> _RunState:
        return cls(**{k: v for k, v in meta.items() if k in cls.__dataclass_fields__})


class _SilentProgress:
    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def _format(record: dict[str, Any]) -> str:
    parts = [f"{k} {v:.4f}" for k, v in record.items() if k != "epoch" and isinstance(v, float)]
    if "warning" in record:
        parts.append(f"[yellow]⚠ {record['warning']}[/]")
    return "  ".join(parts)
