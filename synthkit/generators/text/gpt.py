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

from synthkit.errors import MissingDependencyError
from synthkit.generators.base import GeneratorConfig, NonTabularGenerator
from synthkit.generators.text.common import (
    TextConfig,
    TextModelMixin,
    _as_documents,
    classes_of,
    run_fingerprint,
)
from synthkit.nn import StepContext, Trainer, TrainingTask, load_module_state, module_state
from synthkit.nn.privacy import DPConfig, sgd_budget, sgd_privacy_report
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


class TextGPTConfig(TextConfig):
    """Options of ``text/gpt`` (training names as in every family)."""

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
        steps = min(max_length, self.max_length)
        x = self.labels(labels) + self.positions.weight[0]
        caches = self.new_caches(labels.shape[0], steps, labels.device)
        return self.continue_from(x.unsqueeze(1), caches, generator=generator, steps=steps, offset=1,
                                  temperature=temperature, top_p=top_p)

    def new_caches(self, rows: int, size: int, device: torch.device) -> list[KVCache]:
        """Empty key/value caches of every block for ``rows`` sequences of up to ``size`` inputs."""
        head_dim = self.dim // self.heads
        dtype = self.head.weight.dtype
        return [
            KVCache(torch.empty(rows, self.heads, size, head_dim, device=device, dtype=dtype),
                    torch.empty(rows, self.heads, size, head_dim, device=device, dtype=dtype))
            for _ in self.blocks
        ]

    @torch.no_grad()
    def continue_from(
        self,
        h: torch.Tensor,
        caches: list[KVCache],
        *,
        generator: torch.Generator,
        steps: int,
        offset: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_tokens: int = 0,
    ) -> torch.Tensor:
        """(rows, ≤ steps) tokens drawn after the embedded inputs ``h`` (rows, k, dim), whose
        positions end before ``offset``; no end token before ``min_tokens`` others (then padding)."""
        rows, device = h.shape[0], h.device
        out = torch.full((rows, steps), PAD_ID, dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        for step in range(steps):
            for block, cache in zip(self.blocks, caches, strict=True):
                h = block(h, cache=cache)
            logits = self.head(self.norm(h[:, -1])).float()
            logits[:, PAD_ID] = -math.inf
            if step < min_tokens and step + 1 < steps:
                logits[:, EOS_ID] = -math.inf
            token = draw(logits, generator, temperature, top_p)
            token = torch.where(done, torch.full_like(token, PAD_ID), token)
            out[:, step] = token
            done |= token == EOS_ID
            if bool(done.all()) or step + 1 == steps:
                return out[:, : step + 1]
            h = (self.tokens(token) + self.positions.weight[offset + step]).unsqueeze(1)
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
class TextGPTGenerator(TextModelMixin, NonTabularGenerator):
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

    # --- fit -------------------------------------------------------------------------------
    def fit(self: G, data: Any, *, schema: Any = None, resume: bool = False) -> G:
        """Learn from ``data``: a TextCorpus, a DataFrame (``text_column`` / ``label_column``
        in the config, or found), or a list of strings."""
        cfg = self.config
        docs, labels, text_name, label_name = self._read_corpus(data, schema)
        private = cfg.dp is not None
        classes = classes_of(labels, cfg.labels, private)
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

        self._keep_corpus_facts(docs, labels, text_name, label_name, classes, private=private)
        self.tokenizer_ = tokenizer
        self.seq_length_ = length
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
        sgd = sgd_budget(cfg.dp, matrix.shape[0])
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
            self.fit_report_["privacy"] = sgd_privacy_report(
                sgd, cfg.dp, result.privacy,
                "model weights and every sample drawn from them (byte-level tokenizer, declared labels "
                "and max_length are public); the manifest's data fingerprint and row count are not covered",
            )

    def _run_fingerprint(self) -> str:
        return run_fingerprint(self, RUN_ONLY_FIELDS, tail=self.tokenizer_.to_str())

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
        n, fixed = self._begin_sample(n, conditions, rebalance)
        temperature, top_p, length = self._sampling(temperature, top_p, max_length, self.seq_length_)
        rng = np.random.default_rng(seed)
        generator = torch.Generator(device=self.device_).manual_seed(int(rng.integers(2**62)))
        texts: list[str] = []
        labels: list[str | None] = []
        for start in range(0, n, self.sample_chunk):
            y = self._draw_classes(min(self.sample_chunk, n - start), fixed, rng)
            tokens = self.net_.generate(
                torch.as_tensor(y, device=self.device_), generator=generator, max_length=length,
                temperature=temperature, top_p=top_p,
            )
            texts.extend(self._decode(tokens.cpu().numpy()))
            labels.extend(self._class_names(y.tolist()))
        return self._text_frame(texts, labels)

    def _decode(self, tokens: np.ndarray) -> list[str]:
        seqs = []
        for row in tokens.tolist():
            end = row.index(EOS_ID) if EOS_ID in row else len(row)
            seqs.append([t for t in row[:end] if t != PAD_ID])
        return self.tokenizer_.decode_batch(seqs, skip_special_tokens=True)

    # --- likelihood --------------------------------------------------------------------------
    def log_likelihood(self, texts: Any, *, labels: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per document: the negative log-likelihood (nats, summed over its tokens, end token
        included) and its token count. ``labels`` scores under those labels; without them the
        "no label" prefix is used (the model's unconditional mode)."""
        self._check_fitted()
        docs, given, _, _ = _as_documents(texts, self.text_column_, None)
        if labels is not None:
            given = self._given_labels(labels, len(docs))
        if given is not None and self.classes_:
            y = self._class_indices(given)
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
                 "seq_length": self.seq_length_, **self._label_state()}
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
        self._restore_labels(state)
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
