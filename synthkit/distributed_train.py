"""Data-parallel training on Ray Train: DDP over ``workers`` processes, the same model directory.

``fit_distributed("tabular/tvae", data, workers=2, epochs=50)`` returns a fitted
:class:`~synthkit.generators.tabular.tvae.TVAEGenerator`; ``gen.save(dir)`` writes exactly the
format a single-machine fit writes, and ``sk.load`` reads it back. Implemented end to end for
``tabular/tvae`` (the other torch families would follow the same pattern).

How a run goes:

1. The driver runs the ordinary ``Generator.fit`` (schema, fillers, data fingerprint, the
   conditionable values), with the family's training step swapped for step 2.
2. It fits the table encoding once and splits the encoded rows into ``workers`` shards of equal
   size (the last rows of a shorter shard are repeated, as ``DistributedSampler`` pads), so
   every rank runs the same number of steps per epoch.
3. Ray Train's ``TorchTrainer`` starts ``workers`` processes with a torch process group (gloo on
   CPU, nccl on GPU). Each builds the same networks, wraps them in
   ``DistributedDataParallel`` (which broadcasts rank 0's weights and all-reduces gradients every
   step) and runs the shared :class:`~synthkit.nn.Trainer` over its own shard, with
   ``batch_size / workers`` rows per step (the global batch stays ``batch_size``).
4. Rank 0 checks that every rank ended with identical weights and saves the trained decoder
   (safetensors) and the training history as the Ray Train checkpoint; the driver loads it
   into the generator.

Not supported here (ConfigError): ``dp=`` (per-sample clipping across ranks is not accounted),
``validation_fraction`` / early stopping (ranks would stop at different epochs) and ``resume``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from synthkit.errors import ConfigError

#: Families that fit_distributed trains end to end.
SUPPORTED = ("tabular/tvae",)
_WEIGHTS = "weights.safetensors"
_RESULT = "train_result.json"


def fit_distributed(
    generator: Any,
    data: Any,
    *,
    workers: int = 2,
    schema: Any = None,
    use_gpu: bool = False,
    address: str | None = None,
    storage_path: str | Path | None = None,
    **config: Any,
) -> Any:
    """Fit a torch generator with DDP on ``workers`` Ray Train workers; returns the fitted generator.

    ``generator``: a registry name (``"tabular/tvae"``, built with ``**config``) or an unfitted
    generator of a supported family. ``address``: None starts or reuses a local Ray; ``"auto"``
    or ``"ray://host:10001"`` joins a cluster (``storage_path`` must then be shared storage).
    """
    from synthkit.distributed import import_ray
    from synthkit.generators.base import Generator
    from synthkit.generators.registry import create

    gen = create(generator, **config) if isinstance(generator, str) else generator
    if not isinstance(gen, Generator):
        raise ConfigError(f"Expected a registry name or a Generator, got {type(generator).__name__}.")
    if isinstance(generator, Generator) and config:
        raise ConfigError("Pass configuration to the generator's constructor, not to fit_distributed.")
    if gen.registry_name not in SUPPORTED:
        raise ConfigError(
            f"Distributed training is implemented for {', '.join(SUPPORTED)}, not {gen.registry_name}.",
            hint="Train other families on one machine (gen.fit), or use tabular/tvae.",
        )
    cfg = gen.config
    if cfg.dp is not None or cfg.validation_fraction > 0 or cfg.early_stopping_patience is not None:
        raise ConfigError(
            "Distributed training supports neither dp=, validation_fraction nor "
            "early_stopping_patience.",
            hint="Leave them unset, or train on one machine.",
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number of at least 1, got {workers!r}.")
    ray = import_ray()

    def ddp_fit(df: Any, learned: Any, *, resume: bool) -> None:
        if resume:
            raise ConfigError("Distributed training cannot resume; fit again without resume.")
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            _fit_tvae(gen, df, learned, workers=workers, use_gpu=use_gpu, storage_path=storage_path)
        finally:
            if started:
                ray.shutdown()

    gen._fit = ddp_fit  # the base fit does schema, fillers and fingerprint; this does the training
    try:
        gen.fit(data, schema=schema)
    finally:
        del gen._fit
    return gen


def _fit_tvae(gen: Any, df: Any, learned: Any, *, workers: int, use_gpu: bool,
              storage_path: str | Path | None) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from safetensors.numpy import load_file

    from synthkit.errors import DataError
    from synthkit.generators.neural import encode_table
    from synthkit.generators.tabular.tvae import TVAEDecoderNet, _Layout
    from synthkit.nn import load_module_state, resolve_device

    cfg = gen.config
    if df.width == 0:
        raise DataError("TVAE has no column to learn: the table holds only ids, personal data or text.")
    encoder, matrix = encode_table(df, learned, cfg, gen.data_fingerprint_)
    seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    shards = _shards(matrix, workers, seed)
    arrays, meta = encoder.state()
    loop_config = {
        "shards": [ray.put(s) for s in shards],
        "encoder_arrays": ray.put(arrays),
        "encoder_meta": json.dumps(meta, default=str),
        "config": cfg.model_dump(mode="json"),
        "seed": seed,
        "use_gpu": use_gpu,
    }
    with tempfile.TemporaryDirectory(prefix="synthkit-ddp-") as tmp:
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(name="synthkit-tvae", storage_path=str(storage_path or tmp)),
        )
        result = trainer.fit()
        if getattr(result, "error", None) is not None:
            raise result.error
        if result.checkpoint is None:
            raise RuntimeError("Distributed training ended without a checkpoint from rank 0.")
        with result.checkpoint.as_directory() as ckpt:
            tensors = load_file(str(Path(ckpt) / _WEIGHTS))
            train_result = json.loads((Path(ckpt) / _RESULT).read_text())
    layout_device = resolve_device(cfg.device, fallback=True)
    layout = _Layout.of(encoder.blocks, encoder.width, layout_device)
    decoder = TVAEDecoderNet(cfg.embedding_dim, tuple(cfg.decompress_dims), encoder.width,
                             layout.n_alpha)
    load_module_state({"decoder": decoder}, tensors)
    gen.encoder_ = encoder
    gen.decoder_ = decoder.to(layout_device).eval()
    gen.layout_ = layout
    gen.device_ = layout_device
    distributed = train_result.pop("distributed")
    gen.fit_report_["training"] = train_result
    gen.fit_report_.setdefault("warnings", []).extend(train_result.get("warnings", []))
    gen.fit_report_["distributed"] = distributed
    gen.fit_report_["tvae"] = {"data_width": encoder.width, "parameters": distributed["parameters"]}


def _shards(matrix: np.ndarray, workers: int, seed: int) -> list[np.ndarray]:
    """``workers`` shards of equal size from a seeded shuffle; short shards repeat rows."""
    n = matrix.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    size = -(-n // workers)
    padded = np.concatenate([order, order[: size * workers - n]]) if size * workers > n else order
    return [np.ascontiguousarray(matrix[padded[i * size:(i + 1) * size]]) for i in range(workers)]


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: DDP-wrapped TVAE networks, the shared Trainer on this rank's shard."""
    import os

    import ray
    import ray.train
    import torch
    import torch.distributed as dist
    from safetensors.numpy import save_file
    from torch.nn.parallel import DistributedDataParallel

    from synthkit.generators.neural import make_trainer
    from synthkit.generators.tabular.tvae import (
        TVAEConfig,
        TVAEDecoderNet,
        TVAEEncoderNet,
        TVAETrainingTask,
        _Layout,
    )
    from synthkit.nn import module_state, seeded
    from synthkit.prepare.neural import NeuralTableEncoder

    class _DDP(DistributedDataParallel):
        """DDP that lets the task read its network's attributes (``sigma``, ``embedding_dim``)."""

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    shard = np.array(ray.get(loop_config["shards"][rank]))  # writable: torch shares it
    encoder = NeuralTableEncoder.from_state(ray.get(loop_config["encoder_arrays"]),
                                            json.loads(loop_config["encoder_meta"]))
    seed = int(loop_config["seed"])
    device = ray.train.torch.get_device() if loop_config["use_gpu"] else torch.device("cpu")
    base = TVAEConfig(**loop_config["config"])
    per_rank = max(1, base.batch_size // world)
    cfg = base.model_copy(update={"batch_size": per_rank, "seed": seed + rank, "progress": False,
                                  "checkpoint_dir": None, "device": str(device)})
    trainer = make_trainer(cfg, f"tabular/tvae (ddp rank {rank})")
    layout = _Layout.of(encoder.blocks, encoder.width, trainer.device)
    with seeded(seed):  # the same start on every rank (DDP also broadcasts rank 0's weights)
        enc_net = TVAEEncoderNet(encoder.width, base.compress_dims, base.embedding_dim)
        dec_net = TVAEDecoderNet(base.embedding_dim, base.decompress_dims, encoder.width, layout.n_alpha)
    enc_net, dec_net = enc_net.to(trainer.device), dec_net.to(trainer.device)
    ids = [device.index] if device.type == "cuda" else None
    task = TVAETrainingTask(
        _DDP(enc_net, device_ids=ids), _DDP(dec_net, device_ids=ids), layout,
        learning_rate=base.learning_rate, l2scale=base.l2scale, loss_factor=base.loss_factor,
    )
    result = trainer.fit(task, shard)
    weights = module_state({"decoder": dec_net})
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(weights[k]).tobytes()
                                     for k in sorted(weights))).hexdigest()
    digests: list[Any] = [None] * world
    dist.all_gather_object(digests, digest)
    metrics = {"epochs_run": result.epochs_run, "loss": result.history[-1].get("loss", 0.0)}
    if rank != 0:
        ray.train.report(metrics)
        return
    summary = result.to_dict()
    summary["distributed"] = {
        "engine": "ray.train.TorchTrainer (DistributedDataParallel)",
        "backend": dist.get_backend(), "workers": world, "rows_per_rank": int(shard.shape[0]),
        "batch_size_per_rank": per_rank, "global_batch_size": per_rank * world,
        "ranks_in_sync": len(set(digests)) == 1,
        "parameters": sum(p.numel() for p in (*enc_net.parameters(), *dec_net.parameters())),
        "pid": os.getpid(),
    }
    with tempfile.TemporaryDirectory(prefix="synthkit-rank0-") as out:
        save_file(weights, str(Path(out) / _WEIGHTS))
        (Path(out) / _RESULT).write_text(json.dumps(summary, sort_keys=True, default=str))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(out))
