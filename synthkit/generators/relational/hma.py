"""RelationalSynthesizer: parents first, children counted per parent and generated given it.

How a :class:`~synthkit.relational.MultiTable` is learned (in the spirit of SDV's HMA, with
synthkit's own tabular families doing the per-table work):

* Tables are fitted and made in :meth:`MultiTable.order` (parents before children; a cycle is
  refused there).
* **Counts.** For every foreign key child → parent, each parent row gets a column holding its
  number of child rows (``__n__<child>__<column>``), learned by the *parent's* tabular model
  together with the parent's own columns. The number of children of a synthetic parent is thus
  drawn from a distribution conditioned on that parent's values (not only the marginal count
  distribution), and the count columns are dropped from the output.
* **Driver.** A child with several parents (flights → airlines, airports twice, planes) is made
  from one *driver* foreign key: the one with the fewest nulls, ties broken by the parent with
  the most rows. Each synthetic driver-parent row gets child rows in proportion to its learned
  count, the total being the real child rows times the parents' scale.
  The driver parent's first ``context_columns`` learned columns are joined to the child's
  training rows as leading context columns; with a family that can be seeded
  (``tabular/argn``'s ``sample_seeded``) the child rows are drawn *given* their synthetic
  parent's context values, then the context is dropped. Families without seeding (the fast
  default, ``tabular/copula``) draw child rows without the context.
* **Other foreign keys** are assigned by sampling existing synthetic parent keys: each synthetic
  parent's own learned count for that relationship is its weight; the child rows are split over
  the parents in proportion (largest remainder, shuffled), so the children-per-parent
  distribution follows the real one for these keys too. A nullable key keeps its real null share.
* **Sequential children.** A child table named in ``sequences`` (``{"flights": "time_hour"}``:
  table -> order column; the entity is its foreign key, or ``{"order": ..., "entity": ...}`` when
  it has several) is made as ordered event sequences, one per synthetic parent row, by a
  :class:`~synthkit.generators.relational.sequential.SequentialSynthesizer` fitted with the
  parent's context columns as the entity's context: the sequence length is the parent's learned
  count, the start time and the events are drawn given the parent's synthetic columns (and the
  history), and times increase within every parent. Its other foreign keys are assigned per row
  as above. Saved under ``tables/<name>/`` as a sequential model directory.
* **Keys.** Primary and foreign key columns are never learned. Primary keys are new unique
  values outside the real ones: integers counted from a power of ten above the largest real key,
  strings ``<prefix><number>`` with a prefix no real key starts with. Every foreign key points at
  an existing synthetic parent by construction.

Saved as one directory: ``relational.json`` (config, metadata, plans, per-table manifest hashes,
a digest) and ``tables/<name>/``, a normal synthkit model directory per table (safetensors +
JSON). No pickle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synthkit.errors import ArtifactError, ConfigError, DataError, NotFittedError, SchemaError
from synthkit.generators.base import LEARNED_KINDS, Generator
from synthkit.relational import ForeignKey, MultiTable
from synthkit.schema import Column, ColumnKind, Schema

FORMAT_VERSION = 1
STATE_FILE = "relational.json"
TABLES_DIR = "tables"
_CONTEXT = "__parent__."
_COUNT = "__n__"


class SequenceSpec(BaseModel):
    """A sequential child table: its order column and the foreign-key column of its entity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order: str = Field(description="Column that orders a parent's child rows (time or number).")
    entity: str | None = Field(
        None, description="Foreign-key column naming the parent; None: the table's only one."
    )


class RelationalConfig(BaseModel):
    """Options of :class:`RelationalSynthesizer`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = Field("tabular/copula", description="Tabular family fitted per table.")
    table_config: dict[str, Any] = Field(
        default_factory=dict, description="Options given to every table's generator."
    )
    families: dict[str, str] = Field(
        default_factory=dict, description="Per-table family, overriding `family`."
    )
    table_configs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-table options, merged over `table_config`."
    )
    context_columns: int = Field(
        3, ge=0, description="Driver-parent columns a child is generated given (seeded families)."
    )
    sequences: dict[str, SequenceSpec] = Field(
        default_factory=dict,
        description="Child tables made as ordered event sequences per parent row: table -> order "
        "column (or {'order': ..., 'entity': foreign-key column}).",
    )
    sequence_config: dict[str, Any] = Field(
        default_factory=dict, description="SequentialSynthesizer options for sequential tables "
        "(table_configs[name] is merged over them)."
    )
    seed: int | None = None

    @field_validator("sequences", mode="before")
    @classmethod
    def _order_only(cls, value: Any) -> Any:
        """Accept ``{"flights": "time_hour"}`` for ``{"flights": {"order": "time_hour"}}``."""
        if isinstance(value, dict):
            return {k: {"order": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


@dataclass
class TablePlan:
    """What fit decided for one table (JSON-able; saved in relational.json)."""

    name: str
    columns: list[str]
    primary_key: str | None
    id_spec: dict[str, Any] | None
    driver: dict[str, Any] | None  # a ForeignKey dict
    context: dict[str, str] = field(default_factory=dict)  # context column -> parent column
    counts: dict[str, str] = field(default_factory=dict)  # str(fk) -> count column on this table
    null_shares: dict[str, float] = field(default_factory=dict)  # str(fk) -> child null share
    n_rows: int = 0
    family: str = ""
    has_model: bool = True
    sequence: dict[str, str] | None = None  # {"entity": fk column, "order": column}


class RelationalSynthesizer:
    """Fit on a :class:`~synthkit.relational.MultiTable`; sample a new one with intact keys.

    >>> synth = RelationalSynthesizer(family="tabular/copula", seed=0).fit(multi)  # doctest: +SKIP
    >>> fake = synth.sample(scale=1.0, seed=1)                                      # doctest: +SKIP
    """

    def __init__(self, **config: Any) -> None:
        try:
            self.config = RelationalConfig(**config)
        except ValidationError as exc:
            raise ConfigError(
                "Invalid configuration for RelationalSynthesizer: "
                + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                hint=f"Options: {sorted(RelationalConfig.model_fields)}",
            ) from exc

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump(exclude_defaults=True).items())
        return f"RelationalSynthesizer({args})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "plans_")

    # --- fit -------------------------------------------------------------------------------
    def fit(self, data: MultiTable) -> RelationalSynthesizer:
        """Learn every table of ``data``, parents first, and the children-per-parent counts."""
        if not isinstance(data, MultiTable):
            raise DataError(
                f"RelationalSynthesizer.fit takes a MultiTable, got {type(data).__name__}.",
                hint="Build one with synthkit.relational.MultiTable(tables, foreign_keys=[...], "
                "primary_keys={...}) or synthkit.connectors.sql.read_database(...).",
            )
        order = data.order()  # refuses cycles
        _check_keys(data)
        sequences = self._check_sequences(data)
        plans: dict[str, TablePlan] = {}
        generators: dict[str, Any] = {}
        for name in order:
            plan, train, schema = self._plan(data, name, sequences.get(name))
            gen = None
            if plan.sequence is not None:
                gen = self._new_sequence_model(name).fit(
                    train, entity=plan.sequence["entity"], order=plan.sequence["order"],
                    schema=schema, context=list(plan.context),
                )
            elif train.width:
                gen = self._new_generator(name).fit(train, schema=schema)
            plan.has_model = gen is not None
            plans[name] = plan
            generators[name] = gen
        self.order_ = order
        self.metadata_ = data.metadata()
        self.plans_ = plans
        self.generators_ = generators
        return self

    @property
    def sequences_(self) -> dict[str, dict[str, str]]:
        """Sequential tables as ``{table: {"entity": fk column, "order": column}}`` (for
        :func:`~synthkit.evaluate_relational`'s ``sequences=``)."""
        self._check_fitted()
        return {n: dict(p.sequence) for n, p in self.plans_.items() if p.sequence is not None}

    def _check_sequences(self, data: MultiTable) -> dict[str, dict[str, str]]:
        """Each declared sequential table: present, with a parent, an order column and an
        entity foreign key without nulls. Returns ``{table: {"entity", "order"}}``."""
        out: dict[str, dict[str, str]] = {}
        for name, spec in self.config.sequences.items():
            if name not in data.names:
                raise ConfigError(f"sequences names a table '{name}' that is not in the data.",
                                  hint=f"Tables: {data.names}")
            if name in self.config.families:
                raise ConfigError(
                    f"'{name}' is sequential, so families['{name}'] has no use.",
                    hint="Give its entity-table family as sequence_config={'family': ...}.",
                )
            parents = data.parents(name)
            if not parents:
                raise SchemaError(
                    f"The sequential table '{name}' has no foreign key to a parent table: its "
                    "sequences need a parent row each.",
                    hint="Declare the foreign key in the MultiTable, or use sk.SequentialSynthesizer "
                    "on the table alone.",
                )
            fk_columns = [fk.child_columns[0] for fk in parents]
            entity = spec.entity
            if entity is None:
                if len(parents) > 1:
                    raise ConfigError(
                        f"The sequential table '{name}' has several foreign keys {fk_columns}: say "
                        "which one names the entity whose events it holds.",
                        hint=f"sequences={{'{name}': {{'order': '{spec.order}', 'entity': "
                        f"'{fk_columns[0]}'}}}}",
                    )
                entity = fk_columns[0]
            elif entity not in fk_columns:
                raise SchemaError(f"sequences['{name}'].entity = '{entity}' is not a foreign-key "
                                  f"column of '{name}'.", hint=f"Foreign-key columns: {fk_columns}")
            frame = data[name]
            if spec.order not in frame.columns:
                raise SchemaError(f"The order column '{spec.order}' of the sequential table '{name}' "
                                  "is not in it.", hint=f"Columns: {frame.columns}")
            keys = set(fk_columns) | set(data.primary_keys.get(name) or [])
            if spec.order in keys:
                raise SchemaError(f"The order column '{name}.{spec.order}' is a key column.",
                                  hint="Name a time or number column that orders the events.")
            nulls = frame.get_column(entity).null_count()
            if nulls:
                raise DataError(
                    f"The sequential table '{name}' has {nulls} rows without a parent ('{entity}' "
                    "is null): every event must belong to a parent row.",
                    hint=f"Drop those rows of '{name}' before fitting.",
                )
            out[name] = {"entity": entity, "order": spec.order}
        return out

    def _new_sequence_model(self, name: str) -> Any:
        from synthkit.generators.relational.sequential import SequentialSynthesizer

        options = {**self.config.sequence_config, **self.config.table_configs.get(name, {})}
        options.setdefault("seed", self.config.seed)
        options.setdefault("progress", False)
        try:
            return SequentialSynthesizer(**options)
        except ConfigError as exc:
            raise ConfigError(f"Sequential table '{name}': {exc}",
                              hint="sequence_config and table_configs of a sequential table "
                              "take SequentialSynthesizer options.") from exc

    def _family(self, name: str) -> str:
        return self.config.families.get(name, self.config.family)

    def _new_generator(self, name: str) -> Generator:
        from synthkit.generators.registry import create, resolve

        family = self._family(name)
        options = {**self.config.table_config, **self.config.table_configs.get(name, {})}
        cls, _ = resolve(family)
        if "seed" in cls.config_class.model_fields and "seed" not in options:
            options["seed"] = self.config.seed
        if "progress" in cls.config_class.model_fields and "progress" not in options:
            options["progress"] = False
        return create(family, **options)

    def _plan(
        self, data: MultiTable, name: str, sequence: dict[str, str] | None = None
    ) -> tuple[TablePlan, pl.DataFrame, Schema]:
        frame = data[name]
        schema = data.schemas[name]
        pk = _single_pk(data, name)
        parents = data.parents(name)
        keys = {c for fk in parents for c in fk.child_columns}
        if pk is not None:
            keys.add(pk)
        own = [c for c in frame.columns if c not in keys]
        train = frame.select(own)
        cols: list[Column] = [schema[c] for c in own]

        null_shares = {str(fk): _null_share(frame, fk.child_columns[0]) for fk in parents}
        driver = min(
            # a sequential table is driven by its entity's parent
            [fk for fk in parents if sequence is None or fk.child_columns[0] == sequence["entity"]],
            key=lambda fk: (null_shares[str(fk)], -data[fk.parent].height,
                            -frame.get_column(fk.child_columns[0]).n_unique()),
            default=None,
        )
        context: dict[str, str] = {}
        if driver is not None and self.config.context_columns:
            parent_pk = driver.parent_columns[0]
            parent_keys = {parent_pk} | {c for fk in data.parents(driver.parent) for c in fk.child_columns}
            pschema = data.schemas[driver.parent]
            pframe = data[driver.parent]
            usable = [
                c for c in pschema
                if c.kind in LEARNED_KINDS and c.name not in parent_keys
                # a categorical with a value per row is a name in disguise: no use as context
                and not (c.kind == ColumnKind.CATEGORICAL and pframe.height > 10
                         and pframe.get_column(c.name).n_unique() == pframe.height)
            ]
            for c in usable[: self.config.context_columns]:
                context[f"{_CONTEXT}{c.name}"] = c.name
            if context:
                lookup = data[driver.parent].select(
                    pl.col(parent_pk).alias(driver.child_columns[0]),
                    *[pl.col(p).alias(c) for c, p in context.items()],
                )
                ctx = frame.select(driver.child_columns[0]).join(
                    lookup, on=driver.child_columns[0], how="left", maintain_order="left"
                ).drop(driver.child_columns[0])
                train = pl.concat([ctx, train], how="horizontal")
                cols = [
                    pschema[p].model_copy(update={"name": c, "references": None, "nullable": True})
                    for c, p in context.items()
                ] + cols

        counts: dict[str, str] = {}
        for fk in data.children(name):
            col = f"{_COUNT}{fk.child}__{fk.child_columns[0]}"
            counted = (
                data[fk.child].select(pl.col(fk.child_columns[0]).alias(pk)).drop_nulls()
                .group_by(pk).len(name=col)
            )
            values = frame.select(pk).join(counted, on=pk, how="left", maintain_order="left")
            series = values.get_column(col).fill_null(0).cast(pl.Int64)
            train = train.with_columns(series.alias(col))
            cols.append(Column(name=col, kind=ColumnKind.NUMERICAL, dtype="Int64", nullable=False,
                               min=0.0, max=float(series.max() or 0), decimals=0))
            counts[str(fk)] = col

        if sequence is not None:  # the events' entity: the parent key
            train = train.with_columns(frame.get_column(sequence["entity"]))
            cols.append(schema[sequence["entity"]].model_copy(update={"references": None}))
        plan = TablePlan(
            name=name,
            columns=list(frame.columns),
            primary_key=pk,
            id_spec=_fit_id_spec(frame.get_column(pk)) if pk is not None else None,
            driver=driver.to_dict() if driver is not None else None,
            context=context,
            counts=counts,
            null_shares=null_shares,
            n_rows=frame.height,
            family="sequential" if sequence is not None else self._family(name),
            sequence=sequence,
        )
        return plan, train, Schema(columns=cols)

    # --- sample ----------------------------------------------------------------------------
    def sample(
        self, scale: float = 1.0, *, sizes: dict[str, int] | None = None, seed: int | None = None
    ) -> MultiTable:
        """A new MultiTable: root tables get ``scale`` × their real rows (or ``sizes[name]``),
        child tables as many rows as their synthetic parents' counts say. Same seed, same data."""
        self._check_fitted()
        if not (isinstance(scale, (int, float)) and scale >= 0):
            raise ConfigError(f"scale must be a non-negative number, got {scale!r}.")
        sizes = dict(sizes or {})
        unknown = sorted(set(sizes) - set(self.order_))
        if unknown:
            raise ConfigError(f"sizes names tables that are not in the model: {unknown}.",
                              hint=f"Tables: {self.order_}")
        driven = sorted(n for n in sizes if self.plans_[n].driver is not None)
        if driven:
            raise ConfigError(
                f"sizes names child tables {driven}: their rows follow their parents' counts.",
                hint="Give sizes for tables without foreign keys: "
                f"{[n for n in self.order_ if self.plans_[n].driver is None]}.",
            )
        if any(not isinstance(v, int) or v < 0 for v in sizes.values()):
            raise ConfigError(f"sizes must be whole numbers of rows (at least 0), got {sizes}.")
        root = np.random.SeedSequence(self.config.seed if seed is None else seed)
        seeds = {name: root.spawn(1)[0] for name in self.order_}
        made: dict[str, pl.DataFrame] = {}
        for name in self.order_:
            made[name] = self._sample_table(name, made, float(scale), sizes, seeds[name])
        meta = self.metadata_
        schemas = {n: Schema.from_dict(s) for n, s in meta["tables"].items()}
        tables = {
            n: made[n].select(
                pl.col(c).cast(schemas[n][c].polars_dtype, strict=False) for c in self.plans_[n].columns
            )
            for n in self.order_
        }
        return MultiTable(
            tables, schemas=schemas, primary_keys=meta["primary_keys"],
            foreign_keys=[ForeignKey.from_dict(f) for f in meta["foreign_keys"]],
        )

    def _sample_table(
        self, name: str, made: dict[str, pl.DataFrame], scale: float, sizes: dict[str, int],
        seq: np.random.SeedSequence,
    ) -> pl.DataFrame:
        plan = self.plans_[name]
        gen = self.generators_[name]
        gen_seed = int(seq.generate_state(1)[0])
        rng = np.random.default_rng(seq)
        driver = ForeignKey.from_dict(plan.driver) if plan.driver else None
        if driver is None:
            n_rows = int(sizes.get(name, round(plan.n_rows * scale)))
            out = gen.sample(n_rows, seed=gen_seed) if gen is not None else pl.DataFrame()
        else:
            parent = made[driver.parent]
            ppk = self.plans_[driver.parent].primary_key
            counts = _counts(parent, self.plans_[driver.parent].counts[str(driver)])
            # children in total as the real ones times the parents' scale, spread as the learned
            # counts say (a small parent table's sampling noise would otherwise double a child)
            pplan = self.plans_[driver.parent]
            share_fk = plan.null_shares[str(driver)]
            total = int(round(plan.n_rows * (1 - share_fk) * parent.height / max(pplan.n_rows, 1)))
            if counts.sum() > 0:
                counts = _largest_remainder(total, counts / counts.sum())
            index = np.repeat(np.arange(parent.height), counts)
            n_main = int(index.size)
            share = self.plans_[name].null_shares[str(driver)]
            extra = int(round(n_main * share / (1 - share))) if 0 < share < 1 else 0
            n_rows = n_main + extra
            key = parent.get_column(ppk).gather(index)
            if extra:
                key = pl.concat([key, pl.Series(key.name, [None] * extra, dtype=key.dtype)])
            seeded = gen is not None and hasattr(gen, "sample_seeded") and plan.context
            if plan.sequence is not None:  # ordered events per parent row, given its columns
                ctx = parent.select(pl.col(p).alias(c) for c, p in plan.context.items())
                out = gen.sample_given(ctx, counts, keys=parent.get_column(ppk), seed=gen_seed)
                out = out.drop([*plan.context, plan.sequence["entity"]])  # the key is put back below
            elif seeded:
                ctx = parent.select(pl.col(p).alias(c) for c, p in plan.context.items())[index]
                if extra:
                    ctx = pl.concat([ctx, ctx.clear(extra)], how="vertical")
                out = gen.sample_seeded(ctx, seed=gen_seed).drop(list(plan.context))
            elif gen is not None:
                out = gen.sample(n_rows, seed=gen_seed).drop([c for c in plan.context if c in gen.schema_])
            else:
                out = pl.DataFrame()
            out = _put(out, key.alias(driver.child_columns[0]))
        for fk_dict in self._other_parents(name, driver):
            fk = ForeignKey.from_dict(fk_dict)
            assigned = self._assign(fk, made[fk.parent], n_rows, plan.null_shares[str(fk)], rng)
            out = _put(out, assigned.alias(fk.child_columns[0]))
        if plan.primary_key is not None:
            out = _put(out, _make_ids(plan.id_spec or {}, n_rows).alias(plan.primary_key))
        return out

    def _other_parents(self, name: str, driver: ForeignKey | None) -> list[dict[str, Any]]:
        fks = [f for f in self.metadata_["foreign_keys"] if f["child"] == name]
        return [f for f in fks if driver is None or f != driver.to_dict()]

    def _assign(
        self, fk: ForeignKey, parent: pl.DataFrame, n: int, null_share: float, rng: np.random.Generator
    ) -> pl.Series:
        keys = parent.get_column(self.plans_[fk.parent].primary_key or "")
        k_null = int(round(n * null_share))
        k = n - k_null
        if keys.len() == 0 and k:
            raise DataError(
                f"Cannot give {fk} a value: the synthetic '{fk.parent}' table has no rows.",
                hint="Sample with a larger scale (or sizes) for the parent table.",
            )
        weights = _counts(parent, self.plans_[fk.parent].counts[str(fk)]).astype(float)
        if weights.sum() <= 0:
            weights = np.ones(keys.len())
        alloc = _largest_remainder(k, weights / weights.sum())
        values = keys.gather(np.repeat(np.arange(keys.len()), alloc))
        if k_null:
            values = pl.concat([values, pl.Series(values.name, [None] * k_null, dtype=values.dtype)])
        return values.gather(rng.permutation(n)) if n else values

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``relational.json`` plus one model directory per table (safetensors + JSON)."""
        from synthkit import __version__
        from synthkit.artifacts import staged_dir, write_state

        self._check_fitted()
        dest = Path(path)
        with staged_dir(dest, overwrite=overwrite) as tmp:
            hashes: dict[str, str | None] = {}
            for name, gen in self.generators_.items():
                if gen is None:
                    hashes[name] = None
                    continue
                sub = tmp / TABLES_DIR / name
                gen.save(sub)
                hashes[name] = _model_hash(sub)
            write_state(tmp / STATE_FILE, {
                "format_version": FORMAT_VERSION,
                "synthkit_version": __version__,
                "generator": "relational/hma",
                "config": self.config.model_dump(mode="json"),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "order": self.order_,
                "metadata": self.metadata_,
                "plans": {n: asdict(p) for n, p in self.plans_.items()},
                "tables": hashes,
            })
        return dest

    @classmethod
    def load(cls, path: str | Path) -> RelationalSynthesizer:
        """Load a directory written by :meth:`save`; every hash is checked first."""
        from synthkit.artifacts import read_state
        from synthkit.generators.registry import load as load_generator

        root = Path(path)
        state = read_state(root / STATE_FILE, format_version=FORMAT_VERSION, what="relational model",
                           hint="Save one with RelationalSynthesizer.save(path).")
        synth = cls(**state["config"])
        generators: dict[str, Any] = {}
        for name, expected in state["tables"].items():
            if expected is None:
                generators[name] = None
                continue
            sub = root / TABLES_DIR / name
            if _model_hash(sub) != expected:
                raise ArtifactError(f"The model of table '{name}' ({sub}) is not the one saved.",
                                    hint="The directory was changed after saving; save it again.")
            if state["plans"][name].get("sequence") is not None:
                from synthkit.generators.relational.sequential import SequentialSynthesizer

                generators[name] = SequentialSynthesizer.load(sub)
            else:
                generators[name] = load_generator(sub)
        synth.order_ = list(state["order"])
        synth.metadata_ = state["metadata"]
        synth.plans_ = {n: TablePlan(**p) for n, p in state["plans"].items()}
        synth.generators_ = generators
        return synth

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("This RelationalSynthesizer is not fitted yet.",
                                 hint="Call fit(multi_table) first.")


# --- helpers ---------------------------------------------------------------------------------
def _check_keys(data: MultiTable) -> None:
    """Single-column foreign keys onto the parent's single-column primary key; no orphans."""
    for fk in data.foreign_keys:
        if fk.child == fk.parent:
            raise SchemaError(f"Foreign key {fk} refers to its own table; self-references are not "
                              "supported yet.", hint="Drop it before fitting and restore it after.")
        if len(fk.child_columns) != 1:
            raise SchemaError(f"Foreign key {fk} has several columns; only single-column keys are "
                              "supported yet.", hint="Join the key columns into one column.")
        if data.primary_keys.get(fk.parent) != list(fk.parent_columns):
            raise SchemaError(
                f"Foreign key {fk} must point at the primary key of '{fk.parent}', which is "
                f"{data.primary_keys.get(fk.parent) or 'not declared'}.",
                hint=f"Declare primary_keys={{'{fk.parent}': ['{fk.parent_columns[0]}']}} in the MultiTable.",
            )
    for name in data.names:
        pk = _single_pk(data, name)
        if pk is not None:
            s = data[name].get_column(pk)
            if s.null_count() or s.n_unique() != s.len():
                raise DataError(f"The primary key {name}.{pk} has nulls or repeated values.",
                                hint="A primary key must be unique and non-null; fix or drop those rows.")
    bad = {k: v for k, v in data.orphans().items() if v}
    if bad:
        raise DataError(
            f"Child rows refer to parent rows that are not there: {bad}.",
            hint="Drop those rows, set their keys to null, or add the missing parents before fitting.",
        )


def _single_pk(data: MultiTable, name: str) -> str | None:
    pk = data.primary_keys.get(name) or []
    if len(pk) == 1:
        return pk[0]
    if len(pk) > 1 and data.children(name):
        raise SchemaError(f"'{name}' has a composite primary key {pk} that other tables refer to; "
                          "only single-column keys are supported yet.")
    return None


def _model_hash(path: Path) -> str:
    """A table model directory's hash: its manifest's, or for a sequential model the hash of
    ``sequential.json`` (whose digest covers its parts' manifest hashes)."""
    from synthkit.artifacts import manifest_hash, sha256_bytes
    from synthkit.generators.relational.sequential import STATE_FILE as SEQUENCE_STATE

    state = path / SEQUENCE_STATE
    return sha256_bytes(state.read_bytes()) if state.is_file() else manifest_hash(path)


def _null_share(frame: pl.DataFrame, column: str) -> float:
    return float(frame.get_column(column).null_count() / frame.height) if frame.height else 0.0


def _fit_id_spec(keys: pl.Series) -> dict[str, Any]:
    """How new keys are made, disjoint from the real ones; stores no real key."""
    if keys.dtype.is_numeric():
        top = int(np.ceil(float(keys.abs().max() or 0))) if keys.len() else 0
        return {"mode": "int", "offset": 10 ** len(str(top))}
    text = keys.cast(pl.String)
    prefix = "syn-"
    while text.str.starts_with(prefix).any():
        prefix += "x"
    return {"mode": "string", "prefix": prefix}


def _make_ids(spec: dict[str, Any], n: int) -> pl.Series:
    counter = np.arange(n, dtype=np.int64)
    if spec.get("mode") == "int":
        return pl.Series(counter + int(spec["offset"]))
    width = max(6, len(str(max(n - 1, 0))))
    return pl.Series([f"{spec['prefix']}{i:0{width}d}" for i in counter], dtype=pl.String)


def _counts(frame: pl.DataFrame, column: str) -> np.ndarray:
    values = frame.get_column(column).cast(pl.Float64, strict=False).fill_null(0).fill_nan(0)
    return np.clip(np.rint(values.to_numpy()), 0, None).astype(np.int64)


def _largest_remainder(n: int, shares: np.ndarray) -> np.ndarray:
    exact = n * shares
    counts = np.floor(exact).astype(np.int64)
    short = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def _put(frame: pl.DataFrame, series: pl.Series) -> pl.DataFrame:
    """``frame`` with ``series`` as a column (a frame without columns takes the series' height)."""
    return frame.with_columns(series) if frame.width else series.to_frame()
