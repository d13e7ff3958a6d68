"""What every torch generator family shares: its training options, Trainer, encoding and run hash.

A family's config subclasses :class:`NeuralConfig` and adds its architecture; ``_fit`` calls
:func:`encode_table`, :func:`make_trainer` and passes :func:`run_fingerprint` to the Trainer so
that a checkpoint is resumed only by the same data, encoding and model-shaping settings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from synthkit.generators.base import GeneratorConfig
from synthkit.nn import Trainer
from synthkit.prepare.neural import NeuralTableEncoder
from synthkit.schema import Schema

#: Settings that change how a run is carried out, not what it learns: a resumed run may change
#: them (more epochs, another device) and keep its checkpoint.
RUN_ONLY_FIELDS = frozenset(
    {"epochs", "device", "progress", "checkpoint_dir", "checkpoint_every", "compile"}
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
    device: str = Field(
        "auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:1', ..."
    )
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (no effect on a CPU).")
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
    encoder = NeuralTableEncoder(numerical=config.numerical, max_modes=config.max_modes, seed=seed)
    encoder.fit(df, schema)
    matrix = encoder.transform(df, rng=np.random.default_rng(seed))
    return encoder, np.ascontiguousarray(matrix, dtype=np.float32)


def make_trainer(config: NeuralConfig, description: str) -> Trainer:
    """The shared Trainer, set up from a family's config."""
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
    )


def run_fingerprint(config: NeuralConfig, data_fingerprint: str, encoder: NeuralTableEncoder) -> str:
    """What a checkpoint must match to be resumed: model-shaping config, data and encoding."""
    h = hashlib.sha256()
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
