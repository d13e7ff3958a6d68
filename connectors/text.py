"""Text corpora: documents (and optional labels) from text files, JSON Lines or a table column.

``read_corpus(source, ...)`` returns a :class:`TextCorpus`, the text counterpart of an
``ImageSet``: a list of documents, an optional label per document (the condition a text
generator learns, e.g. a review's rating), the names they came from, and a sha256 fingerprint
that ties a model, a report and an audit record to exactly this corpus.

Sources:

* a ``.txt`` file: one document per non-blank line;
* a folder of ``.txt`` files: one document per file (sorted by path); when every file sits in a
  sub-folder, the sub-folder's name is its label (``reviews/positive/1.txt``);
* a ``.jsonl`` / ``.ndjson`` file: the ``text=`` field of each record (default ``"text"``), and
  the ``label=`` field when given;
* a table: a polars or pandas DataFrame, or a CSV / Parquet / JSON file read by
  :mod:`synthkit.connectors.files`, with ``text=`` naming its text column (found on its own when
  the table has exactly one string column) and ``label=`` its condition column.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.errors import DataError, EmptyDataError, SourceNotFoundError

__all__ = ["TextCorpus", "read_corpus"]

#: Default column names of a corpus turned into a table.
TEXT = "text"
LABEL = "label"
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class TextCorpus:
    """Documents with an optional label each; ``text_column`` / ``label_column`` are the names
    they had in their source (and get back in :meth:`to_frame` and in sampled frames)."""

    documents: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    text_column: str = TEXT
    label_column: str | None = None

    def __post_init__(self) -> None:
        docs = tuple(self.documents)
        if not docs:
            raise EmptyDataError(
                "The corpus holds no documents.",
                hint="Point read_corpus at a file or column with at least one non-empty text.",
            )
        bad = [i for i, d in enumerate(docs) if not isinstance(d, str)]
        if bad:
            raise DataError(
                f"Documents must be strings; entry {bad[0]} is a {type(docs[bad[0]]).__name__}.",
                hint="Cast the column to text first, or pick the text column with text=.",
            )
        object.__setattr__(self, "documents", docs)
        if self.labels is not None:
            labels = tuple(str(v) for v in self.labels)
            if len(labels) != len(docs):
                raise DataError(
                    f"{len(labels)} labels for {len(docs)} documents.",
                    hint="Give one label per document (or none).",
                )
            object.__setattr__(self, "labels", labels)
            if self.label_column is None:
                object.__setattr__(self, "label_column", LABEL)
        elif self.label_column is not None:
            object.__setattr__(self, "label_column", None)

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted (empty without labels)."""
        return sorted(set(self.labels)) if self.labels is not None else []

    def fingerprint(self) -> str:
        """``sha256:<hex>`` over the documents, the labels and their names (order matters)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.text_column, self.label_column]).encode())
        for i, doc in enumerate(self.documents):
            h.update(len(doc.encode()).to_bytes(8, "little"))
            h.update(doc.encode())
            if self.labels is not None:
                h.update(b"\x1f" + self.labels[i].encode() + b"\x1e")
        return "sha256:" + h.hexdigest()

    def to_frame(self) -> pl.DataFrame:
        """The corpus as a table: the text column, then the label column when there is one."""
        cols = {self.text_column: pl.Series(self.text_column, list(self.documents), pl.String)}
        if self.labels is not None and self.label_column is not None:
            cols[self.label_column] = pl.Series(self.label_column, list(self.labels), pl.String)
        return pl.DataFrame(cols)

    def sample(self, n: int, *, seed: int | None = None) -> TextCorpus:
        """A random subset of ``n`` documents (all of them when n is larger), labels kept."""
        import numpy as np

        n = min(int(n), len(self))
        index = sorted(np.random.default_rng(seed).choice(len(self), size=n, replace=False).tolist())
        return TextCorpus(
            tuple(self.documents[i] for i in index),
            None if self.labels is None else tuple(self.labels[i] for i in index),
            self.text_column,
            self.label_column,
        )

    @classmethod
    def from_frame(cls, frame: Any, *, text: str | None = None, label: str | None = None) -> TextCorpus:
        """A corpus from a table's text column (and optional label column); see module doc."""
        df = _to_polars(frame)
        text = text if text is not None else _only_text_column(df)
        for role, name in (("text", text), ("label", label)):
            if name is not None and name not in df.columns:
                raise DataError(
                    f"The table has no {role} column '{name}'.", hint=f"Columns: {df.columns}"
                )
        series = df.get_column(text)
        if series.dtype not in (pl.String, pl.Categorical, pl.Enum):
            raise DataError(
                f"Column '{text}' holds {series.dtype}, not text.",
                hint="Pick a string column with text=, e.g. read_corpus(df, text='review').",
            )
        keep = series.cast(pl.String).str.strip_chars().fill_null("").str.len_chars() > 0
        if label is not None:
            keep = keep & df.get_column(label).is_not_null()
        df = df.filter(keep)
        docs = df.get_column(text).cast(pl.String).to_list()
        labels = None if label is None else [str(v) for v in df.get_column(label).to_list()]
        return cls(tuple(docs), None if labels is None else tuple(labels), text, label)


def read_corpus(
    source: Any,
    *,
    text: str | None = None,
    label: str | None = None,
    encoding: str = "utf-8",
) -> TextCorpus:
    """Read a :class:`TextCorpus` from a path (``.txt``, a folder, ``.jsonl``, a table file), a
    DataFrame, or a list of strings. ``text=`` / ``label=`` name the text and label fields or
    columns. Blank documents are dropped; an empty result is an :class:`EmptyDataError`.

    Example: ``read_corpus("reviews.csv", text="review", label="score")``.
    """
    if isinstance(source, TextCorpus):
        return source
    if isinstance(source, pl.DataFrame) or type(source).__name__ == "DataFrame":
        return TextCorpus.from_frame(source, text=text, label=label)
    if isinstance(source, (list, tuple)):
        return _from_strings(source, name=text or TEXT)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(
            f"Cannot read a text corpus from a {type(source).__name__}.",
            hint="Pass a path (.txt, folder, .jsonl, .csv, .parquet), a DataFrame or a list of strings.",
        )
    path = Path(str(source).removeprefix("file://"))
    if not path.exists():
        raise SourceNotFoundError(f"No such file or folder: {path}")
    if path.is_dir():
        return _from_folder(path, encoding=encoding)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = path.read_text(encoding=encoding).splitlines()
        return _from_strings(lines, name=text or TEXT, where=str(path))
    if suffix in _JSONL_SUFFIXES:
        return _from_jsonl(path, text=text or TEXT, label=label, encoding=encoding)
    from synthkit.connectors.files import read as read_table

    return TextCorpus.from_frame(read_table(path), text=text, label=label)


def _from_strings(items: Sequence[Any], *, name: str, where: str = "the list") -> TextCorpus:
    bad = next((x for x in items if not isinstance(x, str)), None)
    if bad is not None:
        raise DataError(f"Documents must be strings; {where} holds a {type(bad).__name__}.")
    docs = tuple(d for d in items if d.strip())
    if not docs:
        raise EmptyDataError(f"{where} holds no non-blank documents.")
    return TextCorpus(docs, None, name, None)


def _from_folder(path: Path, *, encoding: str) -> TextCorpus:
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise EmptyDataError(f"The folder {path} holds no .txt files.")
    labelled = all(p.parent != path for p in files)
    docs, labels = [], []
    for p in files:
        doc = p.read_text(encoding=encoding).strip()
        if doc:
            docs.append(doc)
            labels.append(p.parent.relative_to(path).parts[0])
    if not docs:
        raise EmptyDataError(f"Every .txt file in {path} is blank.")
    return TextCorpus(tuple(docs), tuple(labels) if labelled else None, TEXT, LABEL if labelled else None)


def _from_jsonl(path: Path, *, text: str, label: str | None, encoding: str) -> TextCorpus:
    docs: list[str] = []
    labels: list[str] = []
    with open(path, encoding=encoding) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {number}: not JSON ({exc.msg}).") from exc
            if not isinstance(record, dict) or text not in record:
                raise DataError(
                    f"{path}, line {number}: no field '{text}'.",
                    hint="Name the text field with text=, e.g. read_corpus(path, text='body').",
                )
            value = record[text]
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{path}, line {number}: field '{text}' holds {type(value).__name__}, not text.")
            if label is not None and record.get(label) is None:
                continue
            if value.strip():
                docs.append(value)
                if label is not None:
                    labels.append(str(record[label]))
    if not docs:
        raise EmptyDataError(f"{path} holds no non-blank '{text}' values.")
    return TextCorpus(tuple(docs), tuple(labels) if label is not None else None, text, label)


def _to_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    try:
        return pl.from_pandas(frame)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"Cannot read a table from a {type(frame).__name__}: {exc}") from exc


def _only_text_column(df: pl.DataFrame) -> str:
    strings = [c for c, t in df.schema.items() if t == pl.String]
    if len(strings) == 1:
        return strings[0]
    raise DataError(
        f"Cannot tell which column holds the text: {len(strings)} string columns ({strings}).",
        hint="Name it with text=, e.g. read_corpus(df, text='review').",
    )

