"""Labelling: written synthetic data says that it is synthetic, and under which decision.

When a policy requires it, the passing Decision carries a ``labelling`` requirement and file
sinks apply it as they write: Parquet key-value metadata (``synthkit.synthetic=true`` plus the
policy, purpose, data fingerprint and generator), a ``<file>.synthetic.json`` sidecar for CSV,
TSV and JSON (Lines) files, and optionally a constant boolean column (the only label a database
table can carry: a database sink refuses labelling that sets no column). The sidecar is committed
together with the data file (staged first, renamed right after it), so neither is left alone.
This module knows the Decision only by duck typing: connectors do not import policies.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.errors import GateRefusedError, WriteError

#: The sidecar of ``data.csv`` is ``data.csv.synthetic.json``.
SIDECAR_SUFFIX = ".synthetic.json"
#: The Parquet key-value metadata key that marks a file as synthetic.
PARQUET_KEY = "synthkit.synthetic"
_TEXT_FORMATS = ("csv", "tsv", "jsonl", "json")


@dataclass(frozen=True)
class LabelPlan:
    """The labels one write applies: Parquet metadata, sidecar content, constant column."""

    parquet_metadata: dict[str, str] = field(default_factory=dict)
    sidecar: dict[str, Any] | None = None
    column: str | None = None

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        """``df`` with the constant label column added (unchanged when none is required)."""
        if self.column is None:
            return df
        if self.column in df.columns:
            raise WriteError(
                f"The data already has a column named '{self.column}', the policy's labelling column.",
                hint="Rename that column, or set another labelling column in the policy "
                "(labelling: {column: ...}).",
            )
        return df.with_columns(pl.lit(True, dtype=pl.Boolean).alias(self.column))


def sidecar_path(dest: Path) -> Path:
    """Where the sidecar of ``dest`` goes: next to it, ``<name>.synthetic.json``."""
    return dest.with_name(dest.name + SIDECAR_SUFFIX)


def plan_labels(decision: Any, fmt: str, provenance: Mapping[str, Any] | None = None) -> LabelPlan:
    """The labels ``decision`` requires for a file of format ``fmt``; an empty plan when none.

    Refuses (GateRefusedError) when labelling is required but none of the required labels can
    be applied to this format, e.g. only Parquet metadata for a CSV file.
    """
    spec = getattr(decision, "labelling", None)
    if spec is None:
        return LabelPlan()
    get = spec.get if isinstance(spec, Mapping) else lambda k, d=None: getattr(spec, k, d)
    column = get("column", None) or None
    info = _provenance(decision, provenance)
    metadata = (
        {PARQUET_KEY: "true", **{f"synthkit.{k}": _text(v) for k, v in info.items() if v is not None}}
        if fmt == "parquet" and get("parquet_metadata", False)
        else {}
    )
    sidecar = (
        {"synthetic": True, "format": fmt, "label_column": column, **info}
        if fmt in _TEXT_FORMATS and get("csv_sidecar", False)
        else None
    )
    if not metadata and sidecar is None and column is None:
        where = "database tables" if fmt == "table" else f"{fmt} files"
        raise GateRefusedError(
            f"The policy requires labelling the output as synthetic, but none of its labels "
            f"applies to {where}; nothing was written.",
            hint="Use a policy whose labelling sets a label column (labelling: {column: "
            "is_synthetic}), which database tables carry; files: write Parquet (labelled in its "
            "metadata) or enable csv_sidecar.",
        )
    return LabelPlan(parquet_metadata=metadata, sidecar=sidecar, column=column)


def stage_sidecar(dest: Path, content: Mapping[str, Any]) -> Path:
    """Write the sidecar of ``dest`` to a fsynced temp file next to it; returns the temp path."""
    final = sidecar_path(dest)
    tmp = final.parent / f".{final.name}.{secrets.token_hex(8)}.tmp"
    text = json.dumps({"file": dest.name, **content}, indent=2, sort_keys=True, default=str) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit_sidecar(tmp: Path, dest: Path) -> None:
    """Move the staged sidecar into place right after ``dest``; remove ``dest`` if that fails."""
    try:
        os.replace(tmp, sidecar_path(dest))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _provenance(decision: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the labels say: the decision's policy, purpose and data, plus the caller's facts."""
    fields = ("policy", "policy_version", "policy_hash", "purpose", "data_fingerprint", "decided_at")
    info: dict[str, Any] = {k: getattr(decision, k, None) for k in fields}
    info["synthkit_version"] = _version()
    info.update({str(k): v for k, v in (extra or {}).items()})
    return info


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("synthkit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return None
