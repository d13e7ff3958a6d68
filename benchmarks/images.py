"""Image families on scikit-learn's digits (upsampled to 16×16) after an equal CPU training budget.

Every family gets the same budget of CPU seconds of this process (``--budget``, default 180 s;
with ``OMP_NUM_THREADS=1`` that is the wall time of an idle core, and unlike wall time on a
shared machine it does not depend on what else runs). Training goes in chunks of epochs, each
``fit(..., resume=True)`` continuing the previous one from its checkpoint, until the next chunk
would overrun the budget. Then each family samples as many images as the real set holds, which
are evaluated with synthkit.evaluate.images (features: a domain CNN trained once on the real
digits and shared by every family, so the figures compare families), sampling is timed in images
per second, and class-conditional samples are checked: the share the same CNN recognises as the
class asked for (chance 10 %). A reference row compares two halves of the real digits.

    OMP_NUM_THREADS=1 python benchmarks/images.py --budget 180

Writes benchmarks/results/images.md and .json, then rebuilds benchmarks/RESULTS.md.

On a GPU (``--device cuda``) the budget is wall seconds of training instead (the GPU does the
work, CPU seconds would not measure it), bf16 mixed precision is on, and results go to
``--json`` after every family (a run cut short keeps what it measured); render them here with

    python benchmarks/images.py --render images-gpu.json --section images-gpu-h200

``--dp EPS`` trains every family with differential privacy (DP-SGD, ``dp={"epsilon": EPS}``,
the ten digit classes declared public) in the same budget.
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

#: CPU-sized settings of each family for 16×16 digits. image/ddpm: a 16-channel two-level U-Net
#: (fast enough for ~1,500 AdamW steps in three CPU minutes), a higher learning rate than the
#: default for the short run, 200 cosine timesteps, 25 DDIM steps, no guidance (guidance trades
#: diversity, i.e. FID and recall, for class fidelity).
FAMILIES = {
    "image/vae": {"base_channels": 16, "latent_dim": 16, "batch_size": 64},
    "image/dcgan": {"generator_channels": 32, "discriminator_channels": 32, "batch_size": 32},
    "image/ddpm": {"base_channels": 16, "channel_mults": (1, 2), "batch_size": 64, "learning_rate": 2e-3,
                   "timesteps": 200, "sampler": "ddim", "sampling_steps": 25, "guidance_scale": 1.0},
}


def digits():
    from sklearn.datasets import load_digits

    from synthkit.images import ImageSet

    d = load_digits()
    return ImageSet.from_array(d.images / 16.0, labels=d.target.tolist()).resized(16)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def train_for(name: str, options: dict, real, budget: float, seed: int, device: str = "cpu"):
    """Train ``name`` in resumed chunks of epochs until ``budget`` seconds are spent: CPU seconds
    of this process on a CPU, wall seconds on a GPU."""
    import synthkit as sk

    gpu = device.startswith("cuda")
    with tempfile.TemporaryDirectory() as ckpt:
        common = dict(seed=seed, progress=False, checkpoint_dir=ckpt, checkpoint_every=1, device=device,
                      amp=True, **options)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        gen = sk.create(name, epochs=1, **common).fit(real)
        epochs = 1
        if "dp" in options:
            # a private run's noise is planned for its epochs: no resuming into more. Timing
            # probes of 1 and 3 epochs (counted in the budget) give the cost per epoch and the
            # fixed cost of a run (Opacus' set-up, the noise plan); one run gets the rest.
            def clock() -> float:
                _synchronize(device)
                return (time.perf_counter() - wall0) if gpu else (time.process_time() - cpu0)

            one = clock()
            sk.create(name, epochs=3, **{**common, "checkpoint_dir": None}).fit(real)
            three = clock() - one
            per_epoch = max((three - one) / 2, 1e-6)
            fixed = max(one - per_epoch, 0.0)
            epochs = max(1, int((budget - clock() - fixed) / per_epoch))
            gen = sk.create(name, epochs=epochs, **{**common, "checkpoint_dir": None}).fit(real)
            return gen, epochs, time.process_time() - cpu0, time.perf_counter() - wall0
        while True:
            _synchronize(device)
            spent = (time.perf_counter() - wall0) if gpu else (time.process_time() - cpu0)
            per_epoch = spent / epochs
            chunk = max(1, int(0.1 * budget / max(per_epoch, 1e-6)))
            chunk = min(chunk, int((budget - spent) / max(per_epoch, 1e-6)))
            if chunk < 1:
                break
            epochs += chunk
            gen = sk.create(name, epochs=epochs, **common).fit(real, resume=True)
        return gen, epochs, time.process_time() - cpu0, time.perf_counter() - wall0


def run_family(name: str, options: dict, real, features, budget: float, seed: int, device: str = "cpu",
               dp: float | None = None) -> dict:
    from synthkit.evaluate.images import evaluate_images

    if dp is not None:
        options = {**options, "dp": {"epsilon": dp}, "classes": list(range(10))}
    gen, epochs, cpu, wall = train_for(name, options, real, budget, seed, device)
    gen.sample(64, seed=seed)  # warm-up: kernels, caches
    _synchronize(device)
    started = time.perf_counter()
    synthetic = gen.sample(len(real), seed=seed + 1)
    _synchronize(device)
    sample_seconds = time.perf_counter() - started
    report = evaluate_images(real, synthetic, features=features, seed=seed, grids=False)
    asked = [gen.sample(50, conditions={"label": k}, seed=seed + 2 + k) for k in range(10)]
    recognised = float(np.mean([np.mean([v == k for v in features.predict(a)]) for k, a in enumerate(asked)]))
    out = {
        "family": name,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "epochs": epochs,
        "steps": epochs * -(-len(real) // options["batch_size"]),
        "fit_cpu_seconds": round(cpu, 1),
        "fit_wall_seconds": round(wall, 1),
        "sample_images_per_second": round(len(real) / sample_seconds, 1),
        "class_recognised": round(recognised, 3),
        "device": str(gen.device_),
        **{k: report.value(k) for k in report.metrics},
    }
    if dp is not None:
        out["dp_epsilon"] = gen.fit_report_["privacy"]["epsilon"]
        out["options"]["dp"] = {"epsilon": dp}
    if name == "image/dcgan" and dp is None:
        out["mode_collapse_final"] = gen.fit_report_.get("mode_collapse", {}).get("final")
    return out


def reference(real, features, seed: int) -> dict:
    """Two halves of the real digits against each other: the floor the families aim at."""
    from synthkit.evaluate.images import evaluate_images

    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    report = evaluate_images(real.subset(np.sort(order[:half])), real.subset(np.sort(order[half:])),
                             features=features, seed=seed, grids=False)
    return {"family": "real digits (one half vs the other)", **{k: report.value(k) for k in report.metrics}}


def verdict(results: list[dict]) -> str:
    """Which family has the lowest FID, by how much, and whether that margin means anything."""
    ranked = sorted(results, key=lambda r: r["quality.fid"])
    best, others = ranked[0], ranked[1:]
    if not others:
        return f"FID of {best['family']}: {best['quality.fid']:.2f}."
    parts = ", ".join(f"{r['family']} {r['quality.fid']:.2f} ({r['quality.fid'] / best['quality.fid']:.2f}×)"
                      for r in others)
    text = f"**Lowest FID: {best['family']} at {best['quality.fid']:.2f}**; then {parts}."
    runner_up = others[0]
    if runner_up["quality.fid"] < 1.1 * best["quality.fid"]:
        text += (f" {best['family']} and {runner_up['family']} are within 10 % on FID: too close to "
                 "call from one seed, so a tie on FID at this budget; KID, precision and recall "
                 "separate them.")
    ddpm = next((r for r in results if r["family"] == "image/ddpm"), None)
    if ddpm is not None and ddpm is not best:
        text += (f" image/ddpm does **not** have the lowest FID at this budget ({ddpm['quality.fid']:.2f} "
                 f"after {ddpm['epochs']} epochs).")
    return text


def write(results: list[dict], ref: dict, meta: dict, section: str = "images") -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{section}.json").write_text(
        json.dumps({"meta": meta, "reference": ref, "results": results}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8")
    budget = meta["budget_cpu_seconds"]
    if meta.get("device", "cpu").startswith("cuda"):
        title = f"## Images on a GPU (digits 16×16, {meta['gpu']})"
        run = (f"`python benchmarks/images.py --device cuda --budget {budget:g}` on {meta['machine']}, "
               f"{meta['date']}. Every family trained for the same {budget:g} wall seconds on the GPU "
               "(bf16 mixed precision; resumed chunks of epochs; fit CPU s is the host process's)")
    else:
        title = "## Images (digits 16×16)"
        run = (f"`OMP_NUM_THREADS=1 python benchmarks/images.py --budget {budget:g}` on {meta['machine']}, "
               f"{meta['date']}; {meta['load']}. Every family trained for the same {budget:g} CPU seconds "
               "(one thread; resumed chunks of epochs; wall seconds are longer on the loaded box)")
    if meta.get("dp_epsilon") is not None:
        title += f", differentially private (epsilon {meta['dp_epsilon']:g})"
        run = run.replace("--budget", f"--dp {meta['dp_epsilon']:g} --budget")
    lines = [
        title,
        "",
        run + " at the "
        "settings in the script's FAMILIES; 1,797 real digits upsampled to 16×16; as many synthetic "
        "images sampled. FID, KID, IS and precision/recall on features of a domain CNN trained on "
        f"the real digits (train accuracy {meta['domain_cnn_train_accuracy']:.3f}): comparable between "
        "these rows, not with published Inception-v3 figures. Class recognised: share of 50 images "
        "per class, sampled with conditions={'label': k}, that the CNN classifies as k (chance 0.1).",
        "",
        verdict(results),
        "",
        "| family | epochs (steps) | fit CPU s | fit wall s | FID ↓ | KID ↓ | IS ↑ | precision ↑ | recall ↑ | "
        "copy share ↓ | class recognised | sample images/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: float | None, digits: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    for r in results:
        lines.append(
            f"| {r['family']} | {r['epochs']} ({r['steps']:,}) | {r['fit_cpu_seconds']:.0f} | "
            f"{r['fit_wall_seconds']:.0f} | {f(r['quality.fid'], 2)} | {f(r['quality.kid'], 2)} | "
            f"{f(r['quality.inception_score'], 2)} | {f(r['quality.precision'])} | {f(r['quality.recall'])} | "
            f"{f(r['privacy.image_copy_share'])} | {f(r['class_recognised'])} | "
            f"{r['sample_images_per_second']:,.0f} |"
        )
    lines.append(
        f"| {ref['family']} | — | — | — | {f(ref['quality.fid'], 2)} | {f(ref['quality.kid'], 2)} | "
        f"{f(ref['quality.inception_score'], 2)} | {f(ref['quality.precision'])} | {f(ref['quality.recall'])} | "
        "— | — | — |"
    )
    (RESULTS_DIR / f"{section}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rebuild_results()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training CPU seconds per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--device", default="cpu", help="'cpu', or 'cuda' (budget in wall seconds)")
    parser.add_argument("--json", help="Also write the results here after every family (GPU runs).")
    parser.add_argument("--render", help="Render a --json file into a results section, then stop.")
    parser.add_argument("--section", default="images", help="Results section name for --render.")
    parser.add_argument("--dp", type=float, help="Train every family with dp={'epsilon': DP}.")
    args = parser.parse_args()
    if args.render:
        data = json.loads(Path(args.render).read_text(encoding="utf-8"))
        write(data["results"], data["reference"], data["meta"], args.section)
        return
    import torch

    from synthkit.evaluate.images import DomainCNNFeatures

    real = digits()
    features = DomainCNNFeatures(seed=args.seed).fit(real)
    gpu = args.device.startswith("cuda")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()} "
                   + (f"(torch {torch.__version__})" if gpu else
                      f"(CPU only, torch threads {torch.get_num_threads()})"),
        "date": time.strftime("%Y-%m-%d"),
        "load": f"shared with other jobs (1-minute load average {load:.1f} at the end)",
        "budget_cpu_seconds": args.budget,
        "seed": args.seed,
        "device": args.device,
        "dp_epsilon": args.dp,
        "gpu": torch.cuda.get_device_name(0) if gpu and torch.cuda.is_available() else "none",
        "domain_cnn_train_accuracy": round(features.train_accuracy_, 4),
    }
    ref = reference(real, features, args.seed)
    results = []
    for name in args.families:
        result = run_family(name, FAMILIES[name], real, features, args.budget, args.seed, args.device, args.dp)
        print(json.dumps(result), flush=True)
        results.append(result)
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "reference": ref, "results": results}, indent=1))
    if gpu:
        return  # rendered on the development machine with --render
    write(results, ref, meta)


if __name__ == "__main__":
    main()
