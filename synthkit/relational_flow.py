"""The multi-table flow: read several tables, train, sample, evaluate, gate ONCE, write all or none.

Used by ``synthkit train``/``synthkit sample`` when the source is a directory of tables, a
relationships YAML or a database URI without ``--table``, and by pipeline YAML files with
``tables:``/``source:`` + ``relationships:`` (:class:`RelationalPipeline`)::

    source: data/flights/                  # a folder of files, or sqlite:///flights.db
    relationships: data/flights/relationships.yaml   # optional for a database (its foreign keys)
    generator: {family: tabular/copula, config: {}}
    scale: 1.0
    holdout: 0.2
    policy: default
    purpose: testing the booking system
    sink: out/synthetic_flights/           # or {uri: "sqlite:///synth.db", mode: replace}
    model: out/flights_model
    report: out/report.json
    audit: {log: out/audit.jsonl, private_key: keys/synthkit.key}

**Holdout.** Rows held out for the privacy metrics come only from tables no other table refers
to (e.g. flights), so no kept row loses its parent; tables referred to are trained on whole and
their privacy metrics computed without holdout rows (the set report notes which).

**Gate.** :class:`SetReport` joins one :class:`~synthkit.evaluate.Report` per table: each metric
the policy names takes its *worst* value over the tables (lowest where higher is better), plus
``relational.cardinality`` (lowest children-per-parent similarity over the foreign keys),
``relational.integrity`` (lowest share of child keys with a parent) and
``relational.key_uniqueness``. One Decision and one audit record cover the set, bound to
:func:`~synthkit.relational_io.fingerprint_tables`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthkit.errors import ConfigError, DataError, GateRefusedError
from synthkit.pipeline import AuditSpec
from synthkit.relational import ForeignKey, MultiTable
from synthkit.schema import Schema

__all__ = [
    "TRAINING_FILE",
    "RelationalOutcome",
    "RelationalPipeline",
    "SetReport",
    "evaluate_set",
    "is_relational_model",
    "is_relational_pipeline",
    "is_relational_pipeline_file",
    "sample_tables",
    "split_tables",
    "train_tables",
]

#: Written next to ``relational.json``: how the training set was split, to re-derive it at sample time.
TRAINING_FILE = "training.json"
StageCallback = Callable[[str], None]


def is_relational_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a RelationalSynthesizer directory (it holds ``relational.json``)."""
    from synthkit.generators.relational.hma import STATE_FILE

    return (Path(path) / STATE_FILE).is_file()


# --- holdout ------------------------------------------------------------------------------------
def split_tables(data: MultiTable, *, holdout: float = 0.2, seed: int = 0) -> tuple[MultiTable, dict[str, pl.DataFrame]]:
    """(training set, holdout rows per table): rows are held out only from tables nobody refers to."""
    from synthkit.prepare.split import split_holdout

    referred = {fk.parent for fk in data.foreign_keys}
    train: dict[str, pl.DataFrame] = {}
    held: dict[str, pl.DataFrame] = {}
    for name in data.names:
        frame = data[name]
        if holdout and name not in referred and frame.height >= 10:
            part, rest = split_holdout(frame, fraction=holdout, seed=seed)
            train[name] = part
            if rest is not None:
                held[name] = rest
        else:
            train[name] = frame
    multi = MultiTable(train, schemas=data.schemas, primary_keys=data.primary_keys, foreign_keys=data.foreign_keys)
    return multi, held


# --- the set report -----------------------------------------------------------------------------
@dataclass
class SetReport:
    """One Report per table plus cross-table metrics; duck-types a Report for the gate."""

    tables: dict[str, Any]
    metrics: dict[str, Any]
    synthetic_fingerprint: str
    real_fingerprint: str
    schema_: Schema
    cardinality: dict[str, float] = field(default_factory=dict)
    integrity: dict[str, float] = field(default_factory=dict)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def value(self, name: str) -> float | None:
        """The metric's value over the set (the worst table's); None when no table has it."""
        metric = self.metrics.get(name)
        return None if metric is None else metric.value

    def table_schema(self) -> Schema:
        """Every table's columns, named ``table.column``: the PII rules look at them all."""
        return self.schema_

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {k: m.model_dump(mode="json") for k, m in self.metrics.items()},
            "tables": {n: r.to_dict() for n, r in self.tables.items()},
            "cardinality": dict(self.cardinality), "integrity": dict(self.integrity),
            "rows": self.rows, "notes": list(self.notes),
            "synthetic_fingerprint": self.synthetic_fingerprint, "real_fingerprint": self.real_fingerprint,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON with sorted keys; written atomically to ``path`` when given."""
        from synthkit.evaluate.report import write_atomic

        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
        if path is not None:
            write_atomic(Path(path), text + "\n")
        return text

    def write(self, path: str | Path) -> None:
        """``.json``: the whole set report; otherwise one HTML page per table (``<stem>.<table>.html``) and the JSON."""
        p = Path(path)
        if p.suffix.lower() == ".json":
            self.to_json(p)
            return
        self.to_json(p.with_suffix(".json"))
        for name, rep in self.tables.items():
            rep.to_html(p.with_name(f"{p.stem}.{name}{p.suffix or '.html'}"))


def evaluate_set(
    real: MultiTable, synthetic: MultiTable, *, holdout: Mapping[str, pl.DataFrame] | None = None,
    seed: int = 0, sdmetrics: bool = False, **kwargs: Any,
) -> SetReport:
    """Evaluate every table (key columns left out), the children-per-parent counts and the keys."""
    from synthkit.evaluate import evaluate
    from synthkit.evaluate.relational import cardinality_similarity
    from synthkit.evaluate.report import Metric
    from synthkit.relational_io import fingerprint_tables

    missing = sorted(set(real.names) - set(synthetic.names))
    if missing:
        raise DataError(f"The synthetic set lacks tables {missing}.", hint=f"Real tables: {real.names}")
    holdout = dict(holdout or {})
    reports: dict[str, Any] = {}
    rows: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    columns = []
    for name in real.names:
        keys = set(real.primary_keys.get(name, [])) | {c for fk in real.parents(name) for c in fk.child_columns}
        schema = real.schemas[name]
        cols = [c for c in schema.names if c not in keys]
        columns += [c.model_copy(update={"name": f"{name}.{c.name}"}) for c in schema.select(cols)]
        rows[name] = {"real": real[name].height, "synthetic": synthetic[name].height}
        if not cols or not real[name].height or not synthetic[name].height:
            notes.append(f"{name}: no learned columns or no rows, not evaluated.")
            continue
        held = holdout.get(name)
        reports[name] = evaluate(
            real[name].select(cols), synthetic[name].select(cols), schema.select(cols),
            holdout=held.select(cols) if held is not None else None, seed=seed, sdmetrics=sdmetrics, **kwargs,
        )
        if held is None:
            notes.append(f"{name}: other tables refer to it, so no rows were held out; its "
                         "privacy metrics that need holdout rows are not computed.")
    metrics: dict[str, Any] = {}
    for rep in reports.values():
        for mname, m in rep.metrics.items():
            if m.value is None:
                continue
            old = metrics.get(mname)
            worse = old is None or (m.value < old.value if m.higher_is_better else m.value > old.value)
            if worse:
                metrics[mname] = m
    for mname in list(metrics):
        m = metrics[mname]
        worst = next(n for n, r in reports.items() if r.metrics.get(mname) is m)
        metrics[mname] = m.model_copy(update={"note": f"worst table: {worst}"})
    cardinality = {str(fk): cardinality_similarity(_children(real, fk), _children(synthetic, fk))
                   for fk in real.foreign_keys}
    orphans = synthetic.orphans()
    integrity = {}
    for fk in real.foreign_keys:
        n = synthetic[fk.child].select(fk.child_columns).drop_nulls().height
        integrity[str(fk)] = 1.0 - orphans[str(fk)] / n if n else 1.0
    unique = all(_unique(synthetic, n) for n in real.names if real.primary_keys.get(n))
    extra = [
        ("relational.cardinality", min(cardinality.values(), default=1.0), True,
         "Lowest over foreign keys of 1 − KS distance between real and synthetic children-per-parent counts.", 0.8),
        ("relational.integrity", min(integrity.values(), default=1.0), True,
         "Lowest over foreign keys of the share of synthetic child keys that find their parent row.", 1.0),
        ("relational.key_uniqueness", float(unique), True,
         "1 when every synthetic primary key is unique and non-null, else 0.", 1.0),
    ]
    for mname, value, higher, meaning, threshold in extra:
        metrics[mname] = Metric(name=mname, section="quality", value=float(value), meaning=meaning,
                                higher_is_better=higher, threshold=threshold)
    return SetReport(
        tables=reports, metrics=metrics, synthetic_fingerprint=fingerprint_tables(synthetic),
        real_fingerprint=fingerprint_tables(real), schema_=Schema(columns=columns),
        cardinality=cardinality, integrity=integrity, rows=rows, notes=notes,
    )


def _children(data: MultiTable, fk: ForeignKey) -> np.ndarray:
    parent = data[fk.parent].select(
        [pl.col(p).alias(c) for p, c in zip(fk.parent_columns, fk.child_columns, strict=True)])
    counted = data[fk.child].select(fk.child_columns).drop_nulls().group_by(list(fk.child_columns)).len("n")
    return parent.join(counted, on=list(fk.child_columns), how="left").get_column("n").fill_null(0).to_numpy()


def _unique(data: MultiTable, name: str) -> bool:
    keys = data[name].select(data.primary_keys[name])
    return bool(keys.null_count().sum_horizontal()[0] == 0 and keys.unique().height == keys.height)


# --- train --------------------------------------------------------------------------------------
def train_tables(
    data: MultiTable, out_dir: str | Path, *, family: str = "tabular/copula", config: Mapping[str, Any] | None = None,
    holdout: float = 0.2, seed: int = 0, overwrite: bool = False, source: str | None = None,
) -> Any:
    """Fit a RelationalSynthesizer on the training part of ``data`` and save it with ``training.json``."""
    from synthkit.evaluate.report import write_atomic
    from synthkit.generators.relational import RelationalSynthesizer
    from synthkit.relational_io import fingerprint_tables

    train, _ = split_tables(data, holdout=holdout, seed=seed)
    options = dict(config or {})
    synth_opts = {k: options.pop(k) for k in ("families", "table_configs", "context_columns") if k in options}
    synth = RelationalSynthesizer(family=family, table_config=options, seed=seed, **synth_opts).fit(train)
    path = synth.save(out_dir, overwrite=overwrite)
    info = {"holdout": holdout, "split_seed": seed, "training_fingerprint": fingerprint_tables(train),
            "tables": {n: train[n].height for n in train.names},
            "source": source}
    write_atomic(Path(path) / TRAINING_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")
    return synth, Path(path), train


# --- sample, evaluate, gate, write --------------------------------------------------------------
@dataclass
class RelationalOutcome:
    """What a gated multi-table sampling produced; ``written`` is None when the gate refused."""

    synthetic: MultiTable
    report: SetReport
    decision: Any
    written: Any = None
    audit_record: Any = None

    @property
    def passed(self) -> bool:
        return bool(self.decision.passed)


def sample_tables(
    model: str | Path,
    real: MultiTable,
    destination: str,
    *,
    policy: Any = "default",
    purpose: str | None = None,
    scale: float = 1.0,
    seed: int | None = None,
    holdout: float | None = None,
    split_seed: int | None = None,
    report_path: str | Path | None = None,
    audit_log: str | Path | None = None,
    private_key: Any = None,
    approvals: list[Any] | None = None,
    overwrite: bool = False,
    mode: str = "create",
    password_env: str | None = None,
    format: str = "parquet",
    on_stage: StageCallback | None = None,
    synthesizer: Any = None,
) -> RelationalOutcome:
    """Sample every table from ``model``, evaluate against ``real``, gate once, write all or none.

    ``real`` is the whole real set the model was trained on; its training part is re-derived
    with the split in ``training.json`` (or ``holdout``/``split_seed``) and must match the model's.
    """
    from synthkit.connectors.multi_write import write_tables
    from synthkit.generators.relational import RelationalSynthesizer
    from synthkit.policies import AuditLog, gate, load_policy, require_purpose
    from synthkit.relational_io import fingerprint_tables

    def stage(text: str) -> None:
        if on_stage is not None:
            on_stage(text)

    pol = load_policy(policy)
    require_purpose(pol, purpose)
    model_dir = Path(model)
    synth = synthesizer or RelationalSynthesizer.load(model_dir)
    info_path = model_dir / TRAINING_FILE
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    share = holdout if holdout is not None else float(info.get("holdout", 0.0))
    split = split_seed if split_seed is not None else int(info.get("split_seed", 0))
    train, held = split_tables(real, holdout=share, seed=split)
    expected = info.get("training_fingerprint")
    if expected is not None and fingerprint_tables(train) != expected:
        raise DataError(
            "The real tables (after the holdout split) are not the ones this model was trained on.",
            hint="Pass the same source and relationships (and --holdout/--split-seed) as at training time.",
        )
    stage("generating")
    synthetic = synth.sample(scale, seed=seed)
    stage("evaluating")
    rep = evaluate_set(train, synthetic, holdout=held, seed=seed or 0)
    if report_path:
        rep.write(report_path)
    stage("gating")
    decision = gate(pol, rep, purpose, approvals=list(approvals or []))
    record = None
    if audit_log:
        if private_key is None:
            raise ConfigError("An audit log needs the private key that signs its records.")
        record = AuditLog(audit_log).append(
            decision, private_key=private_key, report=rep,
            model_manifest_hash=_model_hash(model_dir),
            extra={"generator": "relational/hma", "tables": {n: synthetic[n].height for n in synthetic.names}},
        )
    written = None
    if decision.passed:
        stage("writing")
        written = write_tables(synthetic, destination, decision=decision, overwrite=overwrite, mode=mode,
                               password_env=password_env, format=format)
    return RelationalOutcome(synthetic, rep, decision, written, record)


def _model_hash(model_dir: Path) -> str:
    """The sha256 of ``relational.json`` (which holds every table model's manifest hash)."""
    from synthkit.artifacts import sha256_bytes
    from synthkit.generators.relational.hma import STATE_FILE

    return sha256_bytes((model_dir / STATE_FILE).read_bytes())


# --- pipeline YAML ------------------------------------------------------------------------------
class RelationalGeneratorSpec(BaseModel):
    """The tabular family per table (and its options) of the RelationalSynthesizer."""

    model_config = ConfigDict(extra="forbid")
    family: str = "tabular/copula"
    config: dict[str, Any] = Field(default_factory=dict)


class RelationalPipelineConfig(BaseModel):
    """A multi-table pipeline file: ``source`` (folder or database URI) or ``tables:``, relationships, sink."""

    model_config = ConfigDict(extra="forbid")
    source: str | None = None
    source_options: dict[str, Any] = Field(default_factory=dict)
    tables: dict[str, Any] | None = None
    relationships: str | list[dict[str, Any]] | None = None
    primary_keys: dict[str, Any] = Field(default_factory=dict)
    generator: RelationalGeneratorSpec = Field(default_factory=RelationalGeneratorSpec)
    scale: float = Field(1.0, ge=0.0)
    holdout: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    policy: str = "default"
    purpose: str | None = None
    approvals: list[str] = Field(default_factory=list)
    sink: str | None = None
    sink_options: dict[str, Any] = Field(default_factory=dict)
    overwrite: bool = False
    report: str | None = None
    model: str | None = None
    audit: AuditSpec | None = None
    base_dir: str = "."

    @model_validator(mode="before")
    @classmethod
    def _uri_mappings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("source", "sink"):
            value = data.get(key)
            if isinstance(value, dict):
                spec = dict(value)
                if "uri" not in spec and "path" not in spec:
                    raise ValueError(f"{key} given as a mapping needs a 'uri' (or 'path')")
                data[key] = spec.pop("uri", None) or spec.pop("path")
                data[f"{key}_options"] = {**data.get(f"{key}_options", {}), **spec}
        return data

    def resolve(self, value: str | None) -> str | None:
        if value is None or "://" in value:
            return value
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else Path(self.base_dir) / p)


def is_relational_pipeline(data: Mapping[str, Any]) -> bool:
    """Whether a pipeline mapping is the multi-table form (``tables:`` or ``relationships:``)."""
    return "tables" in data or "relationships" in data


def is_relational_pipeline_file(path: str | Path) -> bool:
    """Whether a pipeline YAML file is the multi-table form (unreadable files are left to the caller)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and is_relational_pipeline(data)


class RelationalPipeline:
    """Runs a multi-table pipeline file: read → train → sample → evaluate → gate → audit → write."""

    def __init__(self, config: RelationalPipelineConfig | Mapping[str, Any]) -> None:
        if isinstance(config, RelationalPipelineConfig):
            self.config = config
        else:
            try:
                self.config = RelationalPipelineConfig.model_validate(dict(config))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
                raise ConfigError(f"Invalid multi-table pipeline: {problems}",
                                  hint=f"Valid keys: {sorted(RelationalPipelineConfig.model_fields)}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> RelationalPipeline:
        import yaml

        p = Path(path)
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of settings.")
        data.setdefault("base_dir", str(p.parent))
        return cls(data)

    def read(self) -> MultiTable:
        """The real tables the file names (folder, database or ``tables:`` paths) with their keys."""
        from synthkit.relational_io import load_relationships, read_tables

        cfg = self.config
        spec: dict[str, Any] = {}
        rel: Any = None
        if isinstance(cfg.relationships, str):
            rel = load_relationships(cfg.resolve(cfg.relationships) or "")
        elif cfg.tables is not None or cfg.relationships is not None or cfg.primary_keys:
            spec = {"tables": cfg.tables or {}, "relationships": cfg.relationships or [],
                    "primary_keys": cfg.primary_keys}
            rel = load_relationships(spec, base_dir=cfg.base_dir)
        if cfg.source is None:
            if rel is None or not rel.paths:
                raise ConfigError("A multi-table pipeline needs source: (a folder or database URI) or tables: with paths.")
            return read_tables(cfg.base_dir, rel)
        opts = {k: v for k, v in cfg.source_options.items() if k in ("limit", "password_env", "tables")}
        return read_tables(cfg.resolve(cfg.source) or "", rel, **opts)

    def run(self, *, on_stage: StageCallback | None = None, raise_on_refusal: bool = True) -> RelationalOutcome:
        """Run every stage; raises GateRefusedError after auditing when refused (unless told not to)."""
        import tempfile

        from synthkit.policies import load_policy, load_private_key, require_purpose

        cfg = self.config
        if cfg.sink is None:
            raise ConfigError("A multi-table pipeline needs sink: (a directory or a database URI).")
        pol = load_policy(cfg.resolve(cfg.policy) if Path(cfg.resolve(cfg.policy) or "").is_file() else cfg.policy)
        require_purpose(pol, cfg.purpose)
        key = None
        if cfg.audit is not None:
            passphrase = os.environ.get(cfg.audit.passphrase_env) if cfg.audit.passphrase_env else None
            key = load_private_key(cfg.resolve(cfg.audit.private_key) or "", passphrase=passphrase)
        if on_stage:
            on_stage("reading")
        real = self.read()
        if on_stage:
            on_stage("training")
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = cfg.resolve(cfg.model) or str(Path(tmp) / "model")
            synth, _, _ = train_tables(real, model_dir, family=cfg.generator.family, config=cfg.generator.config,
                                       holdout=cfg.holdout, seed=cfg.seed, overwrite=True, source=cfg.source)
            sink_opts = {k: v for k, v in cfg.sink_options.items() if k in ("mode", "password_env", "format")}
            outcome = sample_tables(
                model_dir, real, cfg.resolve(cfg.sink) or "", policy=pol, purpose=cfg.purpose, scale=cfg.scale,
                seed=cfg.seed, report_path=cfg.resolve(cfg.report), private_key=key,
                audit_log=cfg.resolve(cfg.audit.log) if cfg.audit else None,
                approvals=[cfg.resolve(a) for a in cfg.approvals], overwrite=cfg.overwrite,
                on_stage=on_stage, synthesizer=synth, **sink_opts,
            )
        if not outcome.passed and raise_on_refusal:
            raise GateRefusedError(f"Policy '{outcome.decision.policy}' refused the tables; nothing was written.")
        return outcome
