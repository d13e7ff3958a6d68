"""Declaring and reading several tables: relationships YAML, SDV multi-table metadata, sources.

A relationships file says which tables there are, their primary keys and the foreign keys
between them, so a directory of files becomes a :class:`~synthkit.relational.MultiTable`::

    tables:
      airlines: {path: airlines.csv, primary_key: carrier}
      airports: {primary_key: faa}          # path defaults to <name>.parquet/.csv/... in the folder
      flights: flights.parquet               # just a path
    relationships:
      - {parent: airlines.carrier, child: flights.carrier}
      - {parent: airports, parent_column: faa, child: flights, child_column: origin}

An SDV multi-table metadata JSON (``tables`` with ``primary_key``, ``relationships`` with
``parent_table_name`` ...) is accepted in its place. :func:`read_tables` reads a directory (with
such a file), the file itself, or a database URI (foreign keys from the database).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.errors import ConfigError, SchemaError, SourceNotFoundError
from synthkit.relational import ForeignKey, MultiTable
from synthkit.schema import Schema

__all__ = [
    "RELATIONSHIP_FILES",
    "Relationships",
    "fingerprint_tables",
    "from_sdv_metadata",
    "load_relationships",
    "read_tables",
]

#: Names looked for in a directory source when no relationships file is given.
RELATIONSHIP_FILES = ("relationships.yaml", "relationships.yml", "relationships.json", "metadata.json")
_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json", ".csv.gz", ".jsonl.gz")


@dataclass
class Relationships:
    """Tables (name → path or None), primary keys, foreign keys and optional schemas."""

    paths: dict[str, str | None] = field(default_factory=dict)
    primary_keys: dict[str, list[str]] = field(default_factory=dict)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    schemas: dict[str, Schema] = field(default_factory=dict)
    base_dir: Path = Path(".")

    def build(self, tables: Mapping[str, pl.DataFrame]) -> MultiTable:
        """A MultiTable of ``tables`` with these keys (columns named as keys are checked there)."""
        schemas = {n: s.select([c for c in s.names if c in tables[n].columns])
                   for n, s in self.schemas.items() if n in tables}
        return MultiTable(tables, schemas=schemas or None, primary_keys=self.primary_keys,
                          foreign_keys=self.foreign_keys)


def load_relationships(spec: str | Path | Mapping[str, Any], *, base_dir: str | Path | None = None) -> Relationships:
    """Parse a relationships YAML/JSON file or mapping (synthkit form or SDV multi-table metadata)."""
    where = "relationships"
    if isinstance(spec, Mapping):
        data: Any = dict(spec)
        root = Path(base_dir or ".")
    else:
        path = Path(spec)
        if not path.is_file():
            raise SourceNotFoundError(f"Relationships file not found: {path}",
                                      hint="Pass a YAML file with tables: and relationships: (see the README).")
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML/JSON: {exc}") from exc
        root = Path(base_dir) if base_dir is not None else path.parent
        where = str(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must hold a mapping with tables: and relationships:.")
    if _is_sdv(data):
        rel = _from_sdv_dict(data, where)
    else:
        rel = _from_synthkit_dict(data, where)
    rel.base_dir = root
    return rel


def from_sdv_metadata(tables: Mapping[str, pl.DataFrame], metadata: Any) -> MultiTable:
    """A MultiTable from frames and SDV multi-table metadata (``Metadata``, its dict or a JSON path)."""
    if isinstance(metadata, (str, Path)) and not str(metadata).lstrip().startswith("{"):
        data = json.loads(Path(metadata).read_text(encoding="utf-8"))
    elif isinstance(metadata, str):
        data = json.loads(metadata)
    elif isinstance(metadata, Mapping):
        data = dict(metadata)
    else:
        data = metadata.to_dict()
    if not _is_sdv(data):
        raise SchemaError("This is not SDV multi-table metadata (no 'tables' with 'columns').",
                          hint="Pass the dict of sdv.metadata.Metadata.to_dict() or its saved JSON.")
    from synthkit.frames import to_polars

    return _from_sdv_dict(data, "SDV metadata").build({n: to_polars(f) for n, f in tables.items()})


def _is_sdv(data: Mapping[str, Any]) -> bool:
    tables = data.get("tables")
    return ("METADATA_SPEC_VERSION" in data or any(
        isinstance(r, Mapping) and "parent_table_name" in r for r in data.get("relationships") or []
    ) or (isinstance(tables, Mapping) and bool(tables)
          and all(isinstance(t, Mapping) and "columns" in t for t in tables.values())))


def _from_sdv_dict(data: Mapping[str, Any], where: str) -> Relationships:
    rel = Relationships()
    for name, table in (data.get("tables") or {}).items():
        rel.paths[name] = None
        rel.schemas[name] = Schema.from_sdv({"tables": {name: table}}, name)
        pk = table.get("primary_key")
        if pk:
            rel.primary_keys[name] = [pk] if isinstance(pk, str) else list(pk)
    for r in data.get("relationships") or []:
        try:
            parent_cols = r["parent_primary_key"]
            child_cols = r["child_foreign_key"]
            rel.foreign_keys.append(ForeignKey(
                r["child_table_name"], _as_list(child_cols), r["parent_table_name"], _as_list(parent_cols)))
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"A relationship in {where} lacks {exc}: {r}",
                              hint="SDV relationships name parent_table_name, parent_primary_key, "
                              "child_table_name and child_foreign_key.") from None
    return rel


def _from_synthkit_dict(data: Mapping[str, Any], where: str) -> Relationships:
    unknown = sorted(set(data) - {"tables", "relationships", "primary_keys"})
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}.",
                          hint="Use tables: {name: {path, primary_key}} and relationships: [...].")
    rel = Relationships()
    tables = data.get("tables") or {}
    if not isinstance(tables, Mapping):
        raise ConfigError(f"tables: in {where} must map table names to a path or {{path, primary_key}}.")
    for name, spec in tables.items():
        if spec is None or isinstance(spec, str):
            rel.paths[name] = spec
            continue
        if not isinstance(spec, Mapping):
            raise ConfigError(f"Table '{name}' in {where} must be a path or a mapping, not {spec!r}.")
        bad = sorted(set(spec) - {"path", "primary_key", "schema"})
        if bad:
            raise ConfigError(f"Table '{name}' in {where} has unknown keys {bad}.",
                              hint="Each table takes path, primary_key and schema (a schema JSON path).")
        rel.paths[name] = spec.get("path")
        if spec.get("primary_key"):
            rel.primary_keys[name] = _as_list(spec["primary_key"])
        if spec.get("schema"):
            rel.schemas[name] = Schema.from_json(spec["schema"])
    for name, pk in (data.get("primary_keys") or {}).items():
        rel.primary_keys[name] = _as_list(pk)
    for r in data.get("relationships") or []:
        rel.foreign_keys.append(_relationship(r, where))
    return rel


def _relationship(r: Any, where: str) -> ForeignKey:
    """``{parent: t.c, child: t.c}`` or ``{parent, parent_column(s), child, child_column(s)}``."""
    hint = ("Write {parent: airlines.carrier, child: flights.carrier} or {parent: airlines, "
            "parent_column: carrier, child: flights, child_column: carrier}.")
    if not isinstance(r, Mapping) or "parent" not in r or "child" not in r:
        raise ConfigError(f"A relationship in {where} must name parent and child: {r!r}.", hint=hint)
    bad = sorted(set(r) - {"parent", "child", "parent_column", "parent_columns", "child_column", "child_columns"})
    if bad:
        raise ConfigError(f"A relationship in {where} has unknown keys {bad}.", hint=hint)
    sides = {}
    for side in ("parent", "child"):
        table = str(r[side])
        cols = r.get(f"{side}_columns", r.get(f"{side}_column"))
        if cols is None:
            if "." not in table:
                raise ConfigError(f"The {side} '{table}' of a relationship in {where} names no column.", hint=hint)
            table, _, col = table.rpartition(".")
            cols = [col]
        sides[side] = (table, _as_list(cols))
    return ForeignKey(sides["child"][0], tuple(sides["child"][1]), sides["parent"][0], tuple(sides["parent"][1]))


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


# --- reading ------------------------------------------------------------------------------------
def read_tables(
    source: str | Path,
    relationships: str | Path | Mapping[str, Any] | Relationships | None = None,
    *,
    tables: list[str] | None = None,
    limit: int | None = None,
    password_env: str | None = None,
) -> MultiTable:
    """Read several tables as a MultiTable: a database URI (keys from the database), a directory
    of files (with a relationships file in it or given), or a relationships YAML naming files."""
    from synthkit.connectors import is_database_uri

    rel = relationships if isinstance(relationships, Relationships) or relationships is None \
        else load_relationships(relationships)
    src = str(source)
    if is_database_uri(src):
        from synthkit.connectors.sql import read_database

        names = tables or (sorted(rel.paths) if rel is not None and rel.paths else None)
        multi = read_database(src, tables=names, limit=limit, password_env=password_env)
        if rel is None:
            return multi
        return MultiTable(
            multi.tables, schemas=multi.schemas,
            primary_keys={**multi.primary_keys, **rel.primary_keys},
            foreign_keys=_merge_fks(multi.foreign_keys, rel.foreign_keys),
        )
    path = Path(src)
    if path.is_file() and path.suffix in (".yaml", ".yml") and rel is None:
        rel = load_relationships(path)
        path = path.parent
    if not path.is_dir():
        raise SourceNotFoundError(
            f"'{src}' is neither a directory of tables, a relationships YAML nor a database URI.",
            hint="Pass a folder of files (with relationships.yaml), a tables YAML, or sqlite:///db.",
        )
    if rel is None:
        found = next((path / n for n in RELATIONSHIP_FILES if (path / n).is_file()), None)
        rel = load_relationships(found) if found is not None else Relationships(base_dir=path)
    names = list(rel.paths) or sorted(_table_files(path))
    if tables is not None:
        names = [n for n in names if n in tables]
    if not names:
        raise SourceNotFoundError(f"No table files (.parquet, .csv, ...) in '{path}'.")
    frames = {name: _read_table(name, rel.paths.get(name), rel.base_dir if rel.paths.get(name) else path, limit)
              for name in names}
    return rel.build(frames)


def _merge_fks(a: list[ForeignKey], b: list[ForeignKey]) -> list[ForeignKey]:
    return list(dict.fromkeys([*a, *b]))


def _table_files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.name in RELATIONSHIP_FILES:
            continue
        for suffix in _SUFFIXES:
            if p.name.endswith(suffix) and not p.name.endswith(".synthetic.json"):
                out.setdefault(p.name[: -len(suffix)], p)
    return out


def _read_table(name: str, given: str | None, folder: Path, limit: int | None) -> pl.DataFrame:
    from synthkit.connectors import read

    if given is not None:
        path = Path(given).expanduser()
        path = path if path.is_absolute() else folder / path
    else:
        found = _table_files(folder).get(name)
        if found is None:
            raise SourceNotFoundError(f"No file for table '{name}' in '{folder}'.",
                                      hint=f"Add {name}.parquet (or .csv), or give tables: {{{name}: {{path: ...}}}}.")
        path = found
    frame = read(str(path))
    return frame.head(limit) if limit is not None else frame


def fingerprint_tables(tables: MultiTable | Mapping[str, Any]) -> str:
    """One sha256 over every table's name and fingerprint (names sorted): what a set's Decision names."""
    from synthkit.frames import fingerprint

    frames = tables.tables if isinstance(tables, MultiTable) else dict(tables)
    if not frames:
        raise SchemaError("There are no tables to fingerprint.")
    h = hashlib.sha256(b"synthkit.tables.v1\n")
    for name in sorted(frames):
        h.update(f"{name}\t{fingerprint(frames[name])}\n".encode())
    return "sha256:" + h.hexdigest()
