"""ARGN: an autoregressive generator over a row's columns (in the spirit of TabularARGN).

* Tokens (:class:`~synthkit.prepare.tokens.TableTokenizer`): every learned column becomes one
  token from its own vocabulary, numericals and datetimes two with ``sub_bins > 1``.
  Numericals and datetimes are quantile bins (a value holding many rows gets a bin of its own;
  few distinct values get a bin each, reproduced exactly), with the value inside a bin drawn
  from the column's empirical quantile function; categories are native; missing values are a
  token of their own. *Rare category protection*: categories seen in fewer than
  ``rare_category_threshold`` rows share one protected token and are never stored in the model
  or reproduced; that token is sampled as ``rare_placeholder`` (``"(other)"``) or, with
  ``rare_category_replacement="frequent"``, as a frequent category drawn by its frequency.
  *Extreme value protection* (``protect_extremes=True``, off by default): numbers beyond the
  k-th smallest or largest value (k the same threshold) are capped there, so the few most
  extreme are never reproduced.
* Model (:class:`~synthkit.nn.argn.ARGNNet`): each token is predicted from the tokens read
  before it by a small causal transformer over the column tokens, with per-position softmax
  heads; the loss is the sum of per-token cross-entropies (the row's negative log-likelihood).
* Any-order training: a share (``flexible_order``) of the training rows is read with a random
  set of columns first (then the rest in column order), so the one model also knows every
  "these columns are given" conditional. Sampling reads the given columns first: conditions
  (``sample(n, conditions={...})``) and seed data (:meth:`ARGNGenerator.sample_seeded`, one
  output row per seed row) are met exactly by every row at the cost of an unconditional sample,
  however rare the asked value.
* Training runs in the shared :class:`~synthkit.nn.Trainer` (checkpoints and resume, early
  stopping on a validation loss by default, so a default fit stops when it stops improving).
  Adam's learning rate halves after two epochs without a better validation loss, and an
  exponential moving average of the weights (``ema_decay``) is what is validated, kept and
  sampled: both make the fitted distribution smoother and better calibrated than the last
  step's weights. Sampling draws token by token with a key/value cache, in bounded chunks,
  seeded; optional ``temperature`` and ``top_p`` shape the draws.
* Differential privacy (``dp={"epsilon": ...}``) covers the whole fit. The tokenizer is fitted
  privately (:meth:`~synthkit.prepare.tokens.TableTokenizer.fit_private`) with
  ``dp.preprocessing_share`` of the budget: bin edges from noisy quantile knots inside noisy
  bounds (public bounds give equal-width bins for free), category vocabularies by
  stability-based selection (so rare categories can never be released: they share the
  protected token), values within a bin from the noisy knots, never the empirical quantiles;
  declared categories and bounds cost nothing, and when everything is declared DP-SGD gets the
  whole budget. The net (Linear, Embedding and LayerNorm layers only, a per-row loss) is
  trained with DP-SGD in the shared Trainer (Opacus: Poisson batches, per-row clipping and
  noise, its accountant's epsilon in the fit report's ``privacy``). No rows are held out:
  ``validation_fraction`` defaults to 0 and early stopping to off under ``dp``, and the
  learning rate follows no validation loss; the weight average (``ema_decay``) only
  post-processes the private iterates. Any-order training, conditions and
  :meth:`ARGNGenerator.sample_seeded` work as without ``dp``; conditions may ask only for
  released categories.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field, model_validator

from synthkit.errors import ConfigError, DataError
from synthkit.frames import check_table, normalise_missing, to_polars
from synthkit.generators.base import MAX_CONDITION_VALUES, Generator, _jsonable
from synthkit.generators.neural import (
    NeuralConfig,
    PrivatePlan,
    encoder_seed,
    family_state,
    make_trainer,
    privacy_report,
    run_fingerprint,
)
from synthkit.nn import (
    StepContext,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)
from synthkit.nn.argn import ARGNNet
from synthkit.nn.privacy import SGDBudget
from synthkit.prepare.tokens import TableTokenizer
from synthkit.schema import Schema

_STATE_FILE = "argn.json"
_STATE_VERSION = 1
_NET = "net"
_EMA = "ema"
#: Epochs without a better validation loss after which the learning rate is multiplied by
#: _PLATEAU_FACTOR (early stopping, by default after 8 such epochs, ends the fit).
_PLATEAU_EPOCHS = 2
_PLATEAU_FACTOR = 0.5
_TOKENS_PREFIX = "tokens."
#: Rows scored at once when validating.
_CHUNK_ROWS = 20_000
#: Bytes of key/value cache one sampling chunk may hold (bounds memory for any n).
_CACHE_BYTES = 128 * 2**20
#: Without ``epochs``, train for about this many optimisation steps, within these epochs.
_AUTO_STEPS = 4_000
_AUTO_EPOCHS = (10, 100)
#: Options that only shape sampling: a resumed run may change them.
_SAMPLING_FIELDS = {"temperature": 1.0, "top_p": 1.0}


class ARGNConfig(NeuralConfig):
    """Options of ARGN; the defaults suit tables of a few thousand to a few million rows."""

    epochs: int | None = Field(  # type: ignore[assignment]
        None,
        ge=1,
        description="Most passes over the training rows; None: enough for about "
        f"{_AUTO_STEPS:,} optimisation steps, from {_AUTO_EPOCHS[0]} to {_AUTO_EPOCHS[1]} epochs. "
        "Early stopping usually ends the fit sooner.",
    )
    batch_size: int = Field(512, ge=1, description="Rows per optimisation step.")
    numerical: Literal["quantile"] = Field(
        "quantile", description="ARGN always encodes numbers as quantile bins (see bins, sub_bins)."
    )
    validation_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share of rows held out to compute a validation loss (0 under dp: a "
        "private fit holds out nothing).",
    )
    early_stopping_patience: int | None = Field(
        8,
        ge=1,
        description="Stop after this many epochs without a better validation loss (needs "
        "validation_fraction > 0); the best weights are kept. None trains every epoch (the "
        "default under dp).",
    )
    embedding_dim: int = Field(64, ge=4, description="Width of the token embeddings and the transformer.")
    layers: int = Field(2, ge=1, description="Transformer blocks.")
    heads: int = Field(4, ge=1, description="Attention heads (embedding_dim must be a multiple).")
    feedforward_dim: int = Field(128, ge=1, description="Hidden width of each block's feed-forward layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on embeddings and residuals.")
    learning_rate: float = Field(
        2e-3, gt=0.0, description="Adam learning rate (halved when the validation loss stalls)."
    )
    l2scale: float = Field(1e-5, ge=0.0, description="Adam weight decay.")
    ema_decay: float | None = Field(
        0.99,
        gt=0.0,
        lt=1.0,
        description="Decay of the exponential moving average of the weights that is validated, "
        "saved and sampled (smoother than the last step's weights); None uses the raw weights.",
    )
    bins: int = Field(
        64, ge=2, le=100_000, description="Quantile bins per numerical or datetime column."
    )
    sub_bins: int = Field(
        1,
        ge=1,
        le=10_000,
        description="Sub-bins per bin, a second token per numerical column (1: one token; the "
        "value inside a bin still follows the column's quantile function).",
    )
    rare_category_threshold: int = Field(
        5,
        ge=1,
        description="Categories seen in fewer rows than this are protected: never stored or "
        "reproduced (1 switches protection off). Declared public categories are exempt.",
    )
    rare_category_replacement: Literal["placeholder", "frequent"] = Field(
        "placeholder",
        description="What the protected token is sampled as: rare_placeholder, or a frequent "
        "category drawn by its training frequency.",
    )
    rare_placeholder: str = Field("(other)", description="Text sampled for protected categories.")
    protect_extremes: bool = Field(
        False,
        description="Cap numerical and datetime columns at their k-th smallest and largest value "
        "(k = rare_category_threshold): the few most extreme values are never reproduced. Off by "
        "default: the schema saved with the model records each column's min and max anyway.",
    )
    flexible_order: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Share of training rows read with a random set of columns first: what "
        "conditions and seed data on any column need. 0 trains the column order only (then "
        "only leading columns can be fixed exactly; other conditions are met by filtering).",
    )
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature (1: the model's own).")
    top_p: float = Field(
        1.0, gt=0.0, le=1.0, description="Nucleus sampling: draw from the top-p mass (1: all)."
    )

    @model_validator(mode="before")
    @classmethod
    def _private_defaults(cls, data: Any) -> Any:
        """Under ``dp`` no rows are held out: validation and early stopping default to off."""
        if isinstance(data, dict) and data.get("dp") is not None:
            data = {"validation_fraction": 0.0, "early_stopping_patience": None, **data}
        return data

    @model_validator(mode="after")
    def _check_consistent(self) -> ARGNConfig:
        if self.embedding_dim % self.heads:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be a multiple of heads ({self.heads})"
            )
        if self.max_modes != NeuralConfig.model_fields["max_modes"].default:
            raise ValueError("max_modes does not apply: ARGN bins numbers by quantiles (see bins)")
        if self.dp is not None and (
            self.validation_fraction > 0 or self.early_stopping_patience is not None
        ):
            raise ValueError(
                "differentially private training cannot hold out rows for validation or early "
                "stopping (choosing by a loss on real rows would spend budget no accountant "
                "sees); leave validation_fraction at 0 and early_stopping_patience at None with dp"
            )
        return self


class ARGNTrainingTask(TrainingTask):
    """ARGN's model and loss for the shared Trainer: the rows' negative log-likelihood."""

    def __init__(
        self,
        net: ARGNNet,
        column_of: np.ndarray,
        sub_of: np.ndarray,
        *,
        learning_rate: float,
        l2scale: float,
        flexible_order: float,
        ema_decay: float | None,
        device: torch.device,
    ) -> None:
        self.net = net
        self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=l2scale)
        self.column_of = torch.as_tensor(column_of, dtype=torch.long, device=device)
        self.sub_of = torch.as_tensor(sub_of, dtype=torch.long, device=device)
        self.n_columns = int(column_of.max()) + 1
        self.flexible_order = flexible_order
        self.ema_decay = ema_decay
        self.ema = copy.deepcopy(net).requires_grad_(False) if ema_decay is not None else None
        self.last_val: float | None = None
        self.best_val: float | None = None
        self.bad_epochs = 0

    def modules(self) -> dict[str, torch.nn.Module]:
        return {_NET: self.net, **({_EMA: self.ema} if self.ema is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    dp_row_losses = True  # train_step hands ctx.optimize its per-row losses

    def private_modules(self) -> tuple[list[str], list[str]]:
        """The trained network reads real rows (the weight average only follows it)."""
        return [_NET], ["adam"]

    @property
    def sampler(self) -> ARGNNet:
        """What is validated, saved and sampled: the weight average if there is one."""
        return self.ema if self.ema is not None else self.net

    def orders(self, rows: int, generator: torch.Generator) -> torch.Tensor | None:
        """Reading order per row: the column order, or (for a ``flexible_order`` share of rows)
        a random set of columns first, each part in column order; a column's tokens stay
        together, bin before sub-bin."""
        if self.flexible_order <= 0.0:
            return None
        device = self.column_of.device
        flexible = torch.rand(rows, 1, generator=generator, device=device) < self.flexible_order
        share = torch.rand(rows, 1, generator=generator, device=device)
        first = (torch.rand(rows, self.n_columns, generator=generator, device=device) < share) & flexible
        key = torch.arange(self.n_columns, device=device) + self.n_columns * (~first).long()
        return torch.argsort(key[:, self.column_of] * 2 + self.sub_of, dim=1)

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One Adam step on the mean negative log-likelihood of the batch's rows."""
        tokens = batch.long()
        order = self.orders(tokens.shape[0], ctx.generator)
        with ctx.autocast():
            nll = self.net.nll(tokens, order, generator=ctx.generator)
        rows = nll.float()
        loss = rows.mean()
        ctx.optimize(loss, self.optimizer, rows=rows)
        if self.ema is not None and self.ema_decay is not None:
            decay = min(self.ema_decay, (1.0 + ctx.step) / (10.0 + ctx.step))
            with torch.no_grad():
                for avg, live in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                    avg.lerp_(live, 1.0 - decay)
        return {"loss": loss.detach()}

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> dict[str, Any]:
        """Halve the learning rate after _PLATEAU_EPOCHS epochs without a better validation loss."""
        if self.last_val is not None:
            if self.best_val is None or self.last_val < self.best_val - 1e-4:
                self.best_val, self.bad_epochs = self.last_val, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= _PLATEAU_EPOCHS:
                    self.bad_epochs = 0
                    for group in self.optimizer.param_groups:
                        group["lr"] *= _PLATEAU_FACTOR
            self.last_val = None
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def extra_checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The learning-rate schedule's bookkeeping (the rate itself is in the optimizer)."""
        return {}, {"best_val": self.best_val, "bad_epochs": self.bad_epochs}

    def load_extra_checkpoint_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.best_val = meta.get("best_val")
        self.bad_epochs = int(meta.get("bad_epochs", 0))

    def validation_loss(self, data: torch.Tensor, ctx: StepContext) -> float | None:
        """Mean negative log-likelihood of held-out rows in the column order (what sampling uses)."""
        if data.shape[0] == 0:
            return None
        total = 0.0
        self.sampler.eval()
        for start in range(0, data.shape[0], _CHUNK_ROWS):
            chunk = data[start : start + _CHUNK_ROWS].long()
            with ctx.autocast():
                total += float(self.sampler.nll(chunk).float().sum())
        self.last_val = total / data.shape[0]
        return self.last_val


class ARGNGenerator(Generator):
    """ARGN: autoregressive over column tokens, any-order trained; exact conditions and seeds."""

    name = "tabular/argn"
    config_class = ARGNConfig
    config: ARGNConfig
    supports_resume: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = True

    # --- fit ---------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        """Tokenise the table, train the net in the shared Trainer, keep what sampling needs."""
        cfg = self.config
        if df.width == 0:
            raise DataError(
                "ARGN has no column to learn: the table holds only ids, personal data or text.",
                hint="Keep at least one numerical, categorical, boolean or datetime column, "
                "or use tabular/copula, which fills such tables without training.",
            )
        tokenizer = TableTokenizer(
            bins=cfg.bins,
            sub_bins=cfg.sub_bins,
            rare_threshold=cfg.rare_category_threshold,
            rare_replacement=cfg.rare_category_replacement,
            placeholder=cfg.rare_placeholder,
            protect_extremes=cfg.protect_extremes and cfg.dp is None,
        )
        plan = None
        if cfg.dp is not None:
            plan = self._fit_private_tokens(tokenizer, df, schema)
        else:
            tokenizer.fit(df, schema)
        matrix = tokenizer.transform(df).astype(np.float32)
        trainer = make_trainer(
            cfg.model_copy(update={"epochs": self._epochs(df.height)}),
            "tabular/argn" + (" (private)" if plan is not None else ""),
            dp=plan.sgd if plan is not None else None,
        )
        with seeded(cfg.seed):
            net = self._new_net(tokenizer)
        net = net.to(trainer.device)
        task = ARGNTrainingTask(
            net,
            tokenizer.column_of,
            tokenizer.sub_of,
            learning_rate=cfg.learning_rate,
            l2scale=cfg.l2scale,
            flexible_order=cfg.flexible_order,
            ema_decay=cfg.ema_decay,
            device=trainer.device,
        )
        shaping = cfg.model_copy(update=_SAMPLING_FIELDS)
        result = trainer.fit(
            task, matrix, resume=resume,
            fingerprint=run_fingerprint(shaping, self.data_fingerprint_, tokenizer),  # type: ignore[arg-type]
        )
        self.tokenizer_ = tokenizer
        self.net_ = task.sampler.eval()
        self.device_ = trainer.device
        self._forget_protected()
        protected = tokenizer.protected()
        self.fit_report_["training"] = result.to_dict()
        self.fit_report_.setdefault("warnings", []).extend(result.warnings)
        # (a private fit cannot know whether any category went unreleased: no such warnings)
        for column, info in protected.items() if plan is None else ():
            shown = {"placeholder": repr(cfg.rare_placeholder), "frequent": "frequent categories",
                     "null": "null"}[info["sampled_as"]]
            self.fit_report_["warnings"].append(
                f"tabular/argn: {info['categories']} categories of '{column}' were seen in fewer "
                f"than {cfg.rare_category_threshold} rows; they are protected and sampled as {shown}."
            )
        if plan is not None:
            self.fit_report_["privacy"] = privacy_report(plan, result.privacy)
            self.condition_values_ = self._released_values()
        self.fit_report_["argn"] = {
            "tokens": tokenizer.n_tokens,
            "vocab_sizes": {
                c: [tokenizer.vocab_sizes[p] for p in tokenizer.positions(c)] for c in tokenizer.columns
            },
            "parameters": sum(p.numel() for p in net.parameters()),
            "protected_categories": protected,
            "capped_extreme_rows": tokenizer.capped(),
        }

    def _fit_private_tokens(
        self, tokenizer: TableTokenizer, df: pl.DataFrame, schema: Schema
    ) -> PrivatePlan:
        """Fit ``tokenizer`` under differential privacy and plan DP-SGD with what is left.

        ``dp.preprocessing_share`` of epsilon and delta pays for the bounds, quantile knots and
        category sets the schema does not declare public; when it declares everything, DP-SGD
        gets the whole budget. The two parts compose by basic composition (the report adds
        them up).
        """
        dp = self.config.dp
        assert dp is not None
        delta = dp.resolved_delta(df.height)
        share = dp.preprocessing_share if TableTokenizer.needs_private_facts(schema) else 0.0
        seed = encoder_seed(self.config, self.data_fingerprint_)
        facts = tokenizer.fit_private(
            df,
            schema,
            epsilon=dp.epsilon * share,
            delta=delta * share,
            rng=np.random.default_rng(np.random.SeedSequence([seed, 0xA9])),
        )
        encoding = dict(facts.report)
        encoding["epsilon"] = facts.epsilon if share else 0.0
        encoding["delta"] = delta * share
        encoding["share"] = share
        sgd = SGDBudget(
            epsilon=dp.epsilon * (1.0 - share),
            delta=delta * (1.0 - share),
            max_grad_norm=dp.max_grad_norm,
            accountant=dp.accountant,
        )
        return PrivatePlan(dp=dp, delta=delta, encoding=encoding, sgd=sgd)

    def _released_values(self) -> dict[str, list[Any]]:
        """What a private fit lets conditions ask for: released or declared categories only."""
        out: dict[str, list[Any]] = {}
        for name in self.tokenizer_.columns:
            values = self.tokenizer_.known_values(name)
            if values is not None and len(values) <= MAX_CONDITION_VALUES:
                out[name] = sorted(_jsonable(values), key=lambda v: (str(type(v)), v))
        return out

    def _epochs(self, rows: int) -> int:
        """``epochs``, or (None) enough epochs for about _AUTO_STEPS steps within _AUTO_EPOCHS."""
        cfg = self.config
        if cfg.epochs is not None:
            return cfg.epochs
        train_rows = max(1, rows - int(round(rows * cfg.validation_fraction)))
        steps_per_epoch = -(-train_rows // cfg.batch_size)
        low, high = _AUTO_EPOCHS
        return int(min(max(-(-_AUTO_STEPS // steps_per_epoch), low), high))

    def _new_net(self, tokenizer: TableTokenizer) -> ARGNNet:
        cfg = self.config
        return ARGNNet(
            tokenizer.vocab_sizes,
            ordinal=tokenizer.ordinal(),
            dim=cfg.embedding_dim,
            layers=cfg.layers,
            heads=cfg.heads,
            feedforward_dim=cfg.feedforward_dim,
            dropout=cfg.dropout,
        )

    def _forget_protected(self) -> None:
        """Conditions may only ask for what the model can produce: rare categories are dropped
        from the values the base class saves (conditions.json), so they never leave the fit."""
        for name in list(self.condition_values_):
            allowed = self.tokenizer_.known_values(name)
            if allowed is not None:
                keep = set(allowed)
                self.condition_values_[name] = [v for v in self.condition_values_[name] if v in keep]

    # --- sample ------------------------------------------------------------------------------
    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        """Rows with the conditioned columns read first and fixed: every row meets them."""
        fixed_columns = list(conditions or {})
        if fixed_columns and not self._can_fix(fixed_columns):
            fixed_columns = []  # trained in column order only: the base class filters instead
        if fixed_columns:
            assert conditions is not None
            given = pl.DataFrame({c: [conditions[c]] for c in fixed_columns})
            row = self.tokenizer_.transform(given, columns=fixed_columns)
            fixed = np.repeat(row, n, axis=0)
        else:
            fixed = np.full((n, self.tokenizer_.n_tokens), -1, dtype=np.int64)
        return self._complete(fixed, fixed_columns, rng)

    def _sample_meeting(
        self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None
    ) -> pl.DataFrame:
        """Conditions the model can fix need no filtering (nor the base's oversampling)."""
        if conditions and self._can_fix(list(conditions)):
            return self._sample(n, rng=rng, conditions=conditions)
        return super()._sample_meeting(n, rng, conditions)

    def sample_seeded(self, seed_data: Any, *, seed: int | None = None) -> pl.DataFrame:
        """One new row per row of ``seed_data``, keeping its values and generating the rest.

        ``seed_data`` (polars or pandas) holds some of the training schema's columns; the
        learned ones are read first by the model, so every other column is drawn given them
        (e.g. a seed of ``age`` and ``education`` gives rows with exactly those values and
        wages, jobs, ... that fit them). Nulls are values too (in columns that had nulls).
        Seed columns of kind id, pii or text are kept as given instead of generated.
        """
        self._check_fitted()
        frame = normalise_missing(to_polars(seed_data))
        unknown = [c for c in frame.columns if c not in self.schema_]
        if unknown:
            raise ConfigError(
                f"seed_data has columns the model was not trained on: {unknown}.",
                hint=f"Seed columns must be among {self.schema_.names}.",
            )
        if frame.height == 0:
            return self._empty_frame()
        check_table(frame, what="seed data")
        learned = [c for c in self.tokenizer_.columns if c in frame.columns]
        if learned and not self._can_fix(learned):
            raise ConfigError(
                f"This model was trained in column order only (flexible_order=0), so it can only "
                f"be seeded with leading columns, not {learned}.",
                hint=f"Seed with the first columns of {self.tokenizer_.columns}, or re-train with "
                "flexible_order > 0.",
            )
        fixed = self.tokenizer_.transform(frame, columns=learned)
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        part = self._complete(fixed, learned, rng)
        filled = self._fill(frame.height, rng, 0)
        out = self._assemble(part, filled)
        return out.with_columns(
            frame.get_column(c).cast(out.schema[c], strict=False).alias(c) for c in frame.columns
        )

    def _can_fix(self, columns: list[str]) -> bool:
        """Whether ``columns`` can be read first: any set after any-order training, else only
        the leading columns."""
        if self.config.flexible_order > 0:
            return True
        return set(columns) == set(self.tokenizer_.columns[: len(columns)])

    def _complete(
        self, fixed: np.ndarray, fixed_columns: list[str], rng: np.random.Generator
    ) -> pl.DataFrame:
        """Draw every token not fixed (-1) in ``fixed``, reading the fixed columns first."""
        tok = self.tokenizer_
        given = sorted(p for c in fixed_columns for p in tok.positions(c))
        order = given + [p for p in range(tok.n_tokens) if p not in set(given)]
        device = self.device_
        gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**63 - 1)))
        limits = {
            p: (parent, torch.as_tensor(counts, device=device))
            for p, (parent, counts) in tok.sub_limits().items()
        }
        cfg = self.config
        n = fixed.shape[0]
        chunk = self._chunk_rows()
        frames = []
        for start in range(0, n, chunk):
            part = torch.as_tensor(fixed[start : start + chunk], device=device)
            drawn = self.net_.generate(
                part, order, len(given), generator=gen, temperature=cfg.temperature,
                top_p=cfg.top_p, sub_limits=limits,
            )
            frames.append(tok.inverse_transform(drawn.cpu().numpy(), rng=rng))
        if not frames:
            return tok.inverse_transform(fixed[:0], rng=rng)
        return pl.concat(frames, how="vertical")

    def _chunk_rows(self) -> int:
        """Rows per generation pass, so the key/value cache stays within _CACHE_BYTES."""
        cfg = self.config
        per_row = 4 * 2 * cfg.layers * self.tokenizer_.n_tokens * cfg.embedding_dim
        return int(min(max(_CACHE_BYTES // per_row, 256), 50_000))

    def _check_conditions(self, conditions: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, with a word on protected categories when a value is refused."""
        try:
            return super()._check_conditions(conditions)
        except ConfigError as exc:
            protected = self.tokenizer_.protected()
            asked = [c for c in conditions if c in protected]
            if not asked:
                raise
            k = self.config.rare_category_threshold
            raise ConfigError(
                f"{exc.message} Categories of {asked} seen in fewer than {k} training rows are "
                "protected: the model never stored them and cannot produce them.",
                hint=exc.hint,
            ) from exc

    # --- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Net weights, the tokenizer's arrays ("tokens.") and argn.json."""
        tensors = module_state({_NET: self.net_})
        arrays, meta = self.tokenizer_.state()
        tensors.update({_TOKENS_PREFIX + k: np.ascontiguousarray(v) for k, v in arrays.items()})
        state = {
            "version": _STATE_VERSION,
            "vocab_sizes": self.tokenizer_.vocab_sizes,
            "tokenizer": meta,
        }
        return tensors, {_STATE_FILE: state}

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        """Rebuild the tokenizer and the net (on ``config.device``) from ``_state``."""
        state = family_state(files, _STATE_FILE, _STATE_VERSION)
        arrays = {
            k[len(_TOKENS_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_TOKENS_PREFIX)
        }
        self.tokenizer_ = TableTokenizer.from_state(arrays, state["tokenizer"])
        vocab = [int(v) for v in state["vocab_sizes"]]
        if vocab != self.tokenizer_.vocab_sizes:
            from synthkit.errors import ArtifactError

            raise ArtifactError(
                "argn.json's vocabularies do not match its tokenizer.",
                hint="The model directory is inconsistent; re-train it.",
            )
        self.device_ = resolve_device(self.config.device, fallback=True)
        net = self._new_net(self.tokenizer_)
        load_module_state({_NET: net}, {k: v for k, v in tensors.items() if k.startswith(_NET + ".")})
        self.net_ = net.to(self.device_).eval()
