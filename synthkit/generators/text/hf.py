"""``text/hf``: LoRA fine-tuning of a local Hugging Face causal-LM checkpoint, then generation.

* **Base** — any ``AutoModelForCausalLM`` checkpoint *directory* (GPT-2, LLaMA, BLOOM, Mistral,
  ...) with its tokenizer, loaded with ``local_files_only=True`` and the Hub switched off: nothing
  is ever downloaded, and code shipped inside a checkpoint is never run (no
  ``trust_remote_code``). Weights must be safetensors. The base stays frozen.
* **Adapter** — LoRA (``peft``) on the attention projections: peft's per-architecture defaults
  (``c_attn`` for GPT-2, ``q_proj``/``v_proj`` for LLaMA and Mistral, ``query_key_value`` for
  BLOOM), else every linear layer but the output head, found from the module names.
* **Labels** — a document's label becomes a text prefix (``label_template``, default
  ``"{label}: "``) after the start token, so ``sample(n, conditions={"label": "great"})`` writes
  documents of that class; a ``label_dropout`` share of documents trains without the prefix, so the
  model also works unconditionally. Only the document's own tokens (and its end token) are scored.
* **Training** — the shared :class:`~synthkit.nn.Trainer` (device, bf16 autocast on CUDA, seeds,
  checkpoints holding the adapter only and ``fit(..., resume=True)``, DP-SGD through Opacus:
  per-sample gradients of the LoRA matrices, the label set declared public with ``labels=``).
* **Sampling** — batched ``generate`` with a key/value cache, temperature, top-p and
  ``max_length`` new tokens; the same seed gives the same documents, also after save/load.
* **Artifacts** — only the adapter weights (safetensors) and JSON: the base checkpoint's path and
  the sha256 of its config, weight and tokenizer files, so loading against another base is an
  error, not silently different text.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import polars as pl
import torch
from pydantic import Field, field_validator, model_validator

from synthkit.errors import ArtifactError, ConfigError, MissingDependencyError
from synthkit.generators.base import GeneratorConfig, NonTabularGenerator
from synthkit.generators.offline import hub_offline
from synthkit.generators.text.common import (
    TextConfig,
    TextModelMixin,
    _as_documents,
    classes_of,
    run_fingerprint,
)
from synthkit.nn import StepContext, Trainer, TrainingTask, load_module_state, module_state, seeded
from synthkit.nn.privacy import DPConfig, sgd_budget, sgd_privacy_report

G = TypeVar("G", bound="TextHFGenerator")

STATE_FILE = "hf.json"
STATE_VERSION = 1
_NET = "adapter"
#: Padding in the training matrix (never a token id).
_PAD = -1
#: Settings that change how a run is carried out, not what it learns.
RUN_ONLY_FIELDS = frozenset(
    {"epochs", "device", "progress", "checkpoint_dir", "checkpoint_every", "amp", "temperature", "top_p"}
)
#: Files of a checkpoint directory whose bytes the adapter depends on (hashed, checked on load).
_BASE_PATTERNS = (
    "config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer*.json",
    "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
)
#: Target modules tried, in order, when peft has no default for the architecture.
_COMMON_TARGETS = (("q_proj", "v_proj"), ("query_key_value",), ("c_attn",), ("Wqkv",), ("qkv_proj",))


class TextHFConfig(TextConfig):
    """Options of ``text/hf`` (training names as in every family)."""

    checkpoint: str = Field(
        description="Local Hugging Face checkpoint directory (config.json, safetensors, tokenizer)."
    )
    label_template: str = Field(
        "{label}: ", description="Prefix that conditions a document on its label."
    )
    label_dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of documents trained without their label prefix."
    )
    lora_rank: int = Field(8, ge=1, le=1024, description="LoRA rank r.")
    lora_alpha: float = Field(16.0, gt=0.0, description="LoRA scaling alpha (update scaled by alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt (default: per architecture, from the module names)."
    )
    max_length: int = Field(128, ge=4, le=32768, description="Most tokens per document (prompt and end included).")
    epochs: int = Field(3, ge=1, description="Passes over the corpus.")
    batch_size: int = Field(8, ge=1, description="Documents per optimisation step.")
    learning_rate: float = Field(2e-4, gt=0.0, description="AdamW learning rate of the adapter.")
    weight_decay: float = Field(0.0, ge=0.0)
    temperature: float = Field(1.0, gt=0.0, description="Default sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Default nucleus (top-p) mass.")
    device: str = Field("auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', ...")
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (no effect on a CPU).")
    base_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the frozen base weights ('auto': bf16 on a GPU with amp, else float32)."
    )
    checkpoint_dir: str | None = Field(None, description="Training checkpoints; needed for fit(..., resume=True).")
    checkpoint_every: int = Field(1, ge=1, description="Epochs between checkpoints.")
    progress: bool = Field(True, description="Show a progress line per epoch.")
    dp: DPConfig | None = Field(
        None, description="Differential privacy of the fit, e.g. {'epsilon': 8}: DP-SGD (Opacus)."
    )

    @field_validator("checkpoint", "checkpoint_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _check(self) -> TextHFConfig:
        if "{label}" not in self.label_template:
            raise ValueError("label_template must contain '{label}'")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("target_modules must name at least one module (or be None)")
        return self


# --- the base checkpoint ---------------------------------------------------------------------
def _hf() -> tuple[Any, Any]:
    """``(transformers, peft)``, or an error naming the extra to install."""
    try:
        with hub_offline():
            import peft
            import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            "text/hf needs the 'transformers' and 'peft' packages.",
            hint="pip install 'synthkit[text]'",
        ) from exc
    return transformers, peft


def local_checkpoint(checkpoint: str) -> Path:
    """The checked local directory of a Hugging Face checkpoint (never a Hub id)."""
    path = Path(checkpoint).expanduser()
    if not path.exists():
        looks_like_hub = not path.is_absolute() and not checkpoint.startswith((".", "~")) and (
            checkpoint.count("/") <= 1 and os.sep not in checkpoint.replace("/", "")
        )
        if looks_like_hub:
            raise ConfigError(
                f"checkpoint='{checkpoint}' is not a local directory; it looks like a Hugging Face "
                "Hub id, and text/hf never downloads.",
                hint=f"Download it once (huggingface-cli download {checkpoint} --local-dir DIR) "
                "and pass checkpoint=DIR.",
            )
        raise ConfigError(
            f"The checkpoint directory {path} does not exist.",
            hint="Pass the folder holding config.json, the safetensors weights and the tokenizer.",
        )
    if not path.is_dir():
        raise ConfigError(f"checkpoint={path} is a file, not a checkpoint directory.",
                          hint="Pass the folder that holds config.json.")
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is not a Hugging Face checkpoint: it has no config.json.",
            hint="Save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir).",
        )
    if not any(path.glob("*.safetensors")):
        raise ConfigError(
            f"{path} has no safetensors weights (pickled .bin weights are not loaded).",
            hint="Re-save the model with model.save_pretrained(dir) (safetensors by default).",
        )
    return path


def base_hashes(path: Path) -> dict[str, str]:
    """sha256 of every config, weight and tokenizer file of a checkpoint directory, by name."""
    files = sorted({f for pattern in _BASE_PATTERNS for f in path.glob(pattern) if f.is_file()})
    out = {}
    for file in files:
        h = hashlib.sha256()
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 24), b""):
                h.update(block)
        out[file.name] = "sha256:" + h.hexdigest()
    return out


def _load_base(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """The frozen causal LM and its tokenizer from ``path``, offline."""
    transformers, _ = _hf()
    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        with hub_offline():
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False, use_safetensors=True,
                dtype=dtype,
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"Cannot load the checkpoint in {path} as a causal language model: {exc}",
            hint="It must be a transformers AutoModelForCausalLM directory with its tokenizer and "
            "no custom code (trust_remote_code is never used).",
        ) from exc
    finally:
        if bars:
            logging.enable_progress_bar()
    model.requires_grad_(False)
    return model, tokenizer


def resolve_targets(model: torch.nn.Module, model_type: str, given: list[str] | None) -> list[str]:
    """Names (last parts) of the modules LoRA adapts: ``given``, peft's default for the
    architecture, a common attention projection, or every linear layer but the output head."""
    transformers, peft = _hf()
    linear = (torch.nn.Linear, transformers.pytorch_utils.Conv1D)
    head = model.get_output_embeddings()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear) and m is not head}
    if given is not None:
        missing = sorted(set(given) - names)
        if missing:
            raise ConfigError(
                f"target_modules {missing} are not linear layers of this {model_type} model.",
                hint=f"Its linear layers: {sorted(names)}",
            )
        return list(given)
    default = peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    for candidate in ([default] if default else []) + [list(c) for c in _COMMON_TARGETS]:
        if set(candidate) <= names:
            return list(candidate)
    if not names:
        raise ConfigError(f"This {model_type} model has no linear layers for LoRA to adapt.")
    return sorted(names)


# --- the adapter network ---------------------------------------------------------------------
class LoRANet(torch.nn.Module):
    """A peft LoRA model whose state dict is the adapter only: what the Trainer checkpoints and
    what a saved model holds (the frozen base comes from its checkpoint directory)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.adapter_keys = frozenset(n for n, p in self.named_parameters() if p.requires_grad)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """The LoRA matrices only."""
        full = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        for key in [k for k in full if k.startswith(prefix) and k[len(prefix):] not in self.adapter_keys]:
            del full[key]
        return full

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Load LoRA matrices (all of them when ``strict``); the base is left alone."""
        unexpected = sorted(set(state_dict) - self.adapter_keys)
        missing = sorted(self.adapter_keys - set(state_dict))
        if unexpected or (strict and missing):
            raise ArtifactError(
                f"Adapter weights do not fit this base (missing {missing[:3]}, unexpected {unexpected[:3]}).",
                hint="Load the adapter with the base checkpoint and LoRA settings it was trained with.",
            )
        return super().load_state_dict(OrderedDict(state_dict), strict=False, assign=assign)


def document_nll(net: LoRANet, seqs: torch.Tensor, starts: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per document: summed negative log-likelihood of its tokens from ``starts`` on (the prompt
    is not scored) and their number; each row's loss depends on that row only."""
    valid = seqs != _PAD
    ids = torch.where(valid, seqs, torch.full_like(seqs, pad_id))
    logits = net(ids, valid.long())[:, :-1].float()
    target = ids[:, 1:]
    position = torch.arange(1, seqs.shape[1], device=seqs.device)
    scored = valid[:, 1:] & (position.unsqueeze(0) >= starts.unsqueeze(1))
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    mask = scored.float()
    return (ce * mask).sum(1), mask.sum(1)


class _LoRATask(TrainingTask):
    """Rows: [start with label, start without, tokens with label (L), tokens without (L)]."""

    def __init__(self, net: LoRANet, config: TextHFConfig, length: int, pad_id: int, labelled: bool) -> None:
        self.net, self.length, self.pad_id = net, length, pad_id
        params = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.label_dropout = config.label_dropout if labelled else 0.0

    def modules(self) -> dict[str, torch.nn.Module]:
        return {_NET: self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    def private_modules(self) -> tuple[list[str], list[str]]:
        return [_NET], ["adamw"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        seqs, starts = _pick(batch, self.length, self.label_dropout, ctx.generator)
        if ctx.private is None:  # trim padding every row of the batch has (per-row losses unchanged)
            used = int((seqs != _PAD).any(0).nonzero().max()) + 1
            seqs = seqs[:, :used]
        with ctx.autocast():
            total, count = document_nll(self.net, seqs, starts, self.pad_id)
        loss = (total / count.clamp(min=1)).mean()
        ctx.optimize(loss, self.optimizer)
        return {"loss": loss.detach()}


def _pick(batch: torch.Tensor, length: int, label_dropout: float, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's token ids and first scored position: with its label prefix, or (a
    ``label_dropout`` share of rows) without it."""
    starts = batch[:, :2].round().long()
    seqs = batch[:, 2:].round().long()
    labelled, bare = seqs[:, :length], seqs[:, length:]
    if label_dropout <= 0:
        return labelled, starts[:, 0]
    drop = torch.rand(batch.shape[0], generator=generator, device=batch.device) < label_dropout
    return torch.where(drop.unsqueeze(1), bare, labelled), torch.where(drop, starts[:, 1], starts[:, 0])


# --- the generator -----------------------------------------------------------------------------
class TextHFGenerator(TextModelMixin, NonTabularGenerator):
    """``text/hf``: fit a LoRA adapter of a local Hugging Face causal LM on a corpus (a TextCorpus,
    a table's text column or a list of strings); ``sample(n, conditions={"label": v}, seed=)``
    returns a polars DataFrame of new documents, like ``text/gpt``."""

    name: ClassVar[str] = "text/hf"
    data_kind: ClassVar[str] = "text"
    config_class: ClassVar[type[GeneratorConfig]] = TextHFConfig
    config: TextHFConfig
    min_rows: ClassVar[int] = 2
    supports_resume: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = True
    #: Documents generated per ``generate`` call.
    sample_chunk: ClassVar[int] = 64

    # --- base + adapter ----------------------------------------------------------------------
    def _base_dtype(self, device: torch.device) -> torch.dtype:
        name = self.config.base_dtype
        if name == "auto":
            bf16 = device.type == "cuda" and self.config.amp and torch.cuda.is_bf16_supported()
            return torch.bfloat16 if bf16 else torch.float32
        return getattr(torch, name)

    def _build(self, device: torch.device, targets: list[str] | None) -> None:
        """Load the base, check its files, wrap it with a fresh LoRA adapter (on ``device``)."""
        _, peft = _hf()
        path = local_checkpoint(self.config.checkpoint)
        hashes = base_hashes(path)
        expected = getattr(self, "base_hashes_", None)
        if expected is not None and hashes != expected:
            changed = sorted(n for n in set(hashes) | set(expected) if hashes.get(n) != expected.get(n))
            raise ArtifactError(
                f"The base checkpoint in {path} is not the one this adapter was trained on "
                f"(different files: {changed[:5]}).",
                hint="Put the original checkpoint back at that path; an adapter only fits the exact "
                "base weights and tokenizer it was trained with.",
            )
        model, tokenizer = _load_base(path, self._base_dtype(device))
        model_type = str(getattr(model.config, "model_type", "") or "")
        targets = resolve_targets(model, model_type, targets if targets is not None else self.config.target_modules)
        transformers, _ = _hf()
        conv1d = any(isinstance(m, transformers.pytorch_utils.Conv1D) and n.rsplit(".", 1)[-1] in targets
                     for n, m in model.named_modules())
        lora = peft.LoraConfig(
            r=self.config.lora_rank, lora_alpha=self.config.lora_alpha, lora_dropout=self.config.lora_dropout,
            target_modules=targets, fan_in_fan_out=conv1d, bias="none", task_type="CAUSAL_LM",
        )
        with seeded(self.config.seed):
            net = LoRANet(peft.get_peft_model(model, lora))
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ConfigError(
                f"The tokenizer in {path} has no end-of-text token; text/hf needs one to end documents.",
                hint="Set tokenizer.eos_token and save the tokenizer again.",
            )
        self.base_hashes_ = hashes
        self.model_type_ = model_type
        self.target_modules_ = targets
        self.tokenizer_ = tokenizer
        self.eos_id_ = int(eos)
        self.start_id_ = int(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos)
        self.pad_id_ = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
        positions = [getattr(model.config, k, None) for k in ("max_position_embeddings", "n_positions")]
        self.max_positions_ = next((int(p) for p in positions if p), None)
        self.net_ = net.to(device)
        self.device_ = device

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer_(list(texts), add_special_tokens=False)["input_ids"]]

    def _prompt(self, label_index: int) -> list[int]:
        """Token ids a document of class ``label_index`` starts with (the last index: no label)."""
        if label_index >= len(self.classes_):
            return [self.start_id_]
        text = self.config.label_template.format(label=self.classes_[label_index])
        return [self.start_id_, *self._encode([text])[0]]

    # --- fit -------------------------------------------------------------------------------
    def fit(self: G, data: Any, *, schema: Any = None, resume: bool = False) -> G:
        """Learn a LoRA adapter from ``data``: a TextCorpus, a DataFrame (``text_column`` /
        ``label_column`` in the config, or found), or a list of strings."""
        from synthkit.nn.device import resolve_device

        cfg = self.config
        docs, labels, text_name, label_name = self._read_corpus(data, schema)
        private = cfg.dp is not None
        classes = classes_of(labels, cfg.labels, private)
        self._forget_fit()
        try:
            self._build(resolve_device(cfg.device), None)
            self.classes_ = classes
            matrix, report = self._matrix(docs, labels, private)
            self._keep_corpus_facts(docs, labels, text_name, label_name, classes, private=private)
            self.fit_report_: dict[str, Any] = {"warnings": [], "corpus": report,
                                                "base": {"checkpoint": cfg.checkpoint, "model_type": self.model_type_,
                                                         "target_modules": self.target_modules_}}
            if report["truncated_documents"]:
                self.fit_report_["warnings"].append(
                    f"{report['truncated_documents']} of {len(docs)} documents were longer than "
                    f"max_length={self.seq_length_} tokens and were cut: raise max_length to learn their endings"
                )
            started = time.perf_counter()
            self._train(matrix, resume=resume)
            self.fit_report_["fit_seconds"] = round(time.perf_counter() - started, 4)
        except BaseException:
            self._forget_fit()
            raise
        return self

    def _matrix(self, docs: list[str], labels: list[str] | None, private: bool) -> tuple[np.ndarray, dict[str, Any]]:
        """The Trainer's float32 rows (see :class:`_LoRATask`) and corpus facts for the report."""
        cfg = self.config
        ids = self._encode(docs)
        index = {c: i for i, c in enumerate(self.classes_)}
        prompts = [self._prompt(i) for i in range(len(self.classes_) + 1)]
        bare = prompts[-1]
        own = [prompts[index[v]] for v in labels] if self.classes_ and labels is not None else [bare] * len(docs)
        longest = max(len(p) + len(i) + 1 for p, i in zip(own, ids, strict=True))
        length = cfg.max_length if private else min(cfg.max_length, longest)
        if self.max_positions_ is not None:
            length = min(length, self.max_positions_)
        if length <= max(len(p) for p in prompts) + 1:
            raise ConfigError(
                f"max_length={length} leaves no room for text after the label prefix.",
                hint="Raise max_length or shorten label_template.",
            )
        matrix = np.full((len(docs), 2 + 2 * length), _PAD, np.float32)
        truncated = 0
        for r, (prompt, tokens) in enumerate(zip(own, ids, strict=True)):
            for block, head in ((0, prompt), (1, bare)):
                seq = head + tokens[: length - len(head) - 1] + [self.eos_id_]
                truncated += block == 0 and len(head) + len(tokens) + 1 > length
                matrix[r, block] = len(head)
                matrix[r, 2 + block * length : 2 + block * length + len(seq)] = seq
        self.seq_length_ = length
        # under dp the default generation length is public (max_length), not the longest document
        self.text_length_ = length if private else min(length, max(len(i) for i in ids) + 1)
        report = {"documents": len(docs), "classes": len(self.classes_), "tokens": int(sum(len(i) + 1 for i in ids)),
                  "truncated_documents": int(truncated), "sequence_length": length}
        return matrix, report

    def _train(self, matrix: np.ndarray, *, resume: bool) -> None:
        cfg = self.config
        sgd = sgd_budget(cfg.dp, matrix.shape[0])
        trainer = Trainer(
            epochs=cfg.epochs, batch_size=cfg.batch_size, device=cfg.device, amp=cfg.amp, seed=cfg.seed,
            checkpoint_dir=cfg.checkpoint_dir, checkpoint_every=cfg.checkpoint_every, progress=cfg.progress,
            description="text/hf", dp=sgd,
        )
        task = _LoRATask(self.net_, cfg, self.seq_length_, self.pad_id_, labelled=bool(self.classes_))
        with seeded(cfg.seed):  # base dropout draws from torch's global generator
            result = trainer.fit(task, matrix, resume=resume, fingerprint=self._run_fingerprint())
        self.net_.eval()
        self.fit_report_["training"] = result.to_dict()
        self.fit_report_["warnings"].extend(result.warnings)
        if sgd is not None:
            self.fit_report_["privacy"] = sgd_privacy_report(
                sgd, cfg.dp, result.privacy,
                "the LoRA adapter and every sample drawn from it (the base checkpoint, its tokenizer, the "
                "declared labels and max_length are public); the manifest's data fingerprint and row count "
                "are not covered",
            )

    def _run_fingerprint(self) -> str:
        return run_fingerprint(self, RUN_ONLY_FIELDS, [self.base_hashes_, self.target_modules_])

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
        model is conditional). ``conditions={"label": v}`` asks for one class; otherwise classes
        come in their training shares. ``max_length``: most new tokens per document."""
        n, fixed = self._begin_sample(n, conditions, rebalance)
        temperature, top_p, new_tokens = self._sampling(temperature, top_p, max_length, self.text_length_)
        rng = np.random.default_rng(seed)
        y = self._draw_classes(n, fixed, rng)
        texts: list[str] = [""] * n
        for label in np.unique(y).tolist():
            rows = np.flatnonzero(y == label)
            prompt = self._prompt(label)
            for start in range(0, rows.size, self.sample_chunk):
                chunk = rows[start : start + self.sample_chunk]
                out = self._generate(prompt, chunk.size, int(rng.integers(2**62)), temperature, top_p, new_tokens)
                for row, text in zip(chunk.tolist(), out, strict=True):
                    texts[row] = text
        return self._text_frame(texts, self._class_names(y.tolist()))

    @torch.no_grad()
    def _generate(self, prompt: list[int], rows: int, seed: int, temperature: float, top_p: float,
                  new_tokens: int) -> list[str]:
        """``rows`` continuations of ``prompt`` (batched, KV cache), decoded up to the end token."""
        transformers, _ = _hf()
        if self.max_positions_ is not None:
            new_tokens = max(1, min(new_tokens, self.max_positions_ - len(prompt)))
        config = transformers.GenerationConfig(
            do_sample=True, temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=new_tokens,
            eos_token_id=self.eos_id_, pad_token_id=self.pad_id_, use_cache=True,
        )
        ids = torch.tensor([prompt] * rows, dtype=torch.long, device=self.device_)
        model = self.net_.model.eval()
        autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                    if self.device_.type == "cuda" and self.config.amp else nullcontext())
        logging = transformers.utils.logging
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # finished rows continue with padding: no "padded input" warning
        try:
            with seeded(seed), autocast:
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
        finally:
            logging.set_verbosity(verbosity)
        new = out[:, len(prompt):].cpu().numpy()
        seqs = []
        for row in new.tolist():
            end = row.index(self.eos_id_) if self.eos_id_ in row else len(row)
            seqs.append(row[:end])
        return self.tokenizer_.batch_decode(seqs, skip_special_tokens=True)

    # --- likelihood --------------------------------------------------------------------------
    def perplexity(self, texts: Any, *, labels: Sequence[Any] | None = None) -> float:
        """exp(mean negative log-likelihood per token) of ``texts`` under the adapted model
        (with their label prefixes when ``labels`` are given): lower is better on held-out text."""
        self._check_fitted()
        docs, _, _, _ = _as_documents(texts, self.text_column_, None)
        given = self._given_labels(labels, len(docs))
        if given is not None:
            heads = [self._prompt(i) for i in self._class_indices(given)]
        else:
            heads = [self._prompt(len(self.classes_))] * len(docs)
        ids = self._encode(docs)
        total = count = 0.0
        self.net_.eval()
        with torch.no_grad():
            for start in range(0, len(docs), self.sample_chunk):
                seqs = [h + t[: self.seq_length_ - len(h) - 1] + [self.eos_id_]
                        for h, t in zip(heads[start : start + self.sample_chunk], ids[start : start + self.sample_chunk], strict=True)]
                width = max(len(s) for s in seqs)
                batch = torch.full((len(seqs), width), _PAD, dtype=torch.long)
                for r, s in enumerate(seqs):
                    batch[r, : len(s)] = torch.as_tensor(s)
                starts = torch.as_tensor([len(h) for h in heads[start : start + len(seqs)]])
                nll, k = document_nll(self.net_, batch.to(self.device_), starts.to(self.device_), self.pad_id_)
                total += float(nll.sum())
                count += float(k.sum())
        return float(math.exp(total / max(count, 1.0)))

    # --- persistence ---------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        state = {"version": STATE_VERSION, "base": {"checkpoint": self.config.checkpoint,
                                                     "model_type": self.model_type_, "files": self.base_hashes_},
                 "target_modules": self.target_modules_, "seq_length": self.seq_length_,
                 "text_length": self.text_length_, **self._label_state()}
        return module_state({_NET: self.net_}), {STATE_FILE: state}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        from synthkit.generators.neural import family_state
        from synthkit.nn.device import resolve_device

        state = family_state(files, STATE_FILE, STATE_VERSION)
        self.base_hashes_ = dict(state["base"]["files"])
        self._build(resolve_device(self.config.device, fallback=True), list(state["target_modules"]))
        self.seq_length_ = int(state["seq_length"])
        self.text_length_ = int(state["text_length"])
        self._restore_labels(state)
        load_module_state({_NET: self.net_}, tensors)
        self.net_.eval()
