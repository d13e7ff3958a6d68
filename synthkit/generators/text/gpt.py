"""``text/gpt``: a small decoder-only transformer trained from scratch on a text corpus.

* **Tokenizer** — a byte-level BPE (Hugging Face ``tokenizers``) trained on the corpus, saved as
  its own JSON (``tokenizer.json``) in the model directory. Byte-level: any text encodes, nothing
  is ever out of vocabulary.
* **Net** (:class:`GPTNet`) — token + position embeddings, pre-norm blocks of causal
  self-attention and a GELU feed-forward, a linear head. The first input position is a **label
  embedding** (the condition, e.g. a review's rating; one extra "no label" entry), so
  ``sample(n, conditions={"label": "great"})`` writes documents of that class. During training a
  ``label_dropout`` share of documents see "no label", so the model also works unconditionally
  (perplexity of unlabelled text). Built from ``nn.Linear``, ``nn.Embedding`` and
  ``nn.LayerNorm`` only, with a per-document loss: Opacus computes per-sample gradients, so
  ``dp=`` works through the shared Trainer.
* **Training** — the shared :class:`~synthkit.nn.Trainer` (device, bf16 mixed precision on CUDA,
  seeds, checkpoints and ``fit(..., resume=True)``, DP-SGD). Each document is one row of the float32
  matrix it takes: the label index, then the token ids (end-of-text token, then padding).
* **Sampling** — batched, token by token with a key/value cache; temperature, top-p, a maximum
  length and seeds (the same seed gives the same documents, also after save/load).

Differential privacy (``dp={"epsilon": ...}``) covers the model weights and every sample: the
tokenizer is then the plain byte alphabet (no merges learned from the corpus), the padded length
is ``max_length`` (not the corpus's longest document), the label set must be declared public with
``labels=[...]``, and class shares are not released (sampling without conditions uses the "no
label" prefix and returns null labels).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import polars as pl
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.nn import functional as F

from synthkit.errors import (
    ConfigError,
    DataError,
    EmptyDataError,
    MissingDependencyError,
    NotFittedError,
)
from synthkit.generators.base import (
    GeneratorConfig,
    NonTabularGenerator,
    _check_n,
)
from synthkit.nn import StepContext, Trainer, TrainingTask, load_module_state, module_state
from synthkit.nn.privacy import DPConfig, SGDBudget
from synthkit.nn.transformer import KVCache, TransformerBlock, seeded_dropout

G = TypeVar("G", bound="TextGPTGenerator")

PAD, EOS = "<pad>", "<eos>"
PAD_ID, EOS_ID = 0, 1
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "gpt.json"
STATE_VERSION = 1
_NET = "net"
#: Settings that change how a run is carried out, not what it learns.
RUN_ONLY_FIELDS = frozenset(
    {"epochs", "device", "progress", "checkpoint_dir", "checkpoint_every", "compile", "amp",
     "temperature", "top_p"}
)


class TextGPTConfig(GeneratorConfig):
    """Options of ``text/gpt`` (training names as in every family)."""

    text_column: str | None = Field(
        None, description="Text column of a table (default: its only string column)."
    )
    label_column: str | None = Field(
        None, description="Label (condition) column of a table; None trains unconditionally."
    )
    labels: list[str] | None = Field(
        None, description="The public label set (required with dp when there are labels)."
    )
    vocab_size: int = Field(4000, ge=300, le=2**20, description="BPE vocabulary size (bytes + merges).")
    max_length: int = Field(128, ge=4, le=4096, description="Most tokens per document (end token included).")
    dim: int = Field(128, ge=8, description="Width of the transformer.")
    layers: int = Field(4, ge=1, description="Transformer blocks.")
    heads: int = Field(4, ge=1, description="Attention heads (dim must divide by it).")
    feedforward_dim: int = Field(512, ge=8, description="Hidden width of each block's feed-forward.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    label_dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of documents trained without their label."
    )
    epochs: int = Field(20, ge=1, description="Passes over the corpus.")
    batch_size: int = Field(32, ge=1, description="Documents per optimisation step.")
    learning_rate: float = Field(5e-4, gt=0.0, description="AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0.0)
    temperature: float = Field(1.0, gt=0.0, description="Default sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Default nucleus (top-p) mass.")
    device: str = Field("auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', ...")
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (no effect on a CPU).")
    checkpoint_dir: str | None = Field(None, description="Checkpoints; needed for fit(..., resume=True).")
    checkpoint_every: int = Field(5, ge=1, description="Epochs between checkpoints.")
    progress: bool = Field(True, description="Show a progress line per epoch.")
    compile: bool = Field(False, description="torch.compile the network (PyTorch 2).")
    dp: DPConfig | None = Field(
        None, description="Differential privacy of the fit, e.g. {'epsilon': 8}: DP-SGD (Opacus)."
    )

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _shape(self) -> TextGPTConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.labels is not None and (not self.labels or len(set(self.labels)) != len(self.labels)):
            raise ValueError("labels must be a non-empty list of distinct values")
        return self


# --- the network ----------------------------------------------------------------------------
class GPTNet(nn.Module):
    """Decoder-only transformer with a label-embedding prefix (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        n_labels: int,
        max_length: int,
        *,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        feedforward_dim: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.vocab_size, self.n_labels, self.max_length = vocab_size, n_labels, max_length
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(max_length, dim)
        self.labels = nn.Embedding(n_labels + 1, dim)  # index n_labels: no label
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, feedforward_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        for emb in (self.tokens, self.positions, self.labels):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    @property
    def no_label(self) -> int:
        return self.n_labels

    def logits(
        self, tokens: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(rows, steps, vocab): at step i, the logits of token i given the label and tokens < i."""
        rows, steps = tokens.shape
        positions = torch.arange(steps, device=tokens.device).expand(rows, steps)
        x = torch.cat([self.labels(labels).unsqueeze(1), self.tokens(tokens[:, :-1])], dim=1)
        x = seeded_dropout(x + self.positions(positions), self.dropout, generator, self.training)
        for block in self.blocks:
            x = block(x, generator)
        return self.head(self.norm(x))

    def nll(
        self, tokens: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per document: the summed negative log-likelihood of its tokens and their number.

        Padding is not scored; each document's loss depends on that document only.
        """
        logits = self.logits(tokens, labels, generator=generator).float()
        ce = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
        mask = (tokens != PAD_ID).float()
        return (ce * mask).sum(1), mask.sum(1)

    @torch.no_grad()
    def generate(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator,
        max_length: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> torch.Tensor:
        """(rows, ≤ max_length) token ids, each row ending at its first end token (then padding)."""
        self.eval()
        rows, device = labels.shape[0], labels.device
        steps = min(max_length, self.max_length)
        head_dim = self.dim // self.heads
        dtype = self.head.weight.dtype
        caches = [
            KVCache(torch.empty(rows, self.heads, steps, head_dim, device=device, dtype=dtype),
                    torch.empty(rows, self.heads, steps, head_dim, device=device, dtype=dtype))
            for _ in self.blocks
        ]
        out = torch.full((rows, steps), PAD_ID, dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        x = self.labels(labels) + self.positions.weight[0]
        for step in range(steps):
            h = x.unsqueeze(1)
            for block, cache in zip(self.blocks, caches, strict=True):
                h = block(h, cache=cache)
            logits = self.head(self.norm(h[:, -1])).float()
            logits[:, PAD_ID] = -math.inf
            token = draw(logits, generator, temperature, top_p)
            token = torch.where(done, torch.full_like(token, PAD_ID), token)
            out[:, step] = token
            done |= token == EOS_ID
            if bool(done.all()) or step + 1 == steps:
                return out[:, : step + 1]
            x = self.tokens(token) + self.positions.weight[step + 1]
        return out


def draw(logits: torch.Tensor, generator: torch.Generator, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row from softmax(logits / temperature), within the top-p mass."""
    probs = torch.softmax(logits / max(temperature, 1e-6), dim=1)
    if top_p < 1.0:
        sorted_p, index = probs.sort(dim=1, descending=True)
        drop = sorted_p.cumsum(1) - sorted_p > top_p
        probs = torch.zeros_like(probs).scatter(1, index, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# --- the training task ------------------------------------------------------------------------
class _GPTTask(TrainingTask):
    def __init__(self, net: GPTNet, config: TextGPTConfig) -> None:
        self.net = net
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.label_dropout = config.label_dropout if net.n_labels else 0.0

    def modules(self) -> dict[str, torch.nn.Module]:
        return {_NET: self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    dp_row_losses = True  # train_step hands ctx.optimize its per-row losses

    def private_modules(self) -> tuple[list[str], list[str]]:
        return [_NET], ["adamw"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        labels, tokens = _split(batch)
        if ctx.private is None:  # trim padding every row of the batch has (per-row losses unchanged)
            used = int((tokens != PAD_ID).any(0).nonzero().max()) + 1
            tokens = tokens[:, :used]
        if self.label_dropout > 0:
            drop = torch.rand(labels.shape, generator=ctx.generator, device=labels.device) < self.label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.net.no_label), labels)
        with ctx.autocast():
            total, count = self.net.nll(tokens, labels, generator=ctx.generator)
        rows = total / count.clamp(min=1)
        loss = rows.mean()
        ctx.optimize(loss, self.optimizer, rows=rows.float())
        return {"loss": loss.detach()}


def _split(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Trainer batch as label indices (rows,) and token ids (rows, max length)."""
    return batch[:, 0].round().long(), batch[:, 1:].round().long()


# --- the generator ----------------------------------------------------------------------------
class TextGPTGenerator(NonTabularGenerator):
    """``text/gpt``: fit on a corpus (a TextCorpus, a table's text column, or a list of strings);
    ``sample(n, conditions={"label": v}, seed=)`` returns a polars DataFrame of new documents."""

    name: ClassVar[str] = "text/gpt"
    data_kind: ClassVar[str] = "text"
    config_class: ClassVar[type[GeneratorConfig]] = TextGPTConfig
    config: TextGPTConfig
    min_rows: ClassVar[int] = 2
    supports_resume: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = True
    #: Documents generated per network call.
    sample_chunk: ClassVar[int] = 256

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "net_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet.", hint="Call fit(corpus) first.")

    # --- fit -------------------------------------------------------------------------------
    def fit(self: G, data: Any, *, schema: Any = None, resume: bool = False) -> G:
        """Learn from ``data``: a TextCorpus, a DataFrame (``text_column`` / ``label_column``
        in the config, or found), or a list of strings."""
        if schema is not None:
            raise ConfigError(f"{self.registry_name} learns documents: it takes no table schema.")
        cfg = self.config
        docs, labels, text_name, label_name = _as_documents(data, cfg.text_column, cfg.label_column)
        if len(docs) < self.min_rows:
            raise DataError(f"{self.registry_name} needs at least {self.min_rows} documents, got {len(docs)}.")
        private = cfg.dp is not None
        if labels is not None:
            if cfg.labels is not None:
                unknown = sorted(set(labels) - set(cfg.labels))
                if unknown:
                    raise DataError(f"Labels {unknown[:10]} are not in the declared labels={cfg.labels}.")
                classes = list(cfg.labels)
            elif private:
                raise ConfigError(
                    "With dp= the label set must be declared public: the labels seen in the data "
                    "are a fact about it that DP-SGD does not cover.",
                    hint="Pass labels=[...] (every value the label column may take).",
                )
            else:
                classes = sorted(set(labels))
        else:
            classes = []
        tokenizer = _train_tokenizer(docs, cfg.vocab_size, byte_only=private)
        ids = [e.ids for e in tokenizer.encode_batch(docs)]
        longest = max(len(i) for i in ids) + 1
        length = cfg.max_length if private else min(cfg.max_length, longest)
        truncated = sum(len(i) + 1 > length for i in ids)
        index = {c: i for i, c in enumerate(classes)}
        y = np.asarray([index[v] for v in labels], np.int64) if labels is not None else np.zeros(len(docs), np.int64)
        matrix = np.full((len(docs), 1 + length), PAD_ID, np.float32)
        matrix[:, 0] = y
        for r, seq in enumerate(ids):
            seq = seq[: length - 1] + [EOS_ID]
            matrix[r, 1 : 1 + len(seq)] = seq

        self.text_column_, self.label_column_ = text_name, label_name if classes else None
        self.classes_ = classes
        counts = np.bincount(y, minlength=len(classes)) if classes else np.zeros(0)
        self.class_shares_ = [] if private or not classes else (counts / counts.sum()).tolist()
        self.tokenizer_ = tokenizer
        self.seq_length_ = length
        self.data_fingerprint_ = _fingerprint(docs, labels if classes else None)
        self.n_rows_ = len(docs)
        self.fit_report_: dict[str, Any] = {
            "warnings": [],
            "corpus": {"documents": len(docs), "classes": len(classes), "vocab_size": tokenizer.get_vocab_size(),
                       "tokens": int(sum(len(i) + 1 for i in ids)), "truncated_documents": int(truncated),
                       "sequence_length": length},
        }
        if truncated:
            self.fit_report_["warnings"].append(
                f"{truncated} of {len(docs)} documents were longer than max_length={cfg.max_length} "
                "tokens and were cut: raise max_length to learn their endings"
            )
        started = time.perf_counter()
        try:
            self._train(matrix, resume=resume)
        except BaseException:
            self._forget_fit()
            raise
        self.fit_report_["fit_seconds"] = round(time.perf_counter() - started, 4)
        return self

    def _new_net(self) -> GPTNet:
        cfg = self.config
        return GPTNet(self.tokenizer_.get_vocab_size(), len(self.classes_), self.seq_length_, dim=cfg.dim,
                      layers=cfg.layers, heads=cfg.heads, feedforward_dim=cfg.feedforward_dim, dropout=cfg.dropout)

    def _train(self, matrix: np.ndarray, *, resume: bool) -> None:
        cfg = self.config
        sgd = None
        if cfg.dp is not None:
            sgd = SGDBudget(epsilon=cfg.dp.epsilon, delta=cfg.dp.resolved_delta(matrix.shape[0]),
                            max_grad_norm=cfg.dp.max_grad_norm, accountant=cfg.dp.accountant)
        trainer = Trainer(
            epochs=cfg.epochs, batch_size=cfg.batch_size, device=cfg.device, amp=cfg.amp, seed=cfg.seed,
            checkpoint_dir=cfg.checkpoint_dir, checkpoint_every=cfg.checkpoint_every, progress=cfg.progress,
            compile=cfg.compile, description="text/gpt", dp=sgd,
        )
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)  # the initial weights
        net = self._new_net()
        task = _GPTTask(net, cfg)
        result = trainer.fit(task, matrix, resume=resume, fingerprint=self._run_fingerprint())
        self.net_ = net
        self.device_ = trainer.device
        self.fit_report_["training"] = result.to_dict()
        self.fit_report_["warnings"].extend(result.warnings)
        if sgd is not None:
            training = result.privacy or {}
            self.fit_report_["privacy"] = {
                "differential_privacy": True,
                "epsilon": float(training.get("epsilon", 0.0)),
                "delta": sgd.delta,
                "target_epsilon": cfg.dp.epsilon,
                "sgd": training,
                "covers": "model weights and every sample drawn from them (byte-level tokenizer, "
                "declared labels and max_length are public); the manifest's data fingerprint and "
                "row count are not covered",
            }

    def _run_fingerprint(self) -> str:
        h = hashlib.sha256()
        shaping = self.config.model_dump(mode="json", exclude=set(RUN_ONLY_FIELDS))
        h.update(json.dumps([self.registry_name, shaping, self.classes_, self.seq_length_], sort_keys=True).encode())
        h.update(self.data_fingerprint_.encode())
        h.update(self.tokenizer_.to_str().encode())
        return "sha256:" + h.hexdigest()

    # --- sample ----------------------------------------------------------------------------
    def sample(  # type: ignore[override]
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_length: int | None = None,
        rebalance: Any = None,
    ) -> pl.DataFrame:
        """``n`` new documents: a DataFrame with the text column (and the label column when the
        model is conditional). ``conditions={"label": v}`` (or the label column's own name) asks
        for one class; otherwise classes come in their training shares. The same seed gives the
        same documents."""
        if rebalance is not None:
            raise ConfigError("rebalance= applies to tables; text models take conditions={'label': v}.")
        self._check_fitted()
        n = _check_n(n)
        fixed = self._check_text_conditions(conditions)
        temperature = self.config.temperature if temperature is None else float(temperature)
        top_p = self.config.top_p if top_p is None else float(top_p)
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ConfigError(f"temperature must be > 0 and top_p in (0, 1], got {temperature}, {top_p}.")
        length = self.seq_length_ if max_length is None else int(max_length)
        if length < 1:
            raise ConfigError(f"max_length must be at least 1, got {length}.")
        rng = np.random.default_rng(seed)
        generator = torch.Generator(device=self.device_).manual_seed(int(rng.integers(2**62)))
        texts: list[str] = []
        labels: list[str | None] = []
        for start in range(0, n, self.sample_chunk):
            m = min(self.sample_chunk, n - start)
            if fixed is not None:
                y = np.full(m, fixed, np.int64)
            elif self.classes_ and self.class_shares_:
                y = rng.choice(len(self.classes_), size=m, p=np.asarray(self.class_shares_))
            else:
                y = np.full(m, len(self.classes_), np.int64)  # the "no label" prefix
            tokens = self.net_.generate(
                torch.as_tensor(y, device=self.device_), generator=generator, max_length=length,
                temperature=temperature, top_p=top_p,
            )
            texts.extend(self._decode(tokens.cpu().numpy()))
            labels.extend(self.classes_[i] if i < len(self.classes_) else None for i in y.tolist())
        cols = {self.text_column_: pl.Series(self.text_column_, texts, pl.String)}
        if self.label_column_ is not None:
            cols[self.label_column_] = pl.Series(self.label_column_, labels, pl.String)
        return pl.DataFrame(cols)

    def _decode(self, tokens: np.ndarray) -> list[str]:
        seqs = []
        for row in tokens.tolist():
            end = row.index(EOS_ID) if EOS_ID in row else len(row)
            seqs.append([t for t in row[:end] if t != PAD_ID])
        return self.tokenizer_.decode_batch(seqs, skip_special_tokens=True)

    def _check_text_conditions(self, conditions: Mapping[str, Any] | None) -> int | None:
        if not conditions:
            return None
        allowed = {"label", *([self.label_column_] if self.label_column_ else [])}
        unknown = set(conditions) - allowed
        if unknown:
            raise ConfigError(
                f"Text models can be conditioned on their label only, not {sorted(unknown)}.",
                hint="Use conditions={'label': v} with a label seen in training.",
            )
        if not self.classes_:
            raise ConfigError(
                f"This {self.registry_name} model is not conditional: it was trained without labels.",
                hint="Fit on a corpus with labels (label_column=...) to sample by label.",
            )
        values = list(conditions.values())
        if len(values) > 1 and len({str(v) for v in values}) > 1:
            raise ConfigError(f"Conflicting label conditions: {dict(conditions)}.")
        value = str(values[0])
        if value not in self.classes_:
            raise ConfigError(f"Label {values[0]!r} was never seen in training.", hint=f"Known labels: {self.classes_}")
        return self.classes_.index(value)

    # --- likelihood --------------------------------------------------------------------------
    def log_likelihood(self, texts: Any, *, labels: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per document: the negative log-likelihood (nats, summed over its tokens, end token
        included) and its token count. ``labels`` scores under those labels; without them the
        "no label" prefix is used (the model's unconditional mode)."""
        self._check_fitted()
        docs, given, _, _ = _as_documents(texts, self.text_column_, None)
        if labels is not None:
            given = [str(v) for v in labels]
            if len(given) != len(docs):
                raise DataError(f"{len(given)} labels for {len(docs)} documents.")
        if given is not None and self.classes_:
            unknown = sorted(set(given) - set(self.classes_))
            if unknown:
                raise DataError(f"Labels {unknown[:10]} were never seen in training.", hint=f"Known labels: {self.classes_}")
            y = [self.classes_.index(v) for v in given]
        else:
            y = [len(self.classes_)] * len(docs)
        ids = [e.ids[: self.seq_length_ - 1] + [EOS_ID] for e in self.tokenizer_.encode_batch(docs)]
        nll, count = np.zeros(len(docs)), np.zeros(len(docs))
        self.net_.eval()
        with torch.no_grad():
            for start in range(0, len(docs), self.sample_chunk):
                chunk = ids[start : start + self.sample_chunk]
                width = max(len(s) for s in chunk)
                tokens = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
                for r, s in enumerate(chunk):
                    tokens[r, : len(s)] = torch.as_tensor(s)
                lab = torch.as_tensor(y[start : start + len(chunk)], dtype=torch.long)
                total, k = self.net_.nll(tokens.to(self.device_), lab.to(self.device_))
                nll[start : start + len(chunk)] = total.cpu().numpy()
                count[start : start + len(chunk)] = k.cpu().numpy()
        return nll, count

    def perplexity(self, texts: Any, *, labels: Sequence[Any] | None = None) -> float:
        """exp(mean negative log-likelihood per token) of ``texts`` (held-out text: lower is better)."""
        nll, count = self.log_likelihood(texts, labels=labels)
        return float(math.exp(nll.sum() / max(count.sum(), 1.0)))

    # --- persistence ---------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        state = {"version": STATE_VERSION, "vocab_size": self.tokenizer_.get_vocab_size(),
                 "seq_length": self.seq_length_, "text_column": self.text_column_,
                 "label_column": self.label_column_, "classes": self.classes_,
                 "class_shares": self.class_shares_}
        return module_state({_NET: self.net_}), {
            TOKENIZER_FILE: json.loads(self.tokenizer_.to_str()),
            STATE_FILE: state,
        }

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        from synthkit.generators.neural import family_state
        from synthkit.nn.device import resolve_device

        state = family_state(files, STATE_FILE, STATE_VERSION)
        self.tokenizer_ = _tokenizers().Tokenizer.from_str(json.dumps(files[TOKENIZER_FILE]))
        self.seq_length_ = int(state["seq_length"])
        self.text_column_ = state["text_column"]
        self.label_column_ = state["label_column"]
        self.classes_ = list(state["classes"])
        self.class_shares_ = list(state["class_shares"])
        self.device_ = resolve_device(self.config.device)
        net = self._new_net()
        load_module_state({_NET: net}, tensors)
        self.net_ = net.to(self.device_).eval()


# --- helpers ------------------------------------------------------------------------------------
def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("text/gpt needs the 'tokenizers' package.", hint="pip install tokenizers") from exc
    return tokenizers


def _train_tokenizer(docs: list[str], vocab_size: int, *, byte_only: bool) -> Any:
    """A byte-level BPE trained on ``docs`` (or the bare byte alphabet, learning nothing from
    them, when ``byte_only``); ids 0 and 1 are the padding and end tokens."""
    tk = _tokenizers()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    alphabet = tk.pre_tokenizers.ByteLevel.alphabet()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=len(alphabet) + 2 if byte_only else vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator([] if byte_only else docs, trainer)
    assert tokenizer.token_to_id(PAD) == PAD_ID and tokenizer.token_to_id(EOS) == EOS_ID
    return tokenizer


def _as_documents(
    data: Any, text_column: str | None, label_column: str | None
) -> tuple[list[str], list[str] | None, str, str | None]:
    """Documents, labels and their names from a TextCorpus, a table, a Series or a list."""
    if hasattr(data, "documents") and hasattr(data, "labels"):  # synthkit.connectors.text.TextCorpus
        docs = list(data.documents)
        labels = None if data.labels is None else [str(v) for v in data.labels]
        return _checked(docs), labels, getattr(data, "text_column", "text"), getattr(data, "label_column", None)
    if isinstance(data, pl.Series):
        data = data.to_frame()
    if type(data).__name__ == "Series":  # pandas
        data = pl.from_pandas(data.to_frame())
    if type(data).__name__ == "DataFrame" and not isinstance(data, pl.DataFrame):
        data = pl.from_pandas(data)
    if isinstance(data, pl.DataFrame):
        if text_column is None:
            strings = [c for c, t in data.schema.items() if t == pl.String and c != label_column]
            if len(strings) != 1:
                raise DataError(
                    f"Cannot tell which column holds the text: {len(strings)} string columns ({strings}).",
                    hint="Pass text_column='...' (and label_column='...') to the generator.",
                )
            text_column = strings[0]
        for role, name in (("text", text_column), ("label", label_column)):
            if name is not None and name not in data.columns:
                raise DataError(f"The table has no {role} column '{name}'.", hint=f"Columns: {data.columns}")
        if data.schema[text_column] not in (pl.String, pl.Categorical):
            raise DataError(
                f"Column '{text_column}' holds {data.schema[text_column]}, not text.",
                hint="Pick a string column with text_column=.",
            )
        keep = data.get_column(text_column).cast(pl.String).str.strip_chars().fill_null("").str.len_chars() > 0
        if label_column is not None:
            keep = keep & data.get_column(label_column).is_not_null()
        data = data.filter(keep)
        docs = data.get_column(text_column).cast(pl.String).to_list()
        labels = None if label_column is None else [str(v) for v in data.get_column(label_column).to_list()]
        return _checked(docs), labels, text_column, label_column
    if isinstance(data, (list, tuple)):
        bad = next((x for x in data if not isinstance(x, str)), None)
        if bad is not None:
            raise DataError(f"Documents must be strings, got a {type(bad).__name__}.")
        return _checked([d for d in data if d.strip()]), None, text_column or "text", None
    raise DataError(
        f"text/gpt fits on a TextCorpus, a DataFrame or a list of strings, got {type(data).__name__}.",
        hint="Read a corpus with synthkit.connectors.text.read_corpus(path).",
    )


def _checked(docs: list[str]) -> list[str]:
    if not docs:
        raise EmptyDataError(
            "The corpus holds no non-blank documents.",
            hint="Check the text column (or field) name and that the source is not empty.",
        )
    return docs


def _fingerprint(docs: list[str], labels: list[str] | None) -> str:
    h = hashlib.sha256()
    for i, doc in enumerate(docs):
        h.update(len(doc.encode()).to_bytes(8, "little") + doc.encode())
        if labels is not None:
            h.update(b"\x1f" + labels[i].encode() + b"\x1e")
    return "sha256:" + h.hexdigest()
