"""Pipeline: the whole flow, in order, from a YAML file or from code.

read → schema → split → fit → sample → evaluate → gate → audit → write (only if allowed).
This is the one module that knows the whole order; every stage it calls knows only its own job.

A pipeline file::

    source: data/wage.csv
    drop_columns: [rownames]
    schema_overrides: {year: {kind: categorical}}
    generator: {name: tabular/copula, config: {}}
    n: 3000
    rebalance: {health_ins: {"1. Yes": 0.5, "2. No": 0.5}}   # optional; also conditions: {...}
    holdout: 0.2
    policy: default
    purpose: software testing of the payroll system
    approvals: [approvals/alice.json]     # signed approvals, when the policy requires them
    sink: out/synthetic.parquet          # engine: ray → a directory of part-NNNNN.parquet
    engine: local                        # or ray (+ partitions: 8, address: auto)
    report: out/report.html
    model: out/model
    audit: {log: out/audit.jsonl, private_key: keys/synthkit.key}
    pii:                                  # optional; every pii/text column has a safe default
      key_env: SYNTHKIT_PII_KEY           # or key_file: keys/pii.key (never written anywhere)
      columns:
        email: hash
        dob: {handling: generalise, date_unit: month}
        customer_code: {pii: other, handling: fake, consistent: true}
        notes: redact

Database sources and sinks are mappings with a ``uri`` and their options (the password comes
from the URI, ``password_env``, PGPASSWORD or a .pgpass-style file; records show it as ***)::

    source: {uri: "postgresql://analyst@db:5432/shop", table: orders, sample: 50000,
             password_env: SHOP_DB_PASSWORD}
    sink: {uri: "postgresql://writer@db:5432/shop", table: orders_synth, mode: replace}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthkit.errors import ConfigError, GateRefusedError
from synthkit.prepare.clean import CleanRules

#: A callback that is told each stage as it starts (the CLI shows it as progress).
StageCallback = Callable[[str], None]


class GeneratorSpec(BaseModel):
    """Which generator to train, by registry name, and its configuration."""

    model_config = ConfigDict(extra="forbid")

    name: str = "tabular/copula"
    config: dict[str, Any] = Field(default_factory=dict)


class AuditSpec(BaseModel):
    """Where decisions are logged and which Ed25519 key signs them."""

    model_config = ConfigDict(extra="forbid")

    log: str
    private_key: str
    passphrase_env: str | None = Field(
        None, description="Name of an environment variable holding the key's passphrase."
    )


class EvaluationSpec(BaseModel):
    """Privacy metrics beyond the defaults: k-anonymity of quasi-identifiers, anonymeter's risks."""

    model_config = ConfigDict(extra="forbid")

    quasi_identifiers: list[str] = Field(
        default_factory=list,
        description="Columns an attacker could know (added to those the schema marks): the "
        "report gains privacy.k_anonymity over them.",
    )
    k: int = Field(5, ge=2, description="The k of privacy.k_anonymity_share_below_k.")
    anonymeter: bool = Field(
        False, description="Add anonymeter's singling-out, linkability and attribute-inference "
        "risks (needs a holdout and the synthkit[anonymeter] extra; slow).",
    )
    anonymeter_attacks: int = Field(500, ge=10, description="Attacks per anonymeter evaluation.")

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`synthkit.evaluate.evaluate`."""
        return {"quasi_identifiers": self.quasi_identifiers or None, "anonymity_k": self.k,
                "anonymeter": self.anonymeter, "anonymeter_attacks": self.anonymeter_attacks}


class PIISpec(BaseModel):
    """Personal data: per-column handling, and the key behind hash tokens and consistent fakes.

    ``columns`` maps a column to a handling (``drop``, ``fake``, ``hash``, ``generalise``,
    ``keep``; text also ``redact``) or to a mapping with ``handling``, options
    (:class:`synthkit.schema.PIIOptions`) and, to mark a column as personal data, ``pii``.
    The key comes from ``key_env`` or ``key_file``; without one a random key is made per run.
    """

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    key_env: str | None = Field(None, description="Environment variable holding the PII key.")
    key_file: str | None = Field(None, description="File holding the PII key.")
    locale: str | None = Field(None, description="Faker locale for fakes (default en_US).")

    @model_validator(mode="after")
    def _valid_rules(self) -> PIISpec:
        from synthkit.schema import PIIOptions

        if self.key_env and self.key_file:
            raise ValueError("give the PII key by key_env or by key_file, not both")
        for name, overrides in self.overrides().items():
            try:
                PIIOptions(**overrides.get("pii_options", {}))
            except ValidationError as exc:
                raise ValueError(f"column {name}: {exc.errors()[0]['msg']} "
                                 f"({'.'.join(map(str, exc.errors()[0]['loc']))})") from exc
        return self

    def overrides(self) -> dict[str, dict[str, Any]]:
        """The schema overrides the column rules stand for."""
        from synthkit.schema import PIIHandling

        out: dict[str, dict[str, Any]] = {}
        for name, rule in self.columns.items():
            spec = {"handling": rule} if isinstance(rule, str) else dict(rule)
            handling = spec.pop("handling", None)
            if handling is None:
                raise ValueError(f"column {name}: no handling given")
            if handling not in {h.value for h in PIIHandling}:
                raise ValueError(f"column {name}: unknown handling {handling!r}; use one of "
                                 f"{[h.value for h in PIIHandling]}")
            over: dict[str, Any] = {"pii_handling": handling}
            if "pii" in spec:
                over.update(kind="pii", pii=spec.pop("pii"))
            if spec:
                over["pii_options"] = spec
            out[name] = over
        return out


class PipelineConfig(BaseModel):
    """Everything one run needs; relative paths are resolved against ``base_dir``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str
    source_options: dict[str, Any] = Field(default_factory=dict)
    schema_file: str | None = Field(None, alias="schema")
    schema_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    drop_columns: list[str] = Field(default_factory=list)
    generator: GeneratorSpec = Field(default_factory=GeneratorSpec)
    n: int | None = Field(None, ge=1, description="Rows to generate; default: as many as the source.")
    conditions: dict[str, Any] = Field(
        default_factory=dict, description="Fix categorical/boolean column values in every row."
    )
    rebalance: dict[str, dict[Any, float]] = Field(
        default_factory=dict, description="Shares of one column's values, e.g. {churn: {yes: 0.5, no: 0.5}}."
    )
    resume: bool = Field(False, description="Continue an interrupted training run from its checkpoints.")
    holdout: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    engine: str = Field("local", pattern="^(local|ray)$", description="ray: sample in parallel Ray "
                        "tasks into a directory of Parquet partitions (sink: a directory).")
    partitions: int = Field(4, ge=1, description="engine: ray: how many part-NNNNN.parquet files.")
    address: str | None = Field(None, description="engine: ray: the cluster (auto, ray://host:10001); "
                                "default a local Ray.")
    policy: str = "default"
    purpose: str | None = None
    approvals: list[str] = Field(
        default_factory=list, description="Signed approval files (synthkit approve) for the gate."
    )
    sink: str | None = None
    sink_options: dict[str, Any] = Field(
        default_factory=dict, description="Database sink options: table, mode, password_env, ..."
    )
    overwrite: bool = False
    report: str | None = None
    model: str | None = None
    encrypt_model: bool = Field(
        False, description="Seal the saved model with AES-256-GCM (key from model_key_file or "
        "SYNTHKIT_MODEL_KEY); loading it then needs the key.",
    )
    model_key_file: str | None = Field(None, description="Key file for encrypt_model.")
    audit: AuditSpec | None = None
    pii: PIISpec = Field(default_factory=PIISpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    prepare: CleanRules | None = Field(
        None, description="Clean the source before training (dedupe, null invalid values, drop "
        "incomplete rows, winsorise outliers); {} applies the conservative defaults. The "
        "cleaning report goes into the quality report and the audit record.",
    )
    base_dir: str = "."

    @model_validator(mode="before")
    @classmethod
    def _uri_mappings(cls, data: Any) -> Any:
        """``source: {uri: ..., table: ...}`` (and the same for ``sink``) → uri plus options."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("source", "sink"):
            value = data.get(key)
            if isinstance(value, dict):
                spec = dict(value)
                if "uri" not in spec:
                    raise ValueError(f"{key} given as a mapping needs a 'uri' (e.g. sqlite:///shop.db)")
                data[key] = spec.pop("uri")
                data[f"{key}_options"] = {**data.get(f"{key}_options", {}), **spec}
        return data

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        """Load a pipeline file; its relative paths are taken from the file's directory."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Pipeline file not found: {p}", hint="Check the path.")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of settings, not {type(data).__name__}.")
        if "tables" in data or "relationships" in data:
            raise ConfigError(f"{p} describes several tables (tables:/relationships:).",
                              hint="Run it with `synthkit run` or synthkit.RelationalPipeline.from_yaml(path).run().")
        data.setdefault("base_dir", str(p.parent))
        return cls.from_dict(data, where=str(p))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "pipeline config") -> PipelineConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(
                f"Invalid {where}: {problems}",
                hint=f"Valid top-level keys: {sorted(f.alias or n for n, f in cls.model_fields.items())}",
            ) from exc

    def path(self, value: str | None) -> Path | None:
        """Resolve a configured path against ``base_dir`` (URIs are returned as given)."""
        if value is None:
            return None
        if "://" in value:
            return Path(value)
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def location(self, value: str) -> str:
        """A source or sink as the connectors take it: URIs unchanged, paths resolved."""
        return value if "://" in value else str(self.path(value))


@dataclass
class PipelineResult:
    """What a run produced; ``written`` is None when the gate refused."""

    schema: Any
    generator: Any
    synthetic: pl.DataFrame
    report: Any
    decision: Any
    audit_record: Any | None = None
    written: Any = None  # a Path, or a connectors.sql.WrittenTable for a database sink
    report_path: Path | None = None
    model_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    pii: Any = None  # synthkit.prepare.pii_handling.PreparedPII: what was done to personal data

    @property
    def passed(self) -> bool:
        return bool(self.decision.passed)


class Pipeline:
    """Runs a :class:`PipelineConfig` end to end; the same from YAML, code and the CLI."""

    def __init__(self, config: PipelineConfig | dict[str, Any]) -> None:
        self.config = config if isinstance(config, PipelineConfig) else PipelineConfig.from_dict(config)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        return cls(PipelineConfig.from_yaml(path))

    def run(
        self,
        *,
        data: pl.DataFrame | None = None,
        on_stage: StageCallback | None = None,
        raise_on_refusal: bool = True,
    ) -> PipelineResult:
        """Run every stage; ``data`` replaces reading ``source`` when given.

        Raises :class:`GateRefusedError` after auditing when the policy refuses (unless
        ``raise_on_refusal=False``, which returns the result with ``written=None``).
        """
        import time

        from synthkit.connectors import read, write
        from synthkit.evaluate import evaluate
        from synthkit.frames import to_polars
        from synthkit.generators.registry import create
        from synthkit.policies import AuditLog, gate, load_policy, load_private_key, require_purpose
        from synthkit.prepare.split import split_holdout

        cfg = self.config
        marks: list[tuple[str, float]] = []

        def stage(name: str) -> None:
            marks.append((name, time.perf_counter()))
            if on_stage is not None:
                on_stage(name)

        # Fail fast, before any work: the policy must load and the purpose must be declared.
        stage("policy")
        is_path = "/" in cfg.policy or cfg.policy.lower().endswith((".yaml", ".yml"))
        policy = load_policy(cfg.path(cfg.policy) if is_path else cfg.policy)  # paths: from base_dir
        require_purpose(policy, cfg.purpose)
        private_key = None
        if cfg.audit is not None:
            passphrase = os.environ.get(cfg.audit.passphrase_env) if cfg.audit.passphrase_env else None
            private_key = load_private_key(cfg.path(cfg.audit.private_key), passphrase=passphrase)
        from synthkit.prepare.pii_handling import PIIKey, prepare_pii

        pii_key = PIIKey.resolve(key_env=cfg.pii.key_env, key_file=cfg.path(cfg.pii.key_file))

        stage("read")
        frame = to_polars(data) if data is not None else read(cfg.location(cfg.source), **cfg.source_options)
        if cfg.drop_columns:
            missing = [c for c in cfg.drop_columns if c not in frame.columns]
            if missing:
                raise ConfigError(f"drop_columns names columns the source lacks: {missing}")
            frame = frame.drop(cfg.drop_columns)

        cleaning = None
        if cfg.prepare is not None:
            stage("clean")
            from synthkit.prepare.clean import clean
            from synthkit.schema import Schema

            declared = Schema.from_json(cfg.path(cfg.schema_file)) if cfg.schema_file else None
            frame, cleaning = clean(frame, declared, cfg.prepare)

        stage("schema")
        schema = self._schema(frame)

        stage("pii")  # before training: drop, fake, hash, generalise or keep personal data
        prepared = prepare_pii(frame, schema, key=pii_key, seed=cfg.seed, locale=cfg.pii.locale)
        raw_frame, raw_schema = frame, schema
        frame, schema = prepared.frame, prepared.schema

        stage("split")
        train, holdout = split_holdout(frame, fraction=cfg.holdout, seed=cfg.seed)

        stage("fit")
        gen_config = {"seed": cfg.seed, **cfg.generator.config}
        generator = create(cfg.generator.name, **gen_config).fit(train, schema=schema, resume=cfg.resume)
        model_path = None
        manifest_hash = None
        if cfg.model:
            from synthkit.artifacts import manifest_hash as hash_manifest

            model_path = generator.save(
                cfg.path(cfg.model), overwrite=cfg.overwrite,
                encrypt=cfg.encrypt_model or cfg.model_key_file is not None,
                key=cfg.path(cfg.model_key_file) if cfg.model_key_file else None,
            )
            manifest_hash = hash_manifest(model_path)

        stage("sample")
        n = cfg.n or frame.height
        if cfg.engine == "ray":  # sample, evaluate, gate, audit and write in synthkit.distributed
            from synthkit.distributed import pipeline_sample

            timings = {a: round(tb - ta, 3) for (a, ta), (_, tb) in zip(marks, marks[1:], strict=False)}
            return pipeline_sample(
                self, generator=generator, n=n, train=train, holdout=holdout, policy=policy,
                private_key=private_key, prepared=prepared, model_path=model_path,
                manifest_hash=manifest_hash, schema=schema, raw_frame=raw_frame, raw_schema=raw_schema,
                cleaning=cleaning, source_rows=frame.height, timings=timings,
                raise_on_refusal=raise_on_refusal, on_stage=on_stage)
        synthetic = generator.sample(
            n, seed=cfg.seed, conditions=cfg.conditions or None, rebalance=cfg.rebalance or None
        )
        synthetic = prepared.scrub(synthetic, seed=cfg.seed)  # no real value by coincidence

        stage("evaluate")
        report = evaluate(train, synthetic, schema, holdout=holdout, seed=cfg.seed,
                          pii_reference=raw_frame, pii_schema=raw_schema,
                          fairness=_fairness(policy), dp_epsilon=dp_epsilon(generator),
                          **cfg.evaluation.options())
        if cleaning is not None:
            report.preparation = cleaning.to_dict()
        report_path = None
        if cfg.report:
            report_path = cfg.path(cfg.report)
            report.to_html(report_path)
            report.to_json(report_path.with_suffix(".json"))

        stage("gate")
        decision = gate(policy, report, cfg.purpose, approvals=[cfg.path(a) for a in cfg.approvals])
        record = None
        if cfg.audit is not None:
            record = AuditLog(cfg.path(cfg.audit.log)).append(
                decision,
                private_key=private_key,
                report=report,
                model_manifest_hash=manifest_hash,
                extra={"generator": generator.registry_name, "source_rows": frame.height,
                       **self._lineage(), "pii": prepared.to_dict(),
                       **({"cleaning": cleaning.to_dict()} if cleaning is not None else {})},
            )

        stage("write")
        written = None
        if decision.passed and cfg.sink:
            written = write(synthetic, cfg.location(cfg.sink), decision=decision, overwrite=cfg.overwrite,
                            **self._sink_options(schema, generator))
        stage("done")
        timings = {a: round(tb - ta, 3) for (a, ta), (_, tb) in zip(marks, marks[1:], strict=False)}
        result = PipelineResult(
            schema=schema,
            generator=generator,
            synthetic=synthetic,
            report=report,
            decision=decision,
            audit_record=record,
            written=written,
            report_path=report_path,
            model_path=model_path,
            timings=timings,
            pii=prepared,
        )
        if not decision.passed and raise_on_refusal:
            failed = "; ".join(f.message for f in decision.failed)
            raise GateRefusedError(
                f"Policy '{decision.policy}' refused the synthetic data: {failed}",
                hint="Nothing was written. Read the findings (and the report) and adjust the "
                "generator, the data or the declared purpose.",
            )
        return result

    def _schema(self, frame: pl.DataFrame) -> Any:
        from synthkit.schema import Schema, infer_schema

        cfg = self.config
        if cfg.schema_file:
            schema = Schema.from_json(cfg.path(cfg.schema_file))
            schema.check_frame(frame)
        elif self._source_table() is not None:  # the database states types, keys, NOT NULL
            from synthkit.connectors.sql import read_schema

            opts = cfg.source_options
            schema = read_schema(cfg.source, table=opts["table"], data=frame, db_schema=opts.get("db_schema"),
                                 password_env=opts.get("password_env"))
        else:
            schema = infer_schema(frame)
        if cfg.schema_overrides:
            schema = schema.with_overrides(cfg.schema_overrides)
        if cfg.pii.columns:
            unknown = [c for c in cfg.pii.columns if c not in schema]
            if unknown:
                raise ConfigError(f"pii.columns names columns the data lacks: {unknown}.",
                                  hint=f"Columns: {schema.names}")
            schema = schema.with_overrides(cfg.pii.overrides())
        return schema


    def _source_table(self) -> str | None:
        from synthkit.connectors import is_database_uri

        cfg = self.config
        return cfg.source_options.get("table") if is_database_uri(cfg.source) else None

    def _sink_options(self, schema: Any, generator: Any = None) -> dict[str, Any]:
        """Options for a database sink: its own, the Schema, and the source table's column types."""
        from synthkit.connectors import is_database_uri

        cfg = self.config
        if not cfg.sink or not is_database_uri(cfg.sink):  # files: provenance for the labels
            return {"provenance": {"generator": generator.registry_name}} if generator is not None else {}
        options: dict[str, Any] = {"schema": schema, **cfg.sink_options}
        table = self._source_table()
        same_kind = cfg.source.split(":", 1)[0].split("+")[0] == cfg.sink.split(":", 1)[0].split("+")[0]
        if table is not None and same_kind and "sql_types" not in options:  # source's own types
            from synthkit.connectors.sql import column_types

            src = cfg.source_options
            types = column_types(cfg.source, table, db_schema=src.get("db_schema"),
                                 password_env=src.get("password_env"))
            options["sql_types"] = {c: t for c, t in types.items() if c in schema.names}
        return options

    def _lineage(self) -> dict[str, Any]:
        """Where the data came from and went, for the audit record; passwords redacted."""
        from synthkit.connectors import redact

        cfg = self.config
        out: dict[str, Any] = {"source": redact(cfg.source)}
        for key in ("table", "query"):
            if key in cfg.source_options:
                out[f"source_{key}"] = str(cfg.source_options[key])
        if cfg.sink:
            out["sink"] = redact(cfg.sink)
            if "table" in cfg.sink_options:
                out["sink_table"] = str(cfg.sink_options["table"])
        return out


def dp_epsilon(generator: Any) -> float | None:
    """The epsilon a differentially private fit spent (its fit report says); None when not DP."""
    privacy = (getattr(generator, "fit_report_", None) or {}).get("privacy") or {}
    epsilon = privacy.get("epsilon") if privacy.get("differential_privacy") else None
    return float(epsilon) if isinstance(epsilon, (int, float)) else None


def _fairness(policy: Any) -> Any:
    """The policy's fairness declaration when it names protected attributes to evaluate."""
    rule = getattr(policy, "fairness", None)
    return rule if rule is not None and rule.protected else None


@dataclass
class GatedSample:
    """What :func:`sample_to_sink` did: the report, the decision, its audit record, the file."""

    report: Any
    decision: Any
    audit_record: Any | None
    written: Any  # a Path, or a connectors.sql.WrittenTable for a database sink; None if refused
    n: int
    seed: int


def sample_to_sink(
    generator: Any,
    n: int,
    destination: str | Path,
    *,
    real: pl.DataFrame,
    holdout: pl.DataFrame | None,
    policy: Any,
    purpose: str | None,
    seed: int | None = None,
    conditions: dict[str, Any] | None = None,
    batch_size: int | None = None,
    eval_rows: int = 50_000,
    audit_log: str | Path | None = None,
    private_key: Any = None,
    model_manifest_hash: str | None = None,
    report_path: str | Path | None = None,
    overwrite: bool = False,
    on_stage: StageCallback | None = None,
    sink_options: dict[str, Any] | None = None,
    approvals: list[Any] | None = None,
) -> GatedSample:
    """Sample ``n`` rows in bounded memory, gate them, and stream them to ``destination``.

    Two passes over the same seeded batches: the first fingerprints every row and keeps a
    uniform sample of ``eval_rows`` for the report; the policy judges that report; the second
    regenerates the identical batches into the sink, which checks they are exactly the rows
    that were judged. Memory stays at one batch plus the evaluation sample, whatever ``n``.
    ``sink_options`` go to the sink (a database's ``table``, ``mode``, ``schema``);
    ``approvals`` (signed approval files or objects) go to the gate.
    """
    import numpy as np

    from synthkit.connectors import write_batches
    from synthkit.evaluate import evaluate
    from synthkit.frames import FingerprintHasher
    from synthkit.policies import AuditLog, gate, load_policy

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    policy = load_policy(policy)

    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    picks = np.sort(np.random.default_rng(seed).choice(n, size=min(n, eval_rows), replace=False))
    hasher, kept, offset = FingerprintHasher(), [], 0
    stage(f"generating {n:,} rows")
    for batch in generator.sample_batches(n, batch_size=batch_size, conditions=conditions, seed=seed):
        hasher.update(batch)
        lo, hi = np.searchsorted(picks, [offset, offset + batch.height])
        kept.append(batch[picks[lo:hi] - offset])
        offset += batch.height
    sample = pl.concat(kept, how="vertical") if kept else generator.sample(0)
    stage("evaluating")
    report = evaluate(real, sample, generator.schema_, holdout=holdout,
                      synthetic_of=(hasher.hexdigest(), n), fairness=_fairness(policy),
                      dp_epsilon=dp_epsilon(generator))
    if report_path is not None:
        report.to_html(report_path)
    stage("gating")
    decision = gate(policy, report, purpose, approvals=approvals)
    record = None
    if audit_log is not None:
        record = AuditLog(audit_log).append(
            decision, private_key=private_key, report=report,
            model_manifest_hash=model_manifest_hash,
            extra={"generator": generator.registry_name, "rows": n, "seed": seed},
        )
    written = None
    if decision.passed:
        stage("writing")
        written = write_batches(
            generator.sample_batches(n, batch_size=batch_size, conditions=conditions, seed=seed),
            destination, decision=decision, overwrite=overwrite,
            **(sink_options or {"provenance": {"generator": generator.registry_name}}),
        )
    return GatedSample(report, decision, record, written, n, seed)
