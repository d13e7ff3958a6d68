"""The multi-table side of ``synthkit train``/``sample``/``run``: kept here so cli.py stays thin.

``synthkit train`` goes here when SOURCE is a directory of tables, a relationships YAML, or a
database URI without ``--table``/``--query`` (or ``--relationships`` is given);
``synthkit sample`` when MODEL is a RelationalSynthesizer directory; ``synthkit run`` when the
pipeline file has ``tables:`` or ``relationships:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["is_multi_table_source", "print_outcome", "run_pipeline", "sample_command", "train_command"]


def is_multi_table_source(source: str, *, relationships: str | None, table: str | None, query: str | None) -> bool:
    """Whether ``synthkit train SOURCE`` means several tables."""
    from synthkit.connectors import is_database_uri

    if relationships:
        return True
    if is_database_uri(source):
        return table is None and query is None
    path = Path(source)
    return path.is_dir() or (path.is_file() and path.suffix in (".yaml", ".yml"))


def _read(source: str, relationships: str | None, *, limit: int | None, password_env: str | None) -> Any:
    from synthkit.relational_io import read_tables

    return read_tables(source, relationships, limit=limit, password_env=password_env)


def train_command(
    source: str, *, relationships: str | None, family: str, options: dict[str, Any], out_dir: str,
    holdout: float, seed: int, overwrite: bool, limit: int | None, password_env: str | None,
    update: Any, console: Any,
) -> None:
    """Read the tables, fit a RelationalSynthesizer with ``family`` per table, save it."""
    import time

    from synthkit.connectors import redact
    from synthkit.relational_flow import train_tables

    update("reading tables")
    data = _read(source, relationships, limit=limit, password_env=password_env)
    update(f"fitting {len(data)} tables ({family})")
    start = time.perf_counter()
    _, path, train = train_tables(data, out_dir, family=family, config=options, holdout=holdout, seed=seed,
                                  overwrite=overwrite, source=redact(source))
    sizes = ", ".join(f"{n} {train[n].height:,}" for n in train.order())
    console.print(f"[green]Trained[/] relational/hma ({family} per table) on {len(train)} tables "
                  f"({sizes} rows; {len(train.foreign_keys)} foreign keys) in "
                  f"{time.perf_counter() - start:.2f}s → {path}", highlight=False)


def sample_command(
    model: str, *, dest: str, real_source: str, relationships: str | None, scale: float, mode: str | None,
    password_env: str | None, holdout: float | None, split_seed: int | None, policy: Any,
    purpose: str | None, report: str | None, audit_log: str | None, private_key: Any, seed: int | None,
    overwrite: bool, approvals: list[str], update: Any,
) -> Any:
    """Sample every table, gate the set once, write it all (directory or database) or nothing."""
    from synthkit.relational_flow import sample_tables

    update("reading real tables")
    real = _read(real_source, relationships, limit=None, password_env=password_env)
    return sample_tables(
        model, real, dest, policy=policy, purpose=purpose, scale=scale, seed=seed, holdout=holdout,
        split_seed=split_seed, report_path=report, audit_log=audit_log, private_key=private_key,
        approvals=approvals, overwrite=overwrite, mode=mode or "create", password_env=password_env,
        on_stage=update,
    )


def run_pipeline(path: str, approvals: list[str], update: Any) -> Any:
    """Run a multi-table pipeline file; returns the outcome (refusals are returned, not raised)."""
    from synthkit.relational_flow import RelationalPipeline

    pipeline = RelationalPipeline.from_yaml(path)
    pipeline.config.approvals = [*pipeline.config.approvals, *approvals]
    return pipeline.run(on_stage=update, raise_on_refusal=False)


def print_outcome(outcome: Any, *, console: Any, print_decision: Any, as_json: bool) -> None:
    """The decision table, then what was written (rows per table) or that nothing was."""
    print_decision(outcome.decision, as_json=as_json)
    if outcome.written is not None and not as_json:
        rows = ", ".join(f"{n} {r:,}" for n, r in outcome.written.rows.items())
        console.print(f"[green]Wrote[/] {len(outcome.written.rows)} tables ({rows} rows) → "
                      f"{outcome.written.destination}", highlight=False)
    for note in outcome.report.notes:
        if not as_json:
            console.print(f"[dim]Note: {note}[/]", highlight=False)
