"""SequentialSynthesizer: per-entity event sequences (an entity key plus an order/time column).

In the spirit of SDV's PARSynthesizer and MOSTLY AI's sequential tables, with synthkit's own parts:

* **Entities.** One row per entity holds its *static* columns (constant within the entity), its
  sequence length (``__length__``) and the order value of its first event (``__start__``). A
  tabular family (``family``, default ``tabular/argn``) learns that table, so a synthetic
  entity's length and start are drawn *given* its static values.
* **Events.** Each event is a row of tokens (:class:`~synthkit.prepare.tokens.TableTokenizer`):
  first the gap since the previous event (``log1p`` of the order difference, quantile bins),
  then the event columns. :class:`SequenceNet`, a small causal transformer over events (the
  shared :class:`~synthkit.nn.transformer.TransformerBlock`), reads the entity's static tokens
  and every earlier event and predicts the next event token by token (each token given the
  ones drawn before it in the same event). Training runs in the shared
  :class:`~synthkit.nn.Trainer` (checkpoints and resume, early stopping on a validation loss,
  device and mixed precision). Sequences longer than ``max_length`` are read in consecutive
  windows of ``max_length`` events; sampling starts a new window at the same places.
* **Sampling** draws all entities at once: the loop runs over time steps only (entities sorted
  by length, the ones still going in front), with a key/value cache.
* **Order.** Times are the entity's start plus the cumulative sum of non-negative gaps, so they
  never decrease within an entity; when the real data has no ties (two events of one entity
  at the same time) every generated gap is positive, so times strictly increase. Datetimes,
  dates and integers get whole gaps in their own unit.
* **Keys** are fresh values, never a real key (as in :class:`RelationalSynthesizer`).
* **Given entities.** ``fit(..., context=[...])`` puts columns that describe each entity from
  outside (a parent row's columns) and the length first in the entity table;
  :meth:`SequentialSynthesizer.sample_given` then takes them per entity and draws the rest.
  :class:`RelationalSynthesizer` uses this for sequential child tables.

Saved as one directory: ``sequential.json`` (config, plan, manifest hashes, a digest),
``static/`` (the entity table's model directory) and ``events/`` (weights.safetensors + JSON),
both normal synthkit model directories. No pickle.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from torch import nn
from torch.nn import functional as F

from synthkit.errors import ArtifactError, ConfigError, DataError, NotFittedError, SchemaError
from synthkit.frames import check_table, fingerprint, normalise_missing, to_polars
from synthkit.generators.base import LEARNED_KINDS, Generator
from synthkit.generators.relational.hma import _fit_id_spec, _make_ids
from synthkit.nn import StepContext, Trainer, TrainingTask, load_module_state, module_state
from synthkit.nn.device import resolve_device, seeded
from synthkit.nn.transformer import KVCache, TransformerBlock, seeded_dropout
from synthkit.prepare.tokens import TableTokenizer
from synthkit.schema import Column, ColumnKind, Schema, infer_schema

__all__ = ["SequentialConfig", "SequentialSynthesizer", "SequenceNet"]

FORMAT_VERSION = 1
STATE_FILE = "sequential.json"
STATIC_DIR = "static"
EVENTS_DIR = "events"
LENGTH = "__length__"
START = "__start__"
GAP = "__gap__"
_NET = "net"
_CTX = "context."
_EV = "events."
#: Without ``epochs``, train for about this many optimisation steps, within these epochs.
_AUTO_STEPS = 2_000
_AUTO_EPOCHS = (10, 200)
#: Leading columns of a training row: continuation flag, events in the window.
_LEAD = 2


class SequentialConfig(BaseModel):
    """Options of :class:`SequentialSynthesizer` (event net and the entity table's family)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = Field("tabular/argn", description="Tabular family of the per-entity table.")
    static_config: dict[str, Any] = Field(
        default_factory=dict, description="Options given to the entity table's generator."
    )
    max_length: int = Field(
        128, ge=2, description="Events the net reads at once; longer sequences go in windows."
    )
    epochs: int | None = Field(
        None, ge=1, description=f"Passes over the event windows; None: about {_AUTO_STEPS:,} "
        f"steps, from {_AUTO_EPOCHS[0]} to {_AUTO_EPOCHS[1]} epochs (early stopping may end sooner).",
    )
    batch_size: int = Field(64, ge=1, description="Windows of events per optimisation step.")
    embedding_dim: int = Field(64, ge=4, description="Width of the embeddings and transformer.")
    layers: int = Field(2, ge=1, description="Transformer blocks over the events.")
    heads: int = Field(4, ge=1, description="Attention heads (embedding_dim must be a multiple).")
    feedforward_dim: int = Field(128, ge=1, description="Hidden width of feed-forward layers.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on inputs and residuals.")
    learning_rate: float = Field(2e-3, gt=0.0, description="Adam learning rate.")
    l2scale: float = Field(1e-5, ge=0.0, description="Adam weight decay.")
    bins: int = Field(32, ge=2, le=100_000, description="Quantile bins per numerical event column.")
    rare_category_threshold: int = Field(
        5, ge=1, description="Event categories seen in fewer rows are protected (never stored)."
    )
    validation_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of windows held out for a validation loss."
    )
    early_stopping_patience: int | None = Field(
        8, ge=1, description="Stop after this many epochs without a better validation loss."
    )
    device: str = Field("auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', ...")
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (no effect on a CPU).")
    checkpoint_dir: str | None = Field(
        None, description="Directory for the event net's checkpoints; needed for resume=True."
    )
    checkpoint_every: int = Field(10, ge=1, description="Epochs between checkpoints.")
    progress: bool = Field(True, description="Show a progress line per epoch.")
    compile: bool = Field(False, description="torch.compile the event net.")
    seed: int | None = None

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        """Accept a pathlib.Path (stored as text so the config stays JSON)."""
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _check_consistent(self) -> SequentialConfig:
        if self.embedding_dim % self.heads:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be a multiple of heads ({self.heads})"
            )
        if self.early_stopping_patience is not None and self.validation_fraction == 0:
            raise ValueError("early_stopping_patience needs validation_fraction > 0")
        return self


# --- the network ---------------------------------------------------------------------------------
class SequenceNet(nn.Module):
    """Causal transformer over events; each event's tokens drawn one after another given it.

    Input of step t: the sum of the previous event's token embeddings (a learned start vector at
    a window's first step), the step's position in the window, the entity's static context and a
    learned vector for continuation windows. An event's k-th token is predicted from the step's
    hidden state plus the embeddings of the event's tokens before k.
    """

    def __init__(
        self, context_vocab: list[int], event_vocab: list[int], *, dim: int, layers: int,
        heads: int, feedforward_dim: int, dropout: float, max_length: int,
    ) -> None:
        super().__init__()
        self.context_vocab = list(context_vocab)
        self.event_vocab = list(event_vocab)
        self.dropout = dropout
        self.register_buffer("ctx_offsets", _offsets(context_vocab), persistent=False)
        self.register_buffer("ev_offsets", _offsets(event_vocab), persistent=False)
        self.ctx_embed = nn.Embedding(max(sum(context_vocab), 1), dim)
        self.ev_embed = nn.Embedding(sum(event_vocab), dim)
        self.position = nn.Embedding(max_length, dim)
        self.slot = nn.Embedding(len(event_vocab), dim)
        self.bos = nn.Parameter(torch.zeros(dim))
        self.cont = nn.Parameter(torch.zeros(dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, feedforward_dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.head_norm = nn.LayerNorm(dim)
        self.head_in = nn.Linear(dim, feedforward_dim)
        self.head_out = nn.ModuleList(nn.Linear(feedforward_dim, v) for v in event_vocab)
        for emb in (self.ctx_embed, self.ev_embed, self.position, self.slot):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def n_context(self) -> int:
        return len(self.context_vocab)

    @property
    def n_event(self) -> int:
        return len(self.event_vocab)

    def context(self, tokens: torch.Tensor) -> torch.Tensor:
        """(rows, context tokens) → (rows, dim): the sum of the static token embeddings."""
        if tokens.shape[1] == 0:
            return torch.zeros(tokens.shape[0], self.bos.shape[0], device=tokens.device)
        return self.ctx_embed(tokens + self.ctx_offsets).sum(1)

    def _token_logits(self, u: torch.Tensor, k: int) -> torch.Tensor:
        return self.head_out[k](F.gelu(self.head_in(self.head_norm(u + self.slot.weight[k]))))

    def nll(
        self, rows: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed negative log-likelihood of each training row's events, and its event count.

        A row is ``[continuation flag, events, context tokens..., event tokens (window × T)]``.
        """
        n = rows.shape[0]
        t = self.n_event
        flag = rows[:, 0:1].float()
        count = rows[:, 1].long()
        ctx = rows[:, _LEAD : _LEAD + self.n_context].long()
        tokens = rows[:, _LEAD + self.n_context :].long().view(n, -1, t)
        window = tokens.shape[1]
        valid = torch.arange(window, device=rows.device)[None, :] < count[:, None]
        emb = self.ev_embed(tokens.clamp(min=0) + self.ev_offsets) * valid[..., None, None]
        events = emb.sum(2)
        prev = torch.cat([self.bos.expand(n, 1, -1), events[:, :-1]], dim=1)
        x = prev + self.position.weight[:window] + (self.context(ctx) + flag * self.cont)[:, None]
        x = seeded_dropout(x, self.dropout, generator, self.training)
        for block in self.blocks:
            x = block(x, generator)
        h = self.norm(x)
        before = torch.cumsum(emb, dim=2) - emb
        total = torch.zeros(n, window, device=rows.device)
        for k in range(t):
            logits = self._token_logits(h + before[:, :, k], k)
            ce = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), tokens[:, :, k].clamp(min=0).reshape(-1),
                reduction="none",
            )
            total = total + ce.view(n, window)
        return (total * valid).sum(1), valid.sum(1)

    @torch.no_grad()
    def generate(
        self, context: torch.Tensor, lengths: np.ndarray, *, window: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Event tokens for entities with ``context`` tokens and ``lengths`` (sorted longest
        first), as one (sum of lengths, T) matrix, entity after entity. Vectorised over
        entities; the loop runs over time steps (and an event's tokens)."""
        n = context.shape[0]
        device = context.device
        total = int(lengths.sum())
        out = torch.empty(total, self.n_event, dtype=torch.long, device=device)
        if total == 0:
            return out
        starts = torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)[:-1]]), device=device)
        ctx = self.context(context)
        dim = ctx.shape[1]
        block0 = self.blocks[0].attention
        heads = block0.heads
        caches = [
            (torch.zeros(n, heads, window, dim // heads, device=device),
             torch.zeros(n, heads, window, dim // heads, device=device))
            for _ in self.blocks
        ]
        # entities still going at each step (sorted longest first: they are the first m)
        active = np.searchsorted(-lengths, -np.arange(int(lengths.max())), side="left")
        prev = self.bos.expand(n, -1)
        for step, m in enumerate(active.tolist()):
            pos = step % window
            if pos == 0:
                prev = self.bos.expand(n, -1)
            flag = float(step >= window)
            x = (prev[:m] + self.position.weight[pos] + ctx[:m] + flag * self.cont)[:, None]
            for block, (keys, values) in zip(self.blocks, caches, strict=True):
                x = block(x, None, KVCache(keys[:m], values[:m], pos))
            h = self.norm(x[:, 0])
            acc = torch.zeros(m, dim, device=device)
            drawn = []
            for k in range(self.n_event):
                logits = self._token_logits(h + acc, k).float()
                tok = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
                drawn.append(tok)
                acc = acc + self.ev_embed(tok + self.ev_offsets[k])
            out[starts[:m] + step] = torch.stack(drawn, 1)
            prev = acc
        return out


def _offsets(vocab: list[int]) -> torch.Tensor:
    return torch.as_tensor(np.concatenate([[0], np.cumsum(vocab)[:-1]]) if vocab else [],
                           dtype=torch.long)


class SequenceTrainingTask(TrainingTask):
    """The event net and its loss for the shared Trainer: mean negative log-likelihood per event."""

    def __init__(self, net: SequenceNet, *, learning_rate: float, l2scale: float) -> None:
        self.net = net
        self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=l2scale)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {_NET: self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        with ctx.autocast():
            nll, count = self.net.nll(batch, ctx.generator)
        loss = nll.float().sum() / count.sum().clamp(min=1)
        ctx.optimize(loss, self.optimizer)
        return {"loss": loss.detach()}

    def validation_loss(self, data: torch.Tensor, ctx: StepContext) -> float | None:
        if data.shape[0] == 0:
            return None
        self.net.eval()
        total, events = 0.0, 0
        for start in range(0, data.shape[0], 1024):
            with ctx.autocast():
                nll, count = self.net.nll(data[start : start + 1024])
            total += float(nll.float().sum())
            events += int(count.sum())
        self.net.train()
        return total / max(events, 1)


# --- the synthesizer -----------------------------------------------------------------------------
class SequentialSynthesizer:
    """Fit on an event table (entity key + order column); sample new entities' sequences.

    >>> synth = SequentialSynthesizer(seed=0).fit(flights, entity="tailnum",
    ...                                           order="time_hour")  # doctest: +SKIP
    >>> fake = synth.sample(100, seed=1)                               # doctest: +SKIP
    """

    def __init__(self, **config: Any) -> None:
        if config.get("dp") is not None:
            raise ConfigError(
                "SequentialSynthesizer has no differentially private training: an entity's events "
                "are many rows, and DP over them needs per-entity accounting, which it does not do "
                "(DP-SGD per event row would understate epsilon).",
                hint="Aggregate to one row per entity and fit a family that takes dp= "
                "(tabular/dpcopula, tabular/tvae, ...).",
            )
        try:
            self.config = SequentialConfig(**config)
        except ValidationError as exc:
            raise ConfigError(
                "Invalid configuration for SequentialSynthesizer: "
                + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                hint=f"Options: {sorted(SequentialConfig.model_fields)}",
            ) from exc

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump(exclude_defaults=True).items())
        return f"SequentialSynthesizer({args})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "net_")

    # --- fit -------------------------------------------------------------------------------
    def fit(
        self, data: Any, *, entity: str, order: str, static: list[str] | None = None,
        schema: Schema | None = None, resume: bool = False, context: list[str] | None = None,
    ) -> SequentialSynthesizer:
        """Learn entities (static columns, length, start) and their events from ``data``.

        ``static`` names the columns that are constant within an entity; None takes every
        column that is (over entities with several events). Rows need not be sorted.
        ``resume=True`` continues the event net's interrupted training from ``checkpoint_dir``
        (the entity table's model is fitted again). ``context`` names static columns that
        describe the entity from outside (e.g. its parent row's columns): they lead the entity
        table, so :meth:`sample_given` can take them (and lengths) as given; this needs an
        entity-table family that can be seeded (``tabular/argn``). ``context=[]`` allows
        :meth:`sample_given` with lengths only.
        """
        df = normalise_missing(to_polars(data))
        check_table(df, what="event table")
        for role, name in (("entity", entity), ("order", order)):
            if not isinstance(name, str) or name not in df.columns:
                raise SchemaError(f"The {role} column {name!r} is not in the data.",
                                  hint=f"Columns: {df.columns}")
        if entity == order:
            raise ConfigError("entity and order must be two different columns.")
        schema = schema if schema is not None else infer_schema(df)
        missing = [c for c in df.columns if c not in schema.names]
        if missing:
            raise SchemaError(f"The schema lacks columns {missing}.",
                              hint="Pass a schema for every column, or schema=None to infer one.")
        schema.check_frame(df)
        df = df.select(schema.names)
        _check_order_and_keys(df, entity, order)
        df = df.sort([entity, order], maintain_order=True)
        context = self._context_columns(df, entity, order, context)
        static = self._static_columns(df, schema, entity, order, static)
        given = context is not None
        context = context or []
        static = [*context, *[c for c in static if c not in context]]
        events = [c for c in df.columns if c not in {entity, order, *static}]
        unlearned = [c for c in events if schema[c].kind not in LEARNED_KINDS]
        if unlearned:
            raise SchemaError(
                f"Event columns {unlearned} are of kind id, pii or text, which the event model "
                "does not learn.",
                hint="Drop them, or list them in static= if they are constant within an entity.",
            )

        x = _order_values(df.get_column(order))
        key = df.get_column(entity)
        first = np.ones(df.height, dtype=bool)
        first[1:] = (key[1:] != key[:-1]).to_numpy()
        gaps = np.diff(x, prepend=x[:1])
        lengths = (df.group_by(entity, maintain_order=True).len().get_column("len")
                   .to_numpy().astype(np.int64))
        if lengths.max() < 2:
            raise DataError(
                "Every entity has a single event: there are no sequences to learn.",
                hint="Check the entity column, or use a tabular generator (sk.create('tabular/argn')).",
            )
        ties = int(((gaps == 0) & ~first).sum())
        gap_feature = np.where(first, np.nan, np.log1p(np.maximum(gaps, 0.0)))

        # entity table: static columns, length, start; fitted by the tabular family
        entities = (
            df.group_by(entity, maintain_order=True)
            .agg([pl.col(c).first() for c in static] + [pl.len().alias(LENGTH),
                                                         pl.col(order).first().alias(START)])
            .with_columns(pl.col(LENGTH).cast(pl.Int64))
        )
        length_column = Column(name=LENGTH, kind=ColumnKind.NUMERICAL, dtype="Int64", nullable=False,
                               min=float(lengths.min()), max=float(lengths.max()), decimals=0)
        start_column = schema[order].model_copy(update={"name": START, "nullable": False})
        # with context: context, length, other static, start (so the first two can be given)
        lead = [*context, LENGTH] if given else []
        entity_columns = [*lead, *[c for c in static if c not in lead], *([] if given else [LENGTH])]
        static_schema = Schema(columns=[
            *[length_column if c == LENGTH else schema[c] for c in entity_columns], start_column,
        ])
        entities = entities.select(entity, *static_schema.names)
        static_gen = self._new_static_generator()
        if given and not callable(getattr(static_gen, "sample_seeded", None)):
            raise ConfigError(
                f"context= needs an entity-table family that can be seeded; {self.config.family} "
                "cannot.", hint="Use family='tabular/argn' (the default).",
            )
        static_gen = static_gen.fit(entities.drop(entity), schema=static_schema)

        ctx_schema = static_schema.select(
            [c.name for c in static_schema if c.kind in LEARNED_KINDS]
        )
        ctx_tok = TableTokenizer(bins=self.config.bins, rare_threshold=self.config.rare_category_threshold)
        ctx_tok.fit(entities.select(ctx_schema.names), ctx_schema)
        ev_frame = df.select(events).with_columns(pl.Series(GAP, gap_feature, dtype=pl.Float64))
        ev_frame = ev_frame.with_columns(pl.col(GAP).fill_nan(None)).select([GAP, *events])
        ev_schema = Schema(columns=[
            Column(name=GAP, kind=ColumnKind.NUMERICAL, dtype="Float64", nullable=True),
            *[schema[c] for c in events],
        ])
        ev_tok = TableTokenizer(bins=self.config.bins, rare_threshold=self.config.rare_category_threshold)
        ev_tok.fit(ev_frame, ev_schema)

        matrix = _windows(
            ctx_tok.transform(entities.select(ctx_schema.names)), ev_tok.transform(ev_frame),
            lengths, self.config.max_length,
        )
        cfg = self.config
        trainer = Trainer(
            epochs=self._epochs(matrix.shape[0]), batch_size=cfg.batch_size, device=cfg.device,
            amp=cfg.amp, seed=cfg.seed, checkpoint_dir=cfg.checkpoint_dir,
            checkpoint_every=cfg.checkpoint_every,
            early_stopping_patience=cfg.early_stopping_patience,
            validation_fraction=cfg.validation_fraction, progress=cfg.progress,
            compile=cfg.compile, description="sequential events",
        )
        with seeded(cfg.seed):
            net = self._new_net(ctx_tok.vocab_sizes, ev_tok.vocab_sizes)
        task = SequenceTrainingTask(net.to(trainer.device), learning_rate=cfg.learning_rate,
                                    l2scale=cfg.l2scale)
        data_fp = fingerprint(df)
        run = hashlib.sha256(json.dumps(
            [cfg.model_dump(mode="json", exclude={"epochs", "device", "progress", "checkpoint_dir",
                                                  "checkpoint_every", "compile"}),
             data_fp, entity, order, static] + ([context] if given else []),
            sort_keys=True).encode()).hexdigest()
        result = trainer.fit(task, matrix, resume=resume, fingerprint=run)

        self.entity_ = entity
        self.order_ = order
        self.static_ = static
        self.context_ = context if given else None
        self.events_ = events
        self.schema_ = schema
        self.id_spec_ = _fit_id_spec(entities.get_column(entity))
        self.integral_ = _integral(df.get_column(order))
        self.strict_ = ties == 0
        self.min_gap_ = float(gaps[~first].min())
        self.static_generator_ = static_gen
        self.context_tokenizer_ = ctx_tok
        self.event_tokenizer_ = ev_tok
        self.net_ = task.net.eval()
        self.device_ = trainer.device
        self.data_fingerprint_ = data_fp
        self.fit_report_ = {
            "entities": int(lengths.size), "events": int(df.height),
            "windows": int(matrix.shape[0]), "ties": ties, "static": static, "events_columns": events,
            "training": result.to_dict(), "warnings": list(result.warnings),
        }
        if ties:
            self.fit_report_["warnings"].append(
                f"sequential: {ties} events share their entity's previous time; generated times "
                "never decrease but may repeat."
            )
        return self

    @staticmethod
    def _context_columns(
        df: pl.DataFrame, entity: str, order: str, context: list[str] | None
    ) -> list[str] | None:
        if context is None:
            return None
        if isinstance(context, str):
            raise ConfigError(f"context must be a list of column names, got the string {context!r}.",
                              hint=f"Write context=[{context!r}].")
        context = list(context)
        bad = [c for c in context if c not in df.columns or c in (entity, order)]
        if bad:
            raise SchemaError(f"context names columns {bad} that are not event-table columns "
                              "(or are the entity/order column).", hint=f"Columns: {df.columns}")
        if not context:
            return []
        counts = df.group_by(entity).agg(pl.col(context).n_unique())
        varying = [c for c in context if int(counts.get_column(c).max()) > 1]
        if varying:
            raise DataError(f"Context columns {varying} change within an entity.",
                            hint="Context describes the whole entity: one value per entity.")
        return context

    def _static_columns(
        self, df: pl.DataFrame, schema: Schema, entity: str, order: str, static: list[str] | None
    ) -> list[str]:
        others = [c for c in df.columns if c not in (entity, order)]
        if static is None:
            multi = df.filter(pl.len().over(entity) > 1)
            counts = multi.group_by(entity).agg(pl.col(others).n_unique()) if others else None
            return [c for c in others if counts is None or counts.height == 0
                    or int(counts.get_column(c).max()) == 1]
        static = list(static)
        bad = [c for c in static if c not in others]
        if bad:
            raise SchemaError(f"static names columns {bad} that are not event-table columns "
                              "(or are the entity/order column).", hint=f"Columns: {others}")
        if static:
            counts = df.group_by(entity).agg(pl.col(static).n_unique())
            varying = [c for c in static if int(counts.get_column(c).max()) > 1]
            if varying:
                raise DataError(f"Static columns {varying} change within an entity.",
                                hint="Leave them out of static= (they become event columns).")
        return static

    def _new_static_generator(self) -> Generator:
        from synthkit.generators.registry import create, resolve

        cls, _ = resolve(self.config.family)
        options = dict(self.config.static_config)
        if "seed" in cls.config_class.model_fields and "seed" not in options:
            options["seed"] = self.config.seed
        if "progress" in cls.config_class.model_fields and "progress" not in options:
            options["progress"] = False
        return create(self.config.family, **options)

    def _new_net(self, context_vocab: list[int], event_vocab: list[int]) -> SequenceNet:
        cfg = self.config
        return SequenceNet(
            context_vocab, event_vocab, dim=cfg.embedding_dim, layers=cfg.layers, heads=cfg.heads,
            feedforward_dim=cfg.feedforward_dim, dropout=cfg.dropout, max_length=cfg.max_length,
        )

    def _epochs(self, rows: int) -> int:
        cfg = self.config
        if cfg.epochs is not None:
            return cfg.epochs
        train = max(1, rows - int(round(rows * cfg.validation_fraction)))
        steps = -(-train // cfg.batch_size)
        return int(min(max(-(-_AUTO_STEPS // steps), _AUTO_EPOCHS[0]), _AUTO_EPOCHS[1]))

    # --- sample ----------------------------------------------------------------------------
    def sample(self, n_entities: int, *, seed: int | None = None) -> pl.DataFrame:
        """Events of ``n_entities`` new entities (fresh keys), sorted by entity then order,
        with the training columns and dtypes. The same seed gives the same data."""
        self._check_fitted()
        if isinstance(n_entities, bool) or not isinstance(n_entities, (int, np.integer)) or n_entities < 0:
            raise ConfigError(f"n_entities must be a whole number (at least 0), got {n_entities!r}.")
        n = int(n_entities)
        root = np.random.SeedSequence(self.config.seed if seed is None else seed)
        s_static, s_torch, s_decode = root.spawn(3)
        entities = self.static_generator_.sample(n, seed=int(s_static.generate_state(1)[0]))
        lengths = np.clip(
            np.rint(entities.get_column(LENGTH).cast(pl.Float64).fill_null(1).to_numpy()), 1, None
        ).astype(np.int64)
        sort = np.argsort(-lengths, kind="stable")
        keys = _make_ids(self.id_spec_, n).alias(self.entity_)
        return self._events(entities[sort], lengths[sort], keys, s_torch, s_decode)

    def sample_given(
        self, context: Any, lengths: Any = None, *, keys: Any = None, seed: int | None = None
    ) -> pl.DataFrame:
        """Events of one new entity per row of ``context`` (the columns fit's ``context=``
        named), drawn given those values and, when given, ``lengths`` events each (0: none).

        ``keys`` (one per row) become the entity keys, fresh ones otherwise. Entities keep
        the row order of ``context``, each one's events in time order; same seed, same data.
        """
        self._check_fitted()
        if self.context_ is None:
            raise ConfigError("This model was fitted without context=; sample_given needs it.",
                              hint="Fit with context=[...] (columns describing each entity, or []), "
                              "or use sample(n).")
        if self.context_:
            frame = normalise_missing(to_polars(context))
            missing = [c for c in self.context_ if c not in frame.columns]
            if missing:
                raise SchemaError(f"The context frame lacks columns {missing}.",
                                  hint=f"Give the columns the model was fitted with: {self.context_}.")
            frame = frame.select(
                pl.col(c).cast(self.schema_[c].polars_dtype, strict=False) for c in self.context_
            )
        elif lengths is None:
            raise ConfigError("This model has no context columns: give lengths (one per entity).")
        else:
            frame = pl.DataFrame(height=len(lengths))
        n = frame.height
        if keys is None:
            key_series = _make_ids(self.id_spec_, n)
        else:
            key_series = pl.Series(keys) if not isinstance(keys, pl.Series) else keys
        if key_series.len() != n:
            raise ConfigError(f"keys has {key_series.len()} values for {n} context rows.")
        key_series = key_series.alias(self.entity_)
        if lengths is not None:
            given = np.asarray(lengths)
            if given.shape != (n,) or not np.issubdtype(given.dtype, np.integer) or (given < 0).any():
                raise ConfigError(f"lengths must be {n} whole numbers (at least 0), one per context row.")
            keep = np.flatnonzero(given > 0)
            frame, key_series = frame[keep], key_series.gather(keep)
            frame = frame.with_columns(pl.Series(LENGTH, given[keep], dtype=pl.Int64))
        root = np.random.SeedSequence(self.config.seed if seed is None else seed)
        s_static, s_torch, s_decode = root.spawn(3)
        entities = self.static_generator_.sample_seeded(frame, seed=int(s_static.generate_state(1)[0]))
        drawn = np.clip(
            np.rint(entities.get_column(LENGTH).cast(pl.Float64).fill_null(1).to_numpy()), 1, None
        ).astype(np.int64)
        return self._events(entities, drawn, key_series, s_torch, s_decode)

    def _events(
        self, entities: pl.DataFrame, lengths: np.ndarray, keys: pl.Series,
        s_torch: np.random.SeedSequence, s_decode: np.random.SeedSequence,
    ) -> pl.DataFrame:
        """Generate the events of ``entities`` (one key each) and lay them out entity by entity
        in the given entity order (the net runs on them sorted longest first)."""
        n = entities.height
        sort = np.argsort(-lengths, kind="stable")
        ordered, ordered_lengths = entities[sort], lengths[sort]
        ctx_names = self.context_tokenizer_.columns
        ctx = torch.as_tensor(self.context_tokenizer_.transform(ordered.select(ctx_names)),
                              device=self.device_)
        gen = torch.Generator(device=self.device_).manual_seed(int(s_torch.generate_state(1)[0]))
        tokens = self.net_.generate(ctx, ordered_lengths, window=self.config.max_length, generator=gen)
        rng = np.random.default_rng(s_decode)
        events = self.event_tokenizer_.inverse_transform(tokens.cpu().numpy(), rng=rng)
        times = self._times(ordered.get_column(START), events.get_column(GAP), ordered_lengths)
        # events back in the given entity order (a stable sort keeps each entity's time order)
        back = np.argsort(np.repeat(sort, ordered_lengths), kind="stable")
        index = np.repeat(np.arange(n), lengths)
        out = pl.DataFrame({self.entity_: keys.alias(self.entity_).gather(index)}).with_columns(
            times.gather(back).alias(self.order_),
            *[entities.get_column(c).gather(index) for c in self.static_],
            *[events.get_column(c).gather(back) for c in self.events_],
        )
        return out.select(
            pl.col(c).cast(self.schema_[c].polars_dtype, strict=False) for c in self.schema_.names
        )

    def _times(self, start: pl.Series, gap_feature: pl.Series, lengths: np.ndarray) -> pl.Series:
        """Start plus the cumulative sum of the generated gaps, per entity (vectorised)."""
        gaps = np.expm1(gap_feature.cast(pl.Float64).fill_null(0.0).to_numpy())
        gaps = np.maximum(np.nan_to_num(gaps, nan=0.0), 0.0)
        if self.strict_:
            gaps = np.maximum(gaps, self.min_gap_)
        if self.integral_:
            gaps = np.rint(gaps)
            if self.strict_:
                gaps = np.maximum(gaps, 1.0)
        first = (np.cumsum(lengths) - lengths).astype(np.int64)
        gaps[first] = 0.0
        base = _order_values(start.cast(self._order_dtype(), strict=False))
        if self.integral_:
            steps = gaps.astype(np.int64)
            csum = np.cumsum(steps)
            within = csum - np.repeat(csum[first], lengths)
            values: np.ndarray = np.repeat(base.astype(np.int64), lengths) + within
        else:
            csum = np.cumsum(gaps)
            within = csum - np.repeat(csum[first], lengths)
            values = np.repeat(base, lengths) + within
        return _from_order_values(values, self._order_dtype())

    def _order_dtype(self) -> pl.DataType:
        return self.schema_[self.order_].polars_dtype

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``sequential.json``, ``static/`` and ``events/`` (safetensors + JSON), atomically."""
        from synthkit import __version__
        from synthkit.artifacts import manifest_hash, staged_dir, write_model_dir, write_state

        self._check_fitted()
        dest = Path(path)
        with staged_dir(dest, overwrite=overwrite) as tmp:
            self.static_generator_.save(tmp / STATIC_DIR)
            tensors = module_state({_NET: self.net_})
            metas = {}
            for prefix, tok in ((_CTX, self.context_tokenizer_), (_EV, self.event_tokenizer_)):
                arrays, meta = tok.state()
                tensors.update({prefix + k: np.ascontiguousarray(v) for k, v in arrays.items()})
                metas[prefix.rstrip(".")] = meta
            write_model_dir(
                tmp / EVENTS_DIR,
                manifest={"generator": "sequential/events", "config": self.config.model_dump(mode="json"),
                          "data_fingerprint": self.data_fingerprint_},
                tensors=tensors,
                files={"tokenizers.json": {
                    **metas, "context_vocab": self.context_tokenizer_.vocab_sizes,
                    "event_vocab": self.event_tokenizer_.vocab_sizes,
                }},
            )
            state = {
                "format_version": FORMAT_VERSION,
                "synthkit_version": __version__,
                "generator": "sequential/events",
                "config": self.config.model_dump(mode="json"),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "plan": {
                    "entity": self.entity_, "order": self.order_, "static": self.static_,
                    "events": self.events_, "schema": self.schema_.to_dict(),
                    "id_spec": self.id_spec_, "integral": self.integral_, "strict": self.strict_,
                    "min_gap": self.min_gap_, "data_fingerprint": self.data_fingerprint_,
                    "context": self.context_,
                },
                "fit_report": json.loads(json.dumps(self.fit_report_, default=str)),
                "models": {STATIC_DIR: manifest_hash(tmp / STATIC_DIR),
                           EVENTS_DIR: manifest_hash(tmp / EVENTS_DIR)},
            }
            write_state(tmp / STATE_FILE, state)
        return dest

    @classmethod
    def load(cls, path: str | Path) -> SequentialSynthesizer:
        """Load a directory written by :meth:`save`; every hash is checked first."""
        from synthkit.artifacts import manifest_hash, read_model_dir, read_state
        from synthkit.generators.registry import load as load_generator

        root = Path(path)
        state = read_state(root / STATE_FILE, format_version=FORMAT_VERSION, what="sequential model",
                           hint="Save one with SequentialSynthesizer.save(path).")
        for sub, expected in state["models"].items():
            if manifest_hash(root / sub) != expected:
                raise ArtifactError(f"The model in {root / sub} is not the one saved.",
                                    hint="The directory was changed after saving; save it again.")
        synth = cls(**state["config"])
        plan = state["plan"]
        artifact = read_model_dir(root / EVENTS_DIR)
        tok_state = artifact.files["tokenizers.json"]
        tokenizers = []
        for prefix in (_CTX, _EV):
            arrays = {k[len(prefix):]: v for k, v in artifact.tensors.items() if k.startswith(prefix)}
            tokenizers.append(TableTokenizer.from_state(arrays, tok_state[prefix.rstrip(".")]))
        ctx_tok, ev_tok = tokenizers
        if (ctx_tok.vocab_sizes != tok_state["context_vocab"]
                or ev_tok.vocab_sizes != tok_state["event_vocab"]):
            raise ArtifactError(f"{root / EVENTS_DIR}: vocabularies do not match the tokenizers.",
                                hint="The model directory is inconsistent; re-train it.")
        net = synth._new_net(ctx_tok.vocab_sizes, ev_tok.vocab_sizes)
        load_module_state({_NET: net}, {k: v for k, v in artifact.tensors.items()
                                        if k.startswith(_NET + ".")})
        synth.device_ = resolve_device(synth.config.device, fallback=True)
        synth.net_ = net.to(synth.device_).eval()
        synth.context_tokenizer_ = ctx_tok
        synth.event_tokenizer_ = ev_tok
        synth.static_generator_ = load_generator(root / STATIC_DIR)
        synth.entity_ = plan["entity"]
        synth.order_ = plan["order"]
        synth.static_ = list(plan["static"])
        synth.context_ = None if plan.get("context") is None else list(plan["context"])
        synth.events_ = list(plan["events"])
        synth.schema_ = Schema.from_dict(plan["schema"])
        synth.id_spec_ = plan["id_spec"]
        synth.integral_ = bool(plan["integral"])
        synth.strict_ = bool(plan["strict"])
        synth.min_gap_ = float(plan["min_gap"])
        synth.data_fingerprint_ = plan["data_fingerprint"]
        synth.fit_report_ = state.get("fit_report", {})
        return synth

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("This SequentialSynthesizer is not fitted yet.",
                                 hint="Call fit(events, entity=..., order=...) first.")


# --- helpers ---------------------------------------------------------------------------------------
def _check_order_and_keys(df: pl.DataFrame, entity: str, order: str) -> None:
    """Entity keys and order values present; order numeric or temporal."""
    if df.get_column(entity).null_count():
        raise DataError(f"The entity column '{entity}' has {df.get_column(entity).null_count()} "
                        "nulls: every event must belong to an entity.",
                        hint="Drop those rows or give them a key.")
    s = df.get_column(order)
    if s.null_count():
        raise DataError(f"The order column '{order}' has {s.null_count()} nulls: events without a "
                        "time cannot be placed in their sequence.",
                        hint=f"Drop or fill the rows where '{order}' is null.")
    if not (s.dtype.is_numeric() or s.dtype.is_temporal()) or s.dtype == pl.Time:
        raise SchemaError(f"The order column '{order}' is {s.dtype}; it must hold numbers, dates "
                          "or datetimes.", hint=f"Parse it first, e.g. pl.col('{order}').str.to_datetime().")
    if s.dtype.is_float() and not np.isfinite(s.to_numpy()).all():
        raise DataError(f"The order column '{order}' has NaN or infinite values.",
                        hint=f"Drop or fix those rows of '{order}'.")


def _order_values(series: pl.Series) -> np.ndarray:
    """Order values as float64 (dates in days, datetimes in their own unit since 1970)."""
    s = series.to_physical() if series.dtype.is_temporal() else series
    return s.cast(pl.Float64).to_numpy().astype(np.float64, copy=False)


def _from_order_values(values: np.ndarray, dtype: pl.DataType) -> pl.Series:
    if dtype.is_temporal():
        physical = pl.Int32 if dtype == pl.Date else pl.Int64
        return pl.Series(np.asarray(values).astype(np.int64)).cast(physical).cast(dtype)
    return pl.Series(values).cast(dtype, strict=False)


def _integral(series: pl.Series) -> bool:
    return series.dtype.is_temporal() or series.dtype.is_integer()


def _windows(
    context: np.ndarray, events: np.ndarray, lengths: np.ndarray, window: int
) -> np.ndarray:
    """Training rows: ``[continuation, events in window, context..., window × event tokens]``,
    one per window of ``window`` consecutive events of an entity (events sorted by entity)."""
    n_tokens = events.shape[1]
    per_entity = -(-lengths // window)
    first_row = np.concatenate([[0], np.cumsum(per_entity)[:-1]])
    rows = int(per_entity.sum())
    lead = _LEAD + context.shape[1]
    out = np.full((rows, lead + window * n_tokens), -1.0, dtype=np.float32)
    owner = np.repeat(np.arange(lengths.size), per_entity)
    k = np.arange(rows) - first_row[owner]
    out[:, 0] = (k > 0).astype(np.float32)
    out[:, 1] = np.minimum(lengths[owner] - k * window, window)
    out[:, _LEAD:lead] = context[owner]
    entity_of_event = np.repeat(np.arange(lengths.size), lengths)
    pos = np.arange(events.shape[0]) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    row = first_row[entity_of_event] + pos // window
    col = lead + (pos % window)[:, None] * n_tokens + np.arange(n_tokens)[None, :]
    out[row[:, None], col] = events
    return out
