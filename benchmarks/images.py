"""Image families on scikit-learn's digits (upsampled to 16×16) after a fixed CPU training budget.

For each family: train one epoch, time it, then resume to as many epochs as the budget allows
(the Trainer's checkpoints make the second fit continue the first); then sample as many images as
the real set holds and evaluate them with synthkit.evaluate.images (features: domain CNN, trained
once on the real digits and shared by every family, so the figures compare families), and time
sampling in images per second. Also reports how often class-conditional samples are recognised
as the class asked for by the same domain CNN (chance: 10 %).

    python benchmarks/images.py --budget 60

Writes benchmarks/results/images.md and .json, then rebuilds benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tabular import rebuild_results  # noqa: E402

RESULTS_DIR = HERE / "results"

#: CPU-sized settings of each family for 16×16 digits.
FAMILIES = {
    "image/vae": {"base_channels": 16, "latent_dim": 16, "batch_size": 64},
    "image/dcgan": {"generator_channels": 32, "discriminator_channels": 32, "batch_size": 32},
    "image/ddpm": {"base_channels": 16, "channel_mults": (1, 2), "batch_size": 64,
                   "sampling_steps": 20, "guidance_scale": 2.0},
}


def digits():
    from sklearn.datasets import load_digits

    from synthkit.images import ImageSet

    d = load_digits()
    return ImageSet.from_array(d.images / 16.0, labels=d.target.tolist()).resized(16)


def run_family(name: str, options: dict, real, features, budget: float, seed: int) -> dict:
    import synthkit as sk
    from synthkit.evaluate.images import evaluate_images

    with tempfile.TemporaryDirectory() as ckpt:
        common = dict(seed=seed, progress=False, checkpoint_dir=ckpt, checkpoint_every=1, **options)
        started = time.perf_counter()
        sk.create(name, epochs=1, **common).fit(real)
        first = time.perf_counter() - started
        epochs = max(1, int(budget / max(first, 1e-6)))
        gen = sk.create(name, epochs=epochs, **common)
        gen.fit(real, resume=epochs > 1)
        fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    synthetic = gen.sample(len(real), seed=seed + 1)
    sample_seconds = time.perf_counter() - started
    report = evaluate_images(real, synthetic, features=features, seed=seed, grids=False)
    asked = gen.sample(200, conditions={"label": 3}, seed=seed + 2)
    recognised = float(np.mean([v == 3 for v in features.predict(asked)]))
    out = {
        "family": name,
        "epochs": epochs,
        "fit_seconds": round(fit_seconds, 1),
        "sample_images_per_second": round(len(real) / sample_seconds, 1),
        "class_3_recognised": round(recognised, 3),
        **{k: report.value(k) for k in report.metrics},
    }
    if name == "image/dcgan":
        out["mode_collapse_final"] = gen.fit_report_.get("mode_collapse", {}).get("final")
    return out


def write(results: list[dict], budget: float, seed: int, cnn_accuracy: float) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "budget_seconds": budget,
        "seed": seed,
        "domain_cnn_train_accuracy": cnn_accuracy,
    }
    (RESULTS_DIR / "images.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lines = [
        "## Images (digits 16×16)",
        "",
        f"`python benchmarks/images.py --budget {budget:g}` on {meta['machine']} (CPU only, shared), "
        f"{meta['date']}. Training budget about {budget:g} s per family (epochs fitted to it); "
        "1,797 real digits upsampled to 16×16; as many synthetic images sampled. FID, KID, IS and "
        "precision/recall on features of a domain CNN trained on the real digits "
        f"(train accuracy {cnn_accuracy:.3f}): comparable between these rows, not with published "
        "Inception-v3 figures. Class 3 recognised: share of 200 images sampled with "
        "conditions={'label': 3} that the CNN classifies as 3 (chance 0.1).",
        "",
        "| family | epochs | fit s | FID ↓ | KID ↓ | IS ↑ | precision ↑ | recall ↑ | copy share ↓ | "
        "class 3 recognised | sample images/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: float | None, digits: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    for r in results:
        lines.append(
            f"| {r['family']} | {r['epochs']} | {r['fit_seconds']:.0f} | {f(r['quality.fid'], 1)} | "
            f"{f(r['quality.kid'], 2)} | {f(r['quality.inception_score'], 2)} | {f(r['quality.precision'])} | "
            f"{f(r['quality.recall'])} | {f(r['privacy.image_copy_share'])} | {f(r['class_3_recognised'])} | "
            f"{r['sample_images_per_second']:,.0f} |"
        )
    (RESULTS_DIR / "images.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rebuild_results()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    from synthkit.evaluate.images import DomainCNNFeatures

    real = digits()
    features = DomainCNNFeatures(seed=args.seed).fit(real)
    results = []
    for name in args.families:
        result = run_family(name, FAMILIES[name], real, features, args.budget, args.seed)
        print(json.dumps(result), flush=True)
        results.append(result)
    write(results, args.budget, args.seed, round(features.train_accuracy_, 4))


if __name__ == "__main__":
    main()
