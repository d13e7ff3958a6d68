"""Several tables and the foreign keys between them: the input of relational generators.

A :class:`MultiTable` holds one polars frame and one :class:`~synthkit.schema.Schema` per table,
each table's primary key, and the :class:`ForeignKey` links. It knows the order to make tables
in (parents first), checks referential integrity (orphan rows), and writes its metadata as JSON
or as SDV multi-table metadata. ``synthkit.connectors.sql.read_database`` builds one from a
database schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.errors import SchemaError
from synthkit.schema import Schema, infer_schema

__all__ = ["ForeignKey", "MultiTable"]


@dataclass(frozen=True)
class ForeignKey:
    """Rows of ``child`` refer, through ``child_columns``, to ``parent_columns`` of ``parent``."""

    child: str
    child_columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "child_columns", tuple(self.child_columns))
        object.__setattr__(self, "parent_columns", tuple(self.parent_columns))
        if not self.child_columns or len(self.child_columns) != len(self.parent_columns):
            raise SchemaError(
                f"Foreign key {self.child}{list(self.child_columns)} → {self.parent}"
                f"{list(self.parent_columns)} pairs an unequal number of columns.",
                hint="Name as many parent columns as child columns, in matching order.",
            )

    def __str__(self) -> str:
        return (f"{self.child}({', '.join(self.child_columns)}) → "
                f"{self.parent}({', '.join(self.parent_columns)})")

    def to_dict(self) -> dict[str, Any]:
        return {"child": self.child, "child_columns": list(self.child_columns),
                "parent": self.parent, "parent_columns": list(self.parent_columns)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ForeignKey:
        return cls(data["child"], tuple(data["child_columns"]), data["parent"], tuple(data["parent_columns"]))


class MultiTable:
    """Tables by name, their schemas and primary keys, and the foreign keys that link them."""

    def __init__(
        self,
        tables: Mapping[str, pl.DataFrame],
        *,
        schemas: Mapping[str, Schema] | None = None,
        foreign_keys: Iterable[ForeignKey] = (),
        primary_keys: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        if not tables:
            raise SchemaError("A MultiTable needs at least one table.")
        self.tables: dict[str, pl.DataFrame] = dict(tables)
        given = dict(schemas or {})
        self.schemas: dict[str, Schema] = {
            name: given.get(name) or infer_schema(frame) for name, frame in self.tables.items()
        }
        pks = {k: list(v) for k, v in (primary_keys or {}).items()}
        for name, schema in self.schemas.items():
            if name not in pks and schema.primary_key:
                pks[name] = [schema.primary_key]
        self.primary_keys: dict[str, list[str]] = pks
        self.foreign_keys: list[ForeignKey] = list(foreign_keys)
        self._validate()

    def _validate(self) -> None:
        extra = sorted(set(self.schemas) - set(self.tables))
        if extra:
            raise SchemaError(f"Schemas given for tables that are not there: {extra}.",
                              hint=f"Tables: {self.names}")
        for name, frame in self.tables.items():
            self.schemas[name].check_frame(frame)
        for name, cols in self.primary_keys.items():
            self._require(name, cols, "primary key")
        for fk in self.foreign_keys:
            self._require(fk.child, fk.child_columns, f"foreign key {fk}")
            self._require(fk.parent, fk.parent_columns, f"foreign key {fk}")

    def _require(self, table: str, columns: Iterable[str], what: str) -> None:
        if table not in self.tables:
            raise SchemaError(f"The {what} names the table '{table}', which is not here.",
                              hint=f"Tables: {self.names}")
        missing = [c for c in columns if c not in self.tables[table].columns]
        if missing:
            raise SchemaError(f"The {what} names columns {missing} that '{table}' lacks.",
                              hint=f"Columns of '{table}': {self.tables[table].columns}")

    # --- access --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.tables)

    def __getitem__(self, name: str) -> pl.DataFrame:
        if name not in self.tables:
            raise SchemaError(f"No table '{name}'.", hint=f"Tables: {self.names}")
        return self.tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def __contains__(self, name: object) -> bool:
        return name in self.tables

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}: {f.height:,}×{f.width}" for n, f in self.tables.items())
        return f"MultiTable({sizes}; {len(self.foreign_keys)} foreign key(s))"

    def parents(self, name: str) -> list[ForeignKey]:
        """The foreign keys by which ``name`` refers to other tables."""
        return [fk for fk in self.foreign_keys if fk.child == name]

    def children(self, name: str) -> list[ForeignKey]:
        """The foreign keys by which other tables refer to ``name``."""
        return [fk for fk in self.foreign_keys if fk.parent == name]

    def order(self) -> list[str]:
        """Table names, parents before children (self-references ignored); refuses cycles."""
        deps = {n: {fk.parent for fk in self.parents(n) if fk.parent != n} for n in self.tables}
        done: list[str] = []
        while len(done) < len(deps):
            ready = [n for n in self.tables if n not in done and deps[n] <= set(done)]
            if not ready:
                cycle = sorted(n for n in self.tables if n not in done)
                raise SchemaError(
                    f"The foreign keys among {cycle} form a cycle, so no table can be made first.",
                    hint="Drop one foreign key of the cycle (e.g. a nullable back-reference) and "
                    "restore it after generating.",
                )
            done.extend(ready)
        return done

    def orphans(self) -> dict[str, int]:
        """For each foreign key, the count of child rows whose non-null key has no parent row."""
        out: dict[str, int] = {}
        for fk in self.foreign_keys:
            child = self.tables[fk.child].select(fk.child_columns).drop_nulls()
            parent = self.tables[fk.parent].select(
                [pl.col(p).alias(c) for p, c in zip(fk.parent_columns, fk.child_columns, strict=True)]
            ).unique()
            try:
                missing = child.join(parent, on=list(fk.child_columns), how="anti", nulls_equal=False)
            except pl.exceptions.SchemaError as exc:
                raise SchemaError(f"Foreign key {fk} joins columns of different types: {exc}") from exc
            out[str(fk)] = missing.height
        return out

    # --- metadata ------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Schemas, primary keys and foreign keys as JSON-ready data (no rows)."""
        return {
            "tables": {n: self.schemas[n].to_dict() for n in self.tables},
            "primary_keys": {n: list(c) for n, c in self.primary_keys.items()},
            "foreign_keys": [fk.to_dict() for fk in self.foreign_keys],
        }

    def metadata_json(self, path: str | Path | None = None) -> str:
        """:meth:`metadata` as JSON (sorted keys); also written to ``path`` when given."""
        text = json.dumps(self.metadata(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_metadata(cls, tables: Mapping[str, pl.DataFrame], metadata: Mapping[str, Any] | str) -> MultiTable:
        """Rebuild from frames and the output of :meth:`metadata` (or its JSON text)."""
        data = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
        return cls(
            tables,
            schemas={n: Schema.from_dict(s) for n, s in data.get("tables", {}).items()},
            primary_keys=data.get("primary_keys", {}),
            foreign_keys=[ForeignKey.from_dict(f) for f in data.get("foreign_keys", [])],
        )

    def to_sdv_dict(self) -> dict[str, Any]:
        """SDV multi-table metadata (V1): tables, primary keys, single-column relationships."""
        tables: dict[str, Any] = {}
        for name in self.tables:
            table = self.schemas[name].to_sdv_dict(name)["tables"][name]
            pk = self.primary_keys.get(name, [])
            if len(pk) == 1:
                table["primary_key"] = pk[0]
                table["columns"][pk[0]] = {"sdtype": "id"}
            for fk in self.parents(name):
                if len(fk.child_columns) == 1:
                    table["columns"][fk.child_columns[0]] = {"sdtype": "id"}
            tables[name] = table
        relationships = [
            {"parent_table_name": fk.parent, "parent_primary_key": fk.parent_columns[0],
             "child_table_name": fk.child, "child_foreign_key": fk.child_columns[0]}
            for fk in self.foreign_keys
            if len(fk.child_columns) == 1 and self.primary_keys.get(fk.parent) == list(fk.parent_columns)
        ]
        return {"tables": tables, "relationships": relationships, "METADATA_SPEC_VERSION": "V1"}
