"""What the text generators (``text/gpt``, ``text/hf``, ``text/endpoint``) share: reading a corpus,
the label set and its shares, label conditions, sampling settings, the output frame, the DP
report and the run fingerprint. One place, so the families cannot drift apart."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from synthkit.errors import ConfigError, DataError, EmptyDataError, NotFittedError
from synthkit.generators.base import GeneratorConfig, _check_n, declared_classes


class TextConfig(GeneratorConfig):
    """Options every trained text family shares: where the text and its label are, the label set."""

    text_column: str | None = Field(
        None, description="Text column of a table (default: its only string column)."
    )
    label_column: str | None = Field(
        None, description="Label (condition) column of a table; None trains unconditionally."
    )
    labels: list[str] | None = Field(
        None, description="The public label set (required with dp when there are labels)."
    )

    @model_validator(mode="after")
    def _check_labels(self) -> TextConfig:
        if self.labels is not None and (not self.labels or len(set(self.labels)) != len(self.labels)):
            raise ValueError("labels must be a non-empty list of distinct values")
        return self


class TextModelMixin:
    """Bookkeeping of a fitted text model: its columns, label set, class shares and corpus fingerprint.

    Mixed in before :class:`~synthkit.generators.base.NonTabularGenerator`; the generator keeps
    ``config`` with ``text_column`` / ``label_column`` / ``temperature`` / ``top_p`` where it uses them.
    """

    #: The attribute a fit sets last: present means fitted.
    fitted_attribute: ClassVar[str] = "net_"
    min_rows: ClassVar[int]
    registry_name: str
    config: Any
    text_column_: str
    label_column_: str | None
    classes_: list[str]
    class_shares_: list[float]
    data_fingerprint_: str
    n_rows_: int

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, self.fitted_attribute)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet.", hint="Call fit(corpus) first.")

    # --- fit ---------------------------------------------------------------------------------
    def _read_corpus(self, data: Any, schema: Any = None) -> tuple[list[str], list[str] | None, str, str | None]:
        """Documents, labels and their column names from ``data`` (at least ``min_rows`` documents)."""
        if schema is not None:
            raise ConfigError(f"{self.registry_name} learns documents: it takes no table schema.")
        docs, labels, text_name, label_name = _as_documents(data, self.config.text_column, self.config.label_column)
        if len(docs) < self.min_rows:
            raise DataError(f"{self.registry_name} needs at least {self.min_rows} documents, got {len(docs)}.")
        return docs, labels, text_name, label_name

    def _keep_corpus_facts(
        self, docs: list[str], labels: list[str] | None, text_name: str, label_name: str | None,
        classes: list[str], *, private: bool = False,
    ) -> None:
        """Set the columns, label set, class shares (not released under dp) and data fingerprint."""
        self.text_column_, self.label_column_ = text_name, label_name if classes else None
        self.classes_ = classes
        if private or not classes or labels is None:
            self.class_shares_ = []
        else:
            index = {c: i for i, c in enumerate(classes)}
            counts = np.bincount([index[v] for v in labels], minlength=len(classes))
            self.class_shares_ = (counts / counts.sum()).tolist()
        self.data_fingerprint_ = _fingerprint(docs, labels if classes else None)
        self.n_rows_ = len(docs)

    # --- sample ------------------------------------------------------------------------------
    def _begin_sample(self, n: int, conditions: Mapping[str, Any] | None, rebalance: Any) -> tuple[int, int | None]:
        """The checked ``n`` and the class index ``conditions`` ask for (None: no condition)."""
        if rebalance is not None:
            raise ConfigError("rebalance= applies to tables; text models take conditions={'label': v}.")
        self._check_fitted()
        return _check_n(n), self._check_text_conditions(conditions)

    def _check_text_conditions(self, conditions: Mapping[str, Any] | None) -> int | None:
        """The class index ``conditions`` ask for ({"label": v} or the label column's name), or None."""
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
        if len({str(v) for v in values}) > 1:
            raise ConfigError(f"Conflicting label conditions: {dict(conditions)}.")
        value = str(values[0])
        if value not in self.classes_:
            raise ConfigError(f"Label {values[0]!r} was never seen in training.", hint=f"Known labels: {self.classes_}")
        return self.classes_.index(value)

    def _sampling(
        self, temperature: float | None, top_p: float | None, max_length: int | None, default_length: int
    ) -> tuple[float, float, int]:
        """Checked temperature, top-p and length of one sample call (config defaults where None)."""
        temperature = self.config.temperature if temperature is None else float(temperature)
        top_p = self.config.top_p if top_p is None else float(top_p)
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ConfigError(f"temperature must be > 0 and top_p in (0, 1], got {temperature}, {top_p}.")
        length = default_length if max_length is None else int(max_length)
        if length < 1:
            raise ConfigError(f"max_length must be at least 1, got {length}.")
        return temperature, top_p, length

    def _draw_classes(self, m: int, fixed: int | None, rng: np.random.Generator) -> np.ndarray:
        """``m`` class indices: ``fixed``, drawn in the training shares, or "no label" (the last index)."""
        if fixed is not None:
            return np.full(m, fixed, np.int64)
        if self.classes_ and self.class_shares_:
            return rng.choice(len(self.classes_), size=m, p=np.asarray(self.class_shares_))
        return np.full(m, len(self.classes_), np.int64)

    def _class_names(self, y: Iterable[int]) -> list[str | None]:
        """The label of each class index (None for "no label")."""
        return [self.classes_[i] if i < len(self.classes_) else None for i in y]

    def _text_frame(self, texts: Sequence[str | None], labels: Sequence[str | None]) -> pl.DataFrame:
        """The output table: the text column, and the label column when the model is conditional."""
        cols = {self.text_column_: pl.Series(self.text_column_, texts, pl.String)}
        if self.label_column_ is not None:
            cols[self.label_column_] = pl.Series(self.label_column_, labels, pl.String)
        return pl.DataFrame(cols)

    # --- likelihood --------------------------------------------------------------------------
    def _given_labels(self, labels: Sequence[Any] | None, n_docs: int) -> list[str] | None:
        """``labels`` as strings, one per document (None stays None)."""
        if labels is None:
            return None
        given = [str(v) for v in labels]
        if len(given) != n_docs:
            raise DataError(f"{len(given)} labels for {n_docs} documents.")
        return given

    def _class_indices(self, given: Sequence[str]) -> list[int]:
        """The class index of each label (an error for a label never seen in training)."""
        unknown = sorted(set(given) - set(self.classes_))
        if unknown:
            raise DataError(f"Labels {unknown[:10]} were never seen in training.", hint=f"Known labels: {self.classes_}")
        return [self.classes_.index(v) for v in given]

    # --- persistence -------------------------------------------------------------------------
    def _label_state(self) -> dict[str, Any]:
        """The columns and label set, for a saved state's JSON."""
        return {"text_column": self.text_column_, "label_column": self.label_column_,
                "classes": self.classes_, "class_shares": self.class_shares_}

    def _restore_labels(self, state: Mapping[str, Any]) -> None:
        """Read back what :meth:`_label_state` wrote."""
        self.text_column_ = state["text_column"]
        self.label_column_ = state["label_column"]
        self.classes_ = list(state["classes"])
        self.class_shares_ = list(state["class_shares"])


# --- training helpers ------------------------------------------------------------------------------
def classes_of(labels: list[str] | None, declared: list[str] | None, private: bool) -> list[str]:
    """The label set: declared (checked against the data), or the sorted labels seen."""
    if labels is None:
        return []
    return declared_classes(labels, declared, sorted(set(labels)), private=private, what="label set",
                            option="labels", hint="Pass labels=[...] (every value the label column may take).")


def run_fingerprint(gen: TextModelMixin, run_only: Iterable[str], extra: Sequence[Any] = (), tail: str = "") -> str:
    """sha256 of what a training run learns from (settings but ``run_only``, labels, data): a
    checkpoint resumes only into the same run."""
    h = hashlib.sha256()
    shaping = gen.config.model_dump(mode="json", exclude=set(run_only))
    h.update(json.dumps([gen.registry_name, shaping, gen.classes_, gen.seq_length_, *extra],  # type: ignore[attr-defined]
                        sort_keys=True).encode())
    h.update(gen.data_fingerprint_.encode())
    if tail:
        h.update(tail.encode())
    return "sha256:" + h.hexdigest()


# --- corpus ------------------------------------------------------------------------------------------
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
    """sha256 of the documents (and their labels), each length-prefixed."""
    h = hashlib.sha256()
    for i, doc in enumerate(docs):
        h.update(len(doc.encode()).to_bytes(8, "little") + doc.encode())
        if labels is not None:
            h.update(b"\x1f" + labels[i].encode() + b"\x1e")
    return "sha256:" + h.hexdigest()
