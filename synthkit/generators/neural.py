"""What every torch generator family shares: its training options, Trainer, encoding and run hash.

A family's config subclasses :class:`NeuralConfig` and adds its architecture; ``_fit`` calls
:func:`encode_table`, :func:`make_trainer` and passes :func:`run_fingerprint` to the Trainer so
that a checkpoint is resumed only by the same data, encoding and model-shaping settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from synthkit.generators.base import GeneratorConfig
from synthkit.nn import Trainer
from synthkit.nn.privacy import DPConfig, SGDBudget
from synthkit.prepare.neural import NeuralTableEncoder
from synthkit.schema import ColumnKind, Schema

#: Settings that change how a run is carried out, not what it learns: a resumed run may change
#: them (more epochs, another device) and keep its checkpoint.
RUN_ONLY_FIELDS = frozenset(
    {"epochs", "device", "progress", "checkpoint_dir", "checkpoint_every", "compile", "sample_precision",
     "cuda_graphs"}
)


class NeuralConfig(GeneratorConfig):
    """Training options shared by every torch generator (same names everywhere)."""

    epochs: int = Field(300, ge=1, description="Passes over the training rows.")
    batch_size: int = Field(500, ge=1, description="Rows per optimisation step.")
    numerical: Literal["mode", "quantile"] = Field(
        "mode",
        description="Numerical encoding: mode-specific normalisation (a Gaussian mixture per "
        "column) or a quantile transform.",
    )
    max_modes: int = Field(10, ge=1, description="Most mixture modes per numerical column.")
    discrete_numerical: int = Field(
        20,
        ge=0,
        description="Numerical columns with at most this many distinct values (terms, counts, "
        "years), each seen at least 10 times on average, are encoded as one category per value, "
        "so only values the column takes are generated; 0 turns it off. Not under dp (the value "
        "set would be a private fact).",
    )
    device: str = Field(
        "auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:1', ..."
    )
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (no effect on a CPU).")
    sample_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Precision of the hidden layers when sampling (tabular/ctgan, tabular/tvae): "
        "'auto' is bf16 where it is much faster (a CUDA GPU, a CPU with AMX), else fp32; the "
        "output layer is always fp32.",
    )
    checkpoint_dir: str | None = Field(
        None, description="Directory for training checkpoints; needed for fit(..., resume=True)."
    )
    checkpoint_every: int = Field(10, ge=1, description="Epochs between checkpoints.")
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many epochs without a better validation loss (needs "
        "validation_fraction > 0); the best weights are kept.",
    )
    validation_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of rows held out to compute a validation loss."
    )
    progress: bool = Field(True, description="Show a progress line per epoch.")
    compile: bool = Field(False, description="torch.compile the networks (PyTorch 2).")
    dp: DPConfig | None = Field(
        None,
        description="Differential privacy of the whole fit, e.g. {'epsilon': 3}: DP-SGD "
        "(Opacus) plus private encoding facts; the fit report records epsilon spent.",
    )

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        """Accept a pathlib.Path (stored as text so the config stays JSON)."""
        return None if value is None else str(value)


def encoder_seed(config: NeuralConfig, data_fingerprint: str) -> int:
    """The encoding's seed: the config's, else one derived from the data, so a resumed run
    encodes exactly as the run that wrote the checkpoint."""
    if config.seed is not None:
        return config.seed
    return int(data_fingerprint.removeprefix("sha256:")[:15], 16)


def encode_table(
    df: pl.DataFrame, schema: Schema, config: NeuralConfig, data_fingerprint: str
) -> tuple[NeuralTableEncoder, np.ndarray]:
    """Fit the table encoder and return it with the float32 training matrix."""
    seed = encoder_seed(config, data_fingerprint)
    encoder = NeuralTableEncoder(numerical=config.numerical, max_modes=config.max_modes,
                                 max_discrete_values=config.discrete_numerical, seed=seed)
    encoder.fit(df, schema)
    matrix = encoder.transform(df, rng=np.random.default_rng(seed))
    return encoder, np.ascontiguousarray(matrix, dtype=np.float32)


@dataclass
class PrivatePlan:
    """How a private fit splits its budget, and what the encoding's facts cost."""

    dp: DPConfig
    delta: float
    encoding: dict[str, Any]
    sgd: SGDBudget


def encode_private(
    df: pl.DataFrame, schema: Schema, config: NeuralConfig, data_fingerprint: str
) -> tuple[NeuralTableEncoder, np.ndarray, PrivatePlan]:
    """Fit the table encoding under differential privacy and plan DP-SGD with what is left.

    The encoding's share of the budget (``dp.preprocessing_share``) pays for the bounds,
    quantiles and category sets the schema does not declare public; if nothing needs
    estimating, DP-SGD gets the whole budget.
    """
    dp = config.dp
    assert dp is not None
    delta = dp.resolved_delta(df.height)
    seed = encoder_seed(config, data_fingerprint)
    needs_facts = any(
        c.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME)
        or (c.kind == ColumnKind.CATEGORICAL and c.categories is None)
        for c in schema
    )
    share = dp.preprocessing_share if needs_facts else 0.0
    encoder = NeuralTableEncoder(numerical="quantile", max_modes=config.max_modes, seed=seed)
    facts = encoder.fit_private(
        df,
        schema,
        epsilon=dp.epsilon * share if share else dp.epsilon,
        delta=delta * share if share else delta,
        rng=np.random.default_rng(np.random.SeedSequence([seed, 0xD9])),
    )
    encoding = dict(facts.report)
    encoding.setdefault("epsilon", facts.epsilon)
    encoding.setdefault("delta", facts.delta)
    if not share:
        encoding.update({"epsilon": 0.0, "delta": 0.0})
    matrix = encoder.transform(df, rng=np.random.default_rng(seed))
    sgd = SGDBudget(
        epsilon=dp.epsilon * (1.0 - share),
        delta=delta * (1.0 - share),
        max_grad_norm=dp.max_grad_norm,
        accountant=dp.accountant,
    )
    plan = PrivatePlan(dp=dp, delta=delta, encoding=encoding, sgd=sgd)
    return encoder, np.ascontiguousarray(matrix, dtype=np.float32), plan


def privacy_report(plan: PrivatePlan, training: dict[str, Any] | None) -> dict[str, Any]:
    """The fit report's privacy section: total (epsilon, delta) by basic composition, per part."""
    sgd = dict(training or {})
    return {
        "differential_privacy": True,
        "epsilon": float(plan.encoding.get("epsilon", 0.0)) + float(sgd.get("epsilon", 0.0)),
        "delta": float(plan.encoding.get("delta", 0.0)) + float(plan.sgd.delta),
        "target_epsilon": plan.dp.epsilon,
        "target_delta": plan.delta,
        "encoding": plan.encoding,
        "sgd": sgd,
        "covers": "model weights and every sample drawn from them; the model manifest's data "
        "fingerprint and row count are not covered (keep model directories internal)",
    }


def private_condition_values(encoder: NeuralTableEncoder) -> dict[str, list[Any]]:
    """What a private fit lets conditions ask for: the released categories only."""
    from synthkit.generators.base import MAX_CONDITION_VALUES, _jsonable

    out: dict[str, list[Any]] = {}
    for name, part in encoder.discrete_parts_.items():
        values = part.kept.to_list()
        if len(values) <= MAX_CONDITION_VALUES:
            out[name] = sorted(_jsonable(values), key=lambda v: (str(type(v)), v))
    return out


def make_trainer(
    config: NeuralConfig, description: str, *, dp: SGDBudget | None = None
) -> Trainer:
    """The shared Trainer, set up from a family's config (``dp``: a private run's SGD budget)."""
    return Trainer(
        epochs=config.epochs,
        batch_size=config.batch_size,
        device=config.device,
        amp=config.amp,
        seed=config.seed,
        checkpoint_dir=config.checkpoint_dir,
        checkpoint_every=config.checkpoint_every,
        early_stopping_patience=config.early_stopping_patience,
        validation_fraction=config.validation_fraction,
        progress=config.progress,
        compile=config.compile,
        description=description,
        dp=dp,
        low_precision=trains_in_bf16(getattr(config, "train_precision", "float32"), config.device),
    )


def trains_in_bf16(precision: str, device: str) -> bool:
    """Whether to ask the Trainer for bf16 matrix products: always for ``"bfloat16"``, and for
    ``"auto"`` on a CPU (where it was measured: same quality, a fifth less fit time on an AMX
    CPU; CUDA keeps its tested fp32 step under bf16 autocast). The Trainer still declines where
    bf16 is slow or the run is private."""
    if precision == "bfloat16":
        return True
    if precision != "auto":
        return False
    from synthkit.nn.device import resolve_device

    return resolve_device(device).type == "cpu"


def run_fingerprint(
    config: NeuralConfig, data_fingerprint: str, encoder: NeuralTableEncoder, variant: str = ""
) -> str:
    """What a checkpoint must match to be resumed: model-shaping config, data and encoding
    (and ``variant``, a family's note of how it trains, when it has one)."""
    h = hashlib.sha256()
    if variant:
        h.update(variant.encode())
    shaping = config.model_dump(mode="json", exclude=set(RUN_ONLY_FIELDS))
    h.update(json.dumps(shaping, sort_keys=True).encode())
    h.update(data_fingerprint.encode())
    arrays, meta = encoder.state()
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return "sha256:" + h.hexdigest()


#: Prefix of the table encoding's arrays in a saved model's weights.
ENCODER_PREFIX = "encoder."


def save_encoder(encoder: NeuralTableEncoder) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The encoding's arrays (prefixed, for weights.safetensors) and its JSON meta."""
    arrays, meta = encoder.state()
    return {ENCODER_PREFIX + k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta


def load_encoder(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> NeuralTableEncoder:
    """Rebuild the encoding from a saved model's weights and its JSON meta."""
    arrays = {k[len(ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    return NeuralTableEncoder.from_state(arrays, meta)


def family_state(files: dict[str, Any], name: str, version: int) -> dict[str, Any]:
    """A family's JSON state file from a model directory, checked for its format version."""
    from synthkit.errors import ArtifactError

    state = files.get(name)
    if not isinstance(state, dict) or state.get("version") != version:
        raise ArtifactError(
            f"The model directory has no readable {name} (version {version}).",
            hint="It was written by another synthkit version or is incomplete; re-train it.",
        )
    return state


# --- shared training pieces ----------------------------------------------------------------------
def adam(params: Any, **options: Any) -> Any:
    """``torch.optim.Adam`` with torch's fused kernel where it has one (CPU, CUDA): one kernel per
    step instead of a dozen small ops per parameter. Same update rule; falls back to the
    multi-tensor (foreach) implementation where fused is unavailable."""
    import torch

    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, foreach=True, **options)
