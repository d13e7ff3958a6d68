"""Scale out on Ray: exact-n parallel sampling into Parquet partitions, gated as one output.

``sample(model, n, out="synth/", partitions=K)`` splits ``n`` rows into ``K`` partitions (sizes
differ by at most one row; nothing duplicated, nothing lost) and runs one Ray task per partition.
Each task loads the model from its *directory* (the torch model never crosses the wire; a worker
process keeps the last models it loaded), samples its rows in bounded-memory batches from a seed
derived from the run seed and the partition index, and writes ``part-00000.parquet`` ... into a
staging directory atomically (temp file, fsync, rename): a killed task leaves no half file, and
Ray re-runs that partition alone (``max_retries``) with the same seed, so the same rows.

The output is then judged as one table, as :func:`synthkit.pipeline.sample_to_sink` judges a
stream: the tasks hash every row of their partition (:class:`~synthkit.frames.FingerprintHasher`)
and return a uniform random sample of the rows the driver picked beforehand; the driver combines
the partition fingerprints in order (:func:`combine_fingerprints`), evaluates the sample with
``synthetic_of=(fingerprint, n)``, gates, audits, and only when the Decision passes renames the
staging directory to ``out``. A refusal (or any error) removes the staging directory: nothing is
left at ``out``. The row count and the fingerprint are exact; every metric is measured on the
sample (the report's notes say so).

``conditions=`` and ``rebalance=`` hold exactly across partitions (:func:`rebalance_counts`); a
database ``out`` gets the staged partitions in one transaction once they pass and match their
judged fingerprints; generated personal data is re-faked where it equals a real value
(:class:`PartitionScrub`, keyed digests only).

Ray is an optional dependency (``pip install "synthkit[ray]"``); ``engine="local"`` runs the same
partition tasks one after another in this process and writes identical files. On a cluster
(``address="auto"`` or ``"ray://head:10001"``) the model directory and ``out`` must be on storage
every node sees (NFS, a mounted bucket), and synthkit must be installed on every node.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import (
    ConfigError,
    MissingDependencyError,
    SinkExistsError,
    SynthkitError,
    WriteError,
)

#: File name of partition ``index``.
PARTITION_NAME = "part-{index:05d}.parquet"
#: The output directory's manifest: partitions, row counts, fingerprints, the Decision.
MANIFEST_NAME = "_synthkit.json"
#: Test hook: ``"INDEX:MARKER"`` makes partition INDEX's first attempt (while MARKER does not
#: exist) kill its worker process mid-write, to prove that retries and atomic writes hold.
FAIL_ONCE_ENV = "SYNTHKIT_TEST_FAIL_PARTITION_ONCE"
ENGINES = ("ray", "local")

StageCallback = Callable[[str], None]


# --- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionSpec:
    """One partition: its index, its first row's position in the whole output, its rows, its seed."""

    index: int
    offset: int
    rows: int
    seed: int


def partition_seed(seed: int, index: int) -> int:
    """Partition ``index``'s seed: ``SeedSequence(seed).spawn(...)[index]``'s first 64-bit word."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(1, np.uint64)
    return int(state[0])


def plan_partitions(n: int, partitions: int, seed: int) -> list[PartitionSpec]:
    """Split ``n`` rows into ``partitions`` contiguous ranges whose sizes differ by at most one."""
    base, extra = divmod(int(n), int(partitions))
    specs, offset = [], 0
    for i in range(int(partitions)):
        rows = base + (1 if i < extra else 0)
        specs.append(PartitionSpec(i, offset, rows, partition_seed(seed, i)))
        offset += rows
    return specs


def combine_fingerprints(parts: list[tuple[str, int]]) -> str:
    """The whole output's fingerprint from its partitions' ``(fingerprint, rows)``, in order.

    ``sha256`` over a version tag, one ``"<fingerprint> <rows>"`` line per partition and the
    total row count: any changed, missing, extra or reordered partition changes it.
    (Implemented in :mod:`synthkit.evaluate.streaming`, which verifies such outputs.)
    """
    from synthkit.evaluate.streaming import combine_fingerprints as combine

    return combine(parts)


def fingerprint_partitions(directory: str | Path, *, label_column: str | None = None) -> str:
    """Recompute the fingerprint of a partitioned output from its files (to verify one on disk).

    Reads each ``part-*.parquet`` in name order, batch by batch; ``label_column`` (a policy's
    constant labelling column, added after hashing) is left out.
    """
    from synthkit.evaluate.streaming import fingerprint_partitions as recompute

    return recompute(directory, label_column=label_column)


# --- the partition task (runs in a Ray worker, or in-process for engine="local") ---------------
_MODEL_CACHE: dict[tuple[str, float], Any] = {}
_MODEL_CACHE_SIZE = 2


def _cached_model(path: str, key: Any) -> Any:
    """Load a model directory once per worker process (keyed by path and manifest mtime)."""
    from synthkit.generators.registry import load

    manifest = Path(path) / "manifest.json"
    cache_key = (str(Path(path).resolve()), manifest.stat().st_mtime if manifest.exists() else 0.0)
    gen = _MODEL_CACHE.get(cache_key)
    if gen is None:
        gen = load(path, key=key)
        while len(_MODEL_CACHE) >= _MODEL_CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[cache_key] = gen
    return gen


def _partition_batches(gen: Any, spec: PartitionSpec, batch_size: int | None,
                       conditions: Mapping[str, Any] | None,
                       rebalance: tuple[str, list[Any], list[int]] | None = None) -> Any:
    """``gen.sample_batches`` for one partition, ids numbered from the partition's offset.

    Filled id columns count from ``offset`` within one sample call; shifting that offset by the
    partition's first row keeps ids unique across the whole output. ``rebalance``: the column,
    its values and this partition's exact count of each; the partition's rows are drawn value by
    value (as ``Generator.sample(rebalance=...)`` does) and shuffled, so memory is one partition.
    """
    if spec.rows == 0:
        yield gen._empty_frame()
        return
    original = gen._fill
    shift = [spec.offset]
    gen._fill = lambda m, rng, id_offset: original(m, rng, id_offset + shift[0])
    try:
        if rebalance is None:
            yield from gen.sample_batches(spec.rows, batch_size=batch_size, conditions=conditions,
                                          seed=spec.seed)
            return
        column, values, counts = rebalance
        root = np.random.SeedSequence(spec.seed)
        parts = []
        for value, k, child in zip(values, counts, root.spawn(len(values)), strict=True):
            if k > 0:
                parts.append(gen.sample(int(k), conditions={**(conditions or {}), column: value},
                                        seed=int(child.generate_state(1)[0])))
                shift[0] += int(k)
        whole = pl.concat(parts, how="vertical")
        whole = whole[np.random.default_rng(root.spawn(1)[0]).permutation(whole.height)]
        step = int(batch_size) if batch_size else max(whole.height, 1)
        for start in range(0, whole.height, step):
            yield whole.slice(start, step)
    finally:
        del gen._fill  # back to the class's method


def rebalance_counts(n: int, specs: list[PartitionSpec], shares: Mapping[Any, float],
                     seed: int) -> tuple[np.ndarray, list[list[int]]]:
    """Exact rows per rebalanced value overall, and each partition's share of them.

    The totals are ``Generator.sample``'s (largest remainder); each value's rows are spread over
    the partitions by cutting one seeded shuffle of the ``n`` labels at the partition offsets, so
    every partition holds exactly its planned rows and every value exactly its total.
    """
    from synthkit.generators.base import _largest_remainder

    weights = np.array([float(shares[v]) for v in shares])
    totals = _largest_remainder(int(n), weights / weights.sum())
    labels = np.random.default_rng([int(seed), 0x5EBA1]).permutation(
        np.repeat(np.arange(len(weights)), totals))
    per_part = [np.bincount(labels[s.offset:s.offset + s.rows], minlength=len(weights)).tolist()
                for s in specs]
    return totals, per_part


def write_partition(
    model_path: str,
    spec: PartitionSpec,
    directory: str,
    *,
    picks: np.ndarray,
    batch_size: int | None = None,
    conditions: Mapping[str, Any] | None = None,
    rebalance: tuple[str, list[Any], list[int]] | None = None,
    label_column: str | None = None,
    parquet_metadata: Mapping[str, str] | None = None,
    key: Any = None,
    fail_once: str | None = None,
    scrub: Any = None,
) -> dict[str, Any]:
    """Sample one partition into ``directory/part-NNNNN.parquet`` atomically; return its facts.

    ``picks`` are row positions within the partition kept for evaluation. Returns the rows, the
    fingerprint (over the rows before any label column), the kept rows, seconds and peak RSS.
    """
    import pyarrow.parquet as pq

    from synthkit.frames import FingerprintHasher

    started = time.perf_counter()
    gen = _cached_model(model_path, key)
    final = Path(directory) / PARTITION_NAME.format(index=spec.index)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # a killed earlier attempt's
        stale.unlink(missing_ok=True)
    tmp = final.parent / f".{final.name}.{secrets.token_hex(8)}.tmp"
    hasher, kept, done = FingerprintHasher(), [], 0
    die = _should_die(fail_once, spec.index)
    if scrub is not None:
        scrub.counts.clear()  # this partition's replacements only
    try:
        with open(tmp, "xb") as f:
            writer = None
            for batch in _partition_batches(gen, spec, batch_size, conditions, rebalance):
                if scrub is not None:
                    batch = scrub.apply(batch, spec.seed, done)
                hasher.update(batch)
                lo, hi = np.searchsorted(picks, [done, done + batch.height])
                if hi > lo:
                    kept.append(batch[picks[lo:hi] - done])
                done += batch.height
                if label_column is not None:
                    batch = batch.with_columns(pl.lit(True, dtype=pl.Boolean).alias(label_column))
                table = batch.to_arrow()
                if writer is None:
                    schema = table.schema
                    if parquet_metadata:
                        schema = schema.with_metadata(dict(parquet_metadata))
                    writer = pq.ParquetWriter(f, schema, compression="zstd")
                writer.write_table(table)
                if die:
                    f.flush()
                    os._exit(17)  # the test hook: die with a half-written temp file
            assert writer is not None
            writer.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sample = pl.concat(kept, how="vertical") if kept else gen._empty_frame()
    return {
        "scrubbed": dict(scrub.counts) if scrub is not None else {},
        "index": spec.index,
        "path": str(final),
        "rows": hasher.rows,
        "fingerprint": hasher.hexdigest(),
        "bytes": final.stat().st_size,
        "sample": sample,
        "seconds": round(time.perf_counter() - started, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "pid": os.getpid(),
        "node": _node_id(),
    }


def _node_id() -> str | None:
    """The Ray node this task ran on (None outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def _should_die(fail_once: str | None, index: int) -> bool:
    if not fail_once:
        return False
    which, _, marker = fail_once.partition(":")
    if int(which) != index or not marker or Path(marker).exists():
        return False
    Path(marker).write_text("killed once\n")
    return True


# --- personal data: the local scrub, without shipping real values ------------------------------
class _KeyedSet:
    """Membership in a set of real values, held as keyed digests (the values never leave)."""

    def __init__(self, key: bytes, digests: frozenset[bytes]) -> None:
        self.key, self.digests = key, digests

    def digest(self, value: str) -> bytes:
        return hashlib.blake2b(str(value).encode("utf-8"), key=self.key, digest_size=16).digest()

    def __contains__(self, value: object) -> bool:
        return self.digest(str(value)) in self.digests

    def __ror__(self, other: set[str]) -> _Union:  # ``set(values) | avoid`` in the fakers
        return _Union(other, self)


class _Union:
    def __init__(self, plain: set[str], keyed: _KeyedSet) -> None:
        self.plain, self.keyed = plain, keyed

    def __contains__(self, value: object) -> bool:
        return value in self.plain or value in self.keyed


@dataclass
class PartitionScrub:
    """:meth:`PreparedPII.scrub` for partition tasks: generated pii values equal to a real one
    are re-faked, as on the local engine, but the tasks get keyed digests of the real values
    (a random key for this run, never written), not the values themselves."""

    columns: dict[str, Any]  # name -> the Column (its pii kind and options)
    real: _KeyedSet
    locale: str

    @classmethod
    def from_prepared(cls, prepared: Any, names: list[str]) -> PartitionScrub | None:
        """The scrub for ``prepared``'s generated pii columns among ``names`` (None if none)."""
        from synthkit.schema import ColumnKind

        columns = {a.column: prepared.schema[a.column] for a in prepared.actions
                   if not a.learned and a.handling != "drop" and a.column in names
                   and a.kind == ColumnKind.PII.value}
        if not columns:
            return None
        key = secrets.token_bytes(32)
        keyed = _KeyedSet(key, frozenset())
        keyed.digests = frozenset(keyed.digest(v) for v in prepared._real)
        return cls(columns, keyed, prepared._locale)

    def apply(self, batch: pl.DataFrame, seed: int, offset: int) -> pl.DataFrame:
        """``batch`` with every real value in a generated pii column replaced by a fresh fake."""
        from synthkit.prepare.pii_handling import fake_values
        from synthkit.schema import PIIKind

        rng = np.random.default_rng([int(seed), int(offset), 0x5C2B])
        replaced = {}
        for name, col in self.columns.items():
            if name not in batch.columns:
                continue
            series = batch.get_column(name)
            text = series.cast(pl.String)
            distinct = text.drop_nulls().unique()
            hits = [v for v in distinct.to_list() if v in self.real]
            if not hits:
                continue
            hit = text.is_in(pl.Series(hits, dtype=pl.String).implode()).fill_null(False)
            again = fake_values(series.filter(hit), col.pii or PIIKind.OTHER, locale=self.locale,
                                rng=rng, column=col, avoid=self.real)  # type: ignore[arg-type]
            replaced[name] = series.scatter(hit.arg_true(), again)
            self.counts[name] = self.counts.get(name, 0) + int(hit.sum())
        return batch.with_columns(**replaced) if replaced else batch

    @property
    def counts(self) -> dict[str, int]:
        """Values replaced so far in this process, by column."""
        if "_counts" not in self.__dict__:
            self.__dict__["_counts"] = {}
        return self.__dict__["_counts"]


# --- the driver ---------------------------------------------------------------------------------
@dataclass
class DistributedSample:
    """What :func:`sample` did. ``out`` and ``paths`` are None / empty when the gate refused."""

    out: Path | None
    paths: list[Path]
    fingerprint: str
    n: int
    seed: int
    partitions: int
    decision: Any
    report: Any
    audit_record: Any | None = None
    engine: str = "ray"
    #: Where the rows went: ``out`` for a directory, a WrittenTable for a database sink.
    written: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    #: The uniform random sample of rows the report was measured on.
    evaluated: pl.DataFrame | None = None
    partition_stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.decision.passed)

    @property
    def rows_per_second(self) -> float:
        return self.n / max(self.timings.get("sample", 0.0), 1e-9)


def sample(
    model: Any,
    n: int,
    *,
    out: str | Path,
    real: Any,
    sink_options: Mapping[str, Any] | None = None,
    staging_dir: str | Path | None = None,
    holdout: Any = None,
    engine: str = "ray",
    partitions: int = 4,
    seed: int | None = None,
    batch_size: int | None = None,
    address: str | None = None,
    policy: Any = "default",
    purpose: str | None = None,
    approvals: list[Any] | None = None,
    conditions: Mapping[str, Any] | None = None,
    rebalance: Mapping[str, Mapping[Any, float]] | None = None,
    scrub: Any = None,
    eval_rows: int = 50_000,
    audit_log: str | Path | None = None,
    private_key: Any = None,
    model_manifest_hash: str | None = None,
    report_path: str | Path | None = None,
    overwrite: bool = False,
    key: Any = None,
    max_retries: int = 3,
    num_cpus_per_task: float = 1.0,
    evaluate_options: Mapping[str, Any] | None = None,
    audit_extra: Mapping[str, Any] | None = None,
    on_stage: StageCallback | None = None,
) -> DistributedSample:
    """Sample ``n`` rows as ``partitions`` Parquet files under ``out``, written only if the policy passes.

    ``model``: a fitted generator or a model directory (a generator is saved into the staging
    directory first, so workers load files, never a pickled model). ``real`` / ``holdout``: the
    training rows and the held-out rows, for the report the policy judges. ``engine="ray"``
    fans the partitions out to Ray tasks (``address``: None starts or reuses a local Ray,
    ``"auto"`` or ``"ray://host:10001"`` joins a cluster); ``engine="local"`` runs them here, one
    after another, with identical output. The same ``seed`` and ``partitions`` give identical
    files. Returns a :class:`DistributedSample`; a refused Decision leaves nothing at ``out``.
    ``out`` may also be a database URI (``sink_options``: its ``table``, ``mode``, ...): the
    partitions are staged as Parquet in ``staging_dir`` (default: a temporary directory; on a
    cluster, storage every node sees), then, once the Decision passes, streamed into the table
    in one transaction after every partition is checked against the fingerprint the gate judged.
    ``rebalance`` (one column's value shares, as in ``Generator.sample``) gives exact totals per
    value, split exactly over the partitions (:func:`rebalance_counts`). ``scrub``: a
    :class:`PartitionScrub` that re-fakes generated personal data equal to a real value.
    ``evaluate_options`` go to :func:`synthkit.evaluate.evaluate`, ``audit_extra`` into the
    audit record.
    """
    from synthkit.evaluate import evaluate
    from synthkit.frames import to_polars
    from synthkit.generators.base import Generator, _check_n
    from synthkit.pipeline import _fairness, dp_epsilon
    from synthkit.policies import AuditLog, gate, load_policy, require_purpose

    def stage(name: str, message: str | None = None) -> None:
        marks.append((name, time.perf_counter()))
        if on_stage is not None:
            on_stage(message or name)

    marks: list[tuple[str, float]] = []
    n = _check_n(n)
    if n < 1:
        raise ConfigError("n must be at least 1 for a gated, partitioned sample.")
    if engine not in ENGINES:
        raise ConfigError(f"Unknown engine '{engine}'.", hint=f"Use one of: {', '.join(ENGINES)}.")
    if isinstance(partitions, bool) or not isinstance(partitions, (int, np.integer)) or partitions < 1:
        raise ConfigError(f"partitions must be a whole number of at least 1, got {partitions!r}.")
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    pol = load_policy(policy)
    declared = require_purpose(pol, purpose)
    from synthkit.connectors import is_database_uri

    database = str(out) if is_database_uri(str(out)) else None
    if database is not None:
        if not sink_options or not sink_options.get("table"):
            raise ConfigError("A database destination needs sink_options={'table': ...}.")
        base = Path(staging_dir) if staging_dir is not None else Path(tempfile.gettempdir())
        out = (base / f"synthkit-ray-{secrets.token_hex(6)}").expanduser().absolute()
    else:
        if sink_options:
            raise ConfigError("sink_options apply to database destinations only.")
        out = Path(out).expanduser().absolute()
        _check_destination(out, overwrite)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    real = to_polars(real)
    holdout = to_polars(holdout) if holdout is not None else None

    stage("prepare")
    staging = out.parent / f".{out.name}.{secrets.token_hex(6)}.staging"
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    staging.mkdir(parents=True)
    try:
        if isinstance(model, Generator):
            gen = model
            model_path = str(gen.save(staging / ".model"))
            key = None
        else:
            from synthkit.generators.registry import load

            model_path = str(Path(model).expanduser().absolute())
            gen = load(model_path, key=key)
        if conditions:
            gen._check_conditions(conditions)  # fail here, not in every task
        specs = plan_partitions(n, int(partitions), seed)
        shares = _check_rebalance(gen, rebalance, conditions)
        split: list[Any] = [None] * len(specs)
        if shares is not None:
            (column, values), = shares.items()
            _, per_part = rebalance_counts(n, specs, values, seed)
            split = [(column, list(values), counts) for counts in per_part]
        picks = np.sort(np.random.default_rng(seed).choice(n, size=min(n, eval_rows), replace=False))
        # a database sink labels rows itself, from the Decision
        label_column, metadata = (None, None) if database else _labels(pol, declared, gen.registry_name)
        task_args = [
            dict(model_path=model_path, spec=s, directory=str(staging),
                 picks=picks[(picks >= s.offset) & (picks < s.offset + s.rows)] - s.offset,
                 batch_size=batch_size, conditions=dict(conditions) if conditions else None,
                 rebalance=split[s.index], label_column=label_column, parquet_metadata=metadata,
                 key=key, fail_once=os.environ.get(FAIL_ONCE_ENV), scrub=scrub)
            for s in specs
        ]

        stage("sample", f"sampling {n:,} rows in {len(specs)} partitions ({engine})")
        if engine == "ray":
            results = _run_on_ray(task_args, address=address, max_retries=max_retries,
                                  num_cpus=num_cpus_per_task)
        else:
            results = [write_partition(**args) for args in task_args]
        results.sort(key=lambda r: r["index"])
        got = sum(r["rows"] for r in results)
        if got != n:  # a guard: the plan makes this impossible
            raise WriteError(f"The partitions hold {got:,} rows, not the {n:,} asked for.")
        fp = combine_fingerprints([(r["fingerprint"], r["rows"]) for r in results])
        eval_sample = pl.concat([r.pop("sample") for r in results], how="vertical")

        stage("evaluate")
        report = evaluate(real, eval_sample, gen.schema_, holdout=holdout, synthetic_of=(fp, n),
                          fairness=_fairness(pol), dp_epsilon=dp_epsilon(gen),
                          **dict(evaluate_options or {}))
        report.notes.append(
            f"Exact over all {n:,} rows: the row count and the fingerprint ({len(results)} "
            "partition fingerprints, each over every row, combined in order by "
            "synthkit.distributed.combine_fingerprints); every metric comes from the uniform "
            "sample."
        )
        if report_path is not None:
            report.to_html(report_path)

        stage("gate")
        decision = gate(pol, report, purpose, approvals=approvals)
        audit_extra = dict(audit_extra or {})
        if scrub is not None:  # what the tasks re-faked, as the local engine's record says
            totals: dict[str, int] = {}
            for r in results:
                for column, count in r.get("scrubbed", {}).items():
                    totals[column] = totals.get(column, 0) + count
            if isinstance(audit_extra.get("pii"), dict):
                audit_extra["pii"] = {**audit_extra["pii"], "scrubbed": totals}
        record = None
        if audit_log is not None:
            record = AuditLog(audit_log).append(
                decision, private_key=private_key, report=report,
                model_manifest_hash=model_manifest_hash,
                extra={"generator": gen.registry_name, "rows": n, "seed": seed,
                       "partitions": len(results), "engine": engine, **dict(audit_extra or {})},
            )

        stage("commit")
        paths: list[Path] = []
        written: Any = None
        if decision.passed and database is not None:
            written = _write_database(results, database, decision=decision, overwrite=overwrite,
                                      sink_options=sink_options or {})
            shutil.rmtree(staging, ignore_errors=True)
            _remove_created(created)
        elif decision.passed:
            _write_manifest(staging, results, fp=fp, n=n, seed=seed, engine=engine,
                            decision=decision, generator=gen.registry_name,
                            label_column=label_column)
            _commit_directory(staging, out, overwrite=overwrite)
            paths = [out / Path(r["path"]).name for r in results]
            for r in results:
                r["path"] = str(out / Path(r["path"]).name)
            written = out
        else:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_created(created)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        raise
    stage("done")
    timings = {a: round(tb - ta, 3) for (a, ta), (_, tb) in zip(marks, marks[1:], strict=False)}
    return DistributedSample(
        out=out if decision.passed and database is None else None, paths=paths, fingerprint=fp,
        n=n, seed=seed, partitions=len(results), decision=decision, report=report,
        audit_record=record, engine=engine, timings=timings, partition_stats=results,
        evaluated=eval_sample, written=written,
    )


def _partition_frames(path: str) -> Any:
    """A staged partition's rows, batch by batch (one empty frame for an empty partition)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    batches = list(pf.iter_batches(batch_size=65_536)) or [pf.schema_arrow.empty_table()]
    for batch in batches:
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        yield df


def _write_database(results: list[dict[str, Any]], uri: str, *, decision: Any, overwrite: bool,
                    sink_options: Mapping[str, Any]) -> Any:
    """Stream the staged partitions into a database table in one transaction.

    A first pass checks every partition against the fingerprint its task reported (the ones the
    gate's fingerprint combines) and computes the fingerprint of all rows in order, which the
    database sink checks again before it commits.
    """
    from synthkit.connectors import write_batches
    from synthkit.frames import FingerprintHasher

    whole = FingerprintHasher()
    for r in results:
        part = FingerprintHasher()
        for df in _partition_frames(r["path"]):
            part.update(df)
            whole.update(df)
        if part.hexdigest() != r["fingerprint"]:
            raise WriteError(f"Partition {r['index']} changed after it was judged; nothing was written.")
    checked = decision.model_copy(update={"data_fingerprint": whole.hexdigest()})
    frames = (df for r in results for df in _partition_frames(r["path"]))
    return write_batches(frames, uri, decision=checked, overwrite=overwrite, **dict(sink_options))


def _check_rebalance(gen: Any, rebalance: Mapping[str, Mapping[Any, float]] | None,
                     conditions: Mapping[str, Any] | None) -> dict[str, dict[Any, float]] | None:
    """The rebalance request checked as ``Generator.sample`` checks it (one column, valid shares)."""
    if not rebalance:
        return None
    if len(rebalance) != 1:
        raise ConfigError(f"rebalance takes one column, got {sorted(rebalance)}.",
                          hint="Rebalance one column; fix others with conditions=.")
    (column, shares), = rebalance.items()
    if conditions and column in conditions:
        raise ConfigError(f"'{column}' is both fixed by conditions and rebalanced.")
    weights = np.array([float(v) for v in shares.values()])
    if weights.size == 0 or (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ConfigError(
            f"rebalance shares for '{column}' must be non-negative numbers with a positive sum.",
            hint='e.g. rebalance={"churn": {"yes": 0.5, "no": 0.5}}',
        )
    for value in shares:
        gen._check_conditions({**(conditions or {}), column: value})
    return {column: dict(shares)}


def _check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise WriteError(f"'{out}' is a file; a partitioned sample writes a directory.",
                         hint="Give a directory path, e.g. 'synthetic/'.")
    if out.exists() and not overwrite:
        raise SinkExistsError(f"'{out}' already exists; nothing was written.",
                              hint="Choose another directory or pass overwrite=True.")


def _labels(pol: Any, purpose: str | None, generator: str) -> tuple[str | None, dict[str, str] | None]:
    """The label column and Parquet metadata the policy requires, known before the Decision.

    What depends on the Decision itself (its data fingerprint, when it was made) goes into the
    directory's manifest instead, which is written after the gate.
    """
    if getattr(pol, "labelling", None) is None:
        return None, None
    from synthkit.connectors.labelling import plan_labels

    pending = SimpleNamespace(labelling=pol.labelling, policy=pol.name, policy_version=pol.version,
                              policy_hash=pol.hash, purpose=purpose, data_fingerprint=None,
                              decided_at=None)
    plan = plan_labels(pending, "parquet", {"generator": generator})
    return plan.column, plan.parquet_metadata or None


def _run_on_ray(task_args: list[dict[str, Any]], *, address: str | None, max_retries: int,
                num_cpus: float) -> list[dict[str, Any]]:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)
        started = True
    try:
        task = ray.remote(write_partition).options(
            max_retries=int(max_retries), retry_exceptions=[OSError], num_cpus=num_cpus,
            scheduling_strategy="SPREAD")  # partitions over every node, not packed onto one
        refs = [task.remote(**args) for args in task_args]
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayError as exc:
            for ref in refs:
                with suppress(Exception):
                    ray.cancel(ref, force=True)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SynthkitError):  # a bad setting, not a lost worker
                raise cause from exc
            raise WriteError(
                f"A partition failed after {max_retries} retries: {str(exc).splitlines()[0]}",
                hint="Nothing was written. See the Ray worker logs; raise max_retries for flaky nodes.",
            ) from exc
    finally:
        if started:
            ray.shutdown()


def import_ray() -> Any:
    """``import ray``, or a MissingDependencyError that names the extra."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            "The Ray engine needs Ray, which is not installed.",
            hint='pip install "synthkit[ray]"  (or engine="local")',
        ) from exc
    return ray


def _write_manifest(staging: Path, results: list[dict[str, Any]], *, fp: str, n: int, seed: int,
                    engine: str, decision: Any, generator: str, label_column: str | None) -> None:
    """The directory's manifest: partitions, counts, fingerprints, the Decision it was written under."""
    shutil.rmtree(staging / ".model", ignore_errors=True)
    for stray in staging.glob(".*.tmp"):
        stray.unlink(missing_ok=True)
    manifest = {
        "format": "synthkit.partitions.v1",
        "synthetic": True,
        "generator": generator,
        "rows": n,
        "seed": seed,
        "engine": engine,
        "fingerprint": fp,
        "label_column": label_column,
        "partitions": [
            {"file": Path(r["path"]).name, "rows": r["rows"], "fingerprint": r["fingerprint"],
             "bytes": r["bytes"]}
            for r in results
        ],
        "decision": {
            "passed": decision.passed, "policy": decision.policy,
            "policy_version": decision.policy_version, "policy_hash": decision.policy_hash,
            "purpose": decision.purpose, "data_fingerprint": decision.data_fingerprint,
            "decided_at": str(getattr(decision, "decided_at", "") or ""),
        },
    }
    tmp = staging / f".{MANIFEST_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, staging / MANIFEST_NAME)
    _fsync_dir(staging)


def _commit_directory(staging: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the staging directory to ``out``; an existing ``out`` is replaced only with overwrite."""
    old = None
    if out.exists():
        if not overwrite:
            raise SinkExistsError(f"'{out}' already exists; nothing was written.")
        old = out.parent / f".{out.name}.{secrets.token_hex(6)}.old"
        os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_created(created: list[Path]) -> None:
    for d in created:  # deepest first
        try:
            d.rmdir()
        except OSError:
            break


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- the pipeline's sampling step with engine: ray ----------------------------------------------
def pipeline_sample(pipeline: Any, *, generator: Any, n: int, train: pl.DataFrame,
                    holdout: pl.DataFrame | None, policy: Any, private_key: Any, prepared: Any,
                    model_path: Path | None, manifest_hash: str | None, schema: Any,
                    raw_frame: pl.DataFrame, raw_schema: Any, cleaning: Any, source_rows: int,
                    timings: dict[str, float], raise_on_refusal: bool,
                    on_stage: StageCallback | None = None) -> Any:
    """Sample, evaluate, gate, audit and write for a pipeline whose config says ``engine: ray``."""
    from synthkit.errors import GateRefusedError
    from synthkit.pipeline import PipelineResult

    cfg = pipeline.config
    from synthkit.connectors import is_database_uri

    if not cfg.sink or ("://" in cfg.sink and not is_database_uri(cfg.sink)):
        raise ConfigError("engine: ray writes Parquet partitions into a directory or rows into a "
                          "database table: set sink to a directory path (sink: out/synthetic/) or "
                          "a database (sink: {uri: ..., table: ...}).")
    database = is_database_uri(cfg.sink)
    texts = [a.column for a in prepared.actions
             if not a.learned and a.handling != "drop" and a.column in generator.schema_.names
             and a.kind != "pii"]
    if texts:
        raise ConfigError(
            f"engine: ray cannot re-check generated free text for real identifiers (columns "
            f"{texts}): finding them inside text needs the real values themselves, which would be "
            "shipped to every worker.",
            hint="Use engine: local for tables with generated text columns, or drop them.",
        )
    scrub = PartitionScrub.from_prepared(prepared, generator.schema_.names)
    key = None
    if model_path is not None and (cfg.encrypt_model or cfg.model_key_file):
        key = cfg.path(cfg.model_key_file) if cfg.model_key_file else None
    res = sample(
        model_path if model_path is not None else generator, n,
        out=cfg.location(cfg.sink) if database else cfg.path(cfg.sink),
        sink_options=pipeline._sink_options(schema, generator) if database else None,
        real=train, holdout=holdout, engine="ray", partitions=cfg.partitions, seed=cfg.seed,
        address=cfg.address, policy=policy, purpose=cfg.purpose,
        approvals=[cfg.path(a) for a in cfg.approvals], conditions=cfg.conditions or None,
        rebalance=cfg.rebalance or None, scrub=scrub,
        audit_log=cfg.path(cfg.audit.log) if cfg.audit is not None else None,
        private_key=private_key, model_manifest_hash=manifest_hash, overwrite=cfg.overwrite,
        key=key, on_stage=on_stage,
        evaluate_options={"pii_reference": raw_frame, "pii_schema": raw_schema,
                          **cfg.evaluation.options()},
        audit_extra={"source_rows": source_rows, **pipeline._lineage(), "pii": prepared.to_dict(),
                     **({"cleaning": cleaning.to_dict()} if cleaning is not None else {})},
    )
    for stats in res.partition_stats:
        for column, count in stats.get("scrubbed", {}).items():
            prepared.scrubbed[column] = prepared.scrubbed.get(column, 0) + count
    report = res.report
    if cleaning is not None:
        report.preparation = cleaning.to_dict()
    report_path = None
    if cfg.report:
        report_path = cfg.path(cfg.report)
        report.to_html(report_path)
        report.to_json(report_path.with_suffix(".json"))
    result = PipelineResult(
        schema=schema, generator=generator, synthetic=res.evaluated, report=report,
        decision=res.decision, audit_record=res.audit_record, written=res.written,
        report_path=report_path, model_path=model_path,
        timings={**timings, **{f"ray_{k}": v for k, v in res.timings.items()}}, pii=prepared,
    )
    if not res.passed and raise_on_refusal:
        failed = "; ".join(f.message for f in res.decision.failed)
        raise GateRefusedError(
            f"Policy '{res.decision.policy}' refused the synthetic data: {failed}",
            hint="Nothing was written. Read the findings (and the report) and adjust the "
            "generator, the data or the declared purpose.",
        )
    return result
