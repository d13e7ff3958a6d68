"""Data-parallel training on Ray Train: DDP over ``workers`` processes, the same model directory.

``fit_distributed("tabular/ctgan", data, workers=2, epochs=50)`` returns a fitted generator;
``gen.save(dir)`` writes exactly the format a single-machine fit writes, and ``sk.load`` reads it
back. Every torch tabular family trains this way: ``tabular/ctgan``, ``tabular/tvae``,
``tabular/ddpm`` and ``tabular/argn``.

How a run goes:

1. The driver runs the ordinary ``Generator.fit`` (schema, fillers, data fingerprint, the
   conditionable values), with the family's ``_fit`` swapped for steps 2-4.
2. Ray Train's ``TorchTrainer`` starts ``workers`` processes with a torch process group (gloo on
   CPU, nccl on GPU). Each runs the family's own ``_fit`` unchanged on the whole learned table
   (so every rank fits the same encoding; the ranks compare a digest of it) with one difference:
   the family's Trainer is a :class:`_DDPTrainer`.
3. The :class:`_DDPTrainer` holds out the validation rows the same way on every rank, splits the
   training rows into ``workers`` shards of equal size (short shards repeat rows, as
   ``DistributedSampler`` pads, so every rank runs the same number of steps), wraps each
   trainable network of the family's :class:`~synthkit.nn.TrainingTask` in
   ``DistributedDataParallel`` (rank 0's weights are broadcast, gradients all-reduced every
   step) and runs the shared Trainer with ``batch_size / workers`` rows per step, so the global
   batch stays ``batch_size``. A task that calls a network method other than ``forward``
   (``tabular/argn``'s ``net.nll``) is routed through DDP's forward all the same; a network whose
   parameters are all frozen at call time (a GAN critic during the generator step) runs as its
   plain module, since it has no gradient to reduce. Every rank validates the same held-out
   rows with the same weights, so early stopping stops all ranks at the same epoch.
4. Rank 0 checks that every rank ended with identical weights and saves the fitted generator
   with ``Generator.save`` as the Ray Train checkpoint; the driver loads that directory and takes
   its learned state.

Notes: ``tabular/ctgan`` draws its real rows by training-by-sampling from the whole table, so each
rank draws from all rows (with its own seed) rather than from its shard. An unseeded config gets
a drawn seed (all ranks must initialise alike); it is recorded in ``fit_report_["distributed"]``.

Not supported (ConfigError, with the reason): ``dp=`` (DP-SGD's accountant covers one process's
Poisson sampling; noise and clipping across ranks are not accounted) and ``resume``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from synthkit.errors import ConfigError

#: Families that fit_distributed trains end to end.
SUPPORTED = ("tabular/ctgan", "tabular/tvae", "tabular/ddpm", "tabular/argn")
_METHOD_KW = "_synthkit_ddp_method"


def fit_distributed(
    generator: Any,
    data: Any,
    *,
    workers: int = 2,
    schema: Any = None,
    use_gpu: bool = False,
    address: str | None = None,
    storage_path: str | Path | None = None,
    find_unused_parameters: bool = False,
    **config: Any,
) -> Any:
    """Fit a torch generator with DDP on ``workers`` Ray Train workers; returns the fitted generator.

    ``generator``: a registry name (``"tabular/ddpm"``, built with ``**config``) or an unfitted
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
            hint="Train other families on one machine (gen.fit).",
        )
    if getattr(gen.config, "dp", None) is not None:
        raise ConfigError(
            "Distributed training does not support dp=: DP-SGD's privacy accountant covers one "
            "process's Poisson-sampled batches; per-sample clipping and noise spread over "
            "several ranks would give a guarantee nobody has accounted for.",
            hint="Train a private model on one machine (gen.fit), or drop dp.",
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
            _run(gen, df, learned, workers=workers, use_gpu=use_gpu, storage_path=storage_path,
                 find_unused=find_unused_parameters)
        finally:
            if started:
                ray.shutdown()

    gen._fit = ddp_fit  # the base fit does schema, fillers and fingerprint; this does the training
    try:
        gen.fit(data, schema=schema)
    finally:
        del gen._fit
    return gen


def _run(gen: Any, df: Any, learned: Any, *, workers: int, use_gpu: bool,
         storage_path: str | Path | None, find_unused: bool) -> None:
    """Train ``gen``'s family on Ray Train and take rank 0's fitted state into ``gen``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from synthkit.artifacts import read_model_dir

    cfg = gen.config
    seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    loop_config = {
        "name": gen.registry_name,
        "config": cfg.model_dump(mode="json"),
        "schema": gen.schema_.to_dict(),
        "learned": learned.to_dict(),
        "fingerprint": gen.data_fingerprint_,
        "n_rows": gen.n_rows_,
        "fillers": gen.fillers_,
        "conditions": gen.condition_values_,
        "table": ray.put(df),
        "seed": seed,
        "use_gpu": use_gpu,
        "find_unused": find_unused,
    }
    with tempfile.TemporaryDirectory(prefix="synthkit-ddp-") as tmp:
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(name=f"synthkit-{gen.registry_name.replace('/', '-')}",
                                 storage_path=str(storage_path or tmp)),
        )
        result = trainer.fit()
        if getattr(result, "error", None) is not None:
            raise result.error
        if result.checkpoint is None:
            raise RuntimeError("Distributed training ended without a checkpoint from rank 0.")
        with result.checkpoint.as_directory() as ckpt:
            fitted = type(gen)._from_artifact(read_model_dir(ckpt))
    for name, value in vars(fitted).items():  # the learned state: exactly what sk.load gives
        if name.endswith("_") and not name.startswith("_") and name not in (
                "schema_", "fillers_", "data_fingerprint_", "n_rows_"):
            setattr(gen, name, value)


# --- the worker ---------------------------------------------------------------------------------
def _shard_rows(n: int, world: int, rank: int, seed: int) -> np.ndarray:
    """Row indices of ``rank``'s shard: a seeded shuffle cut into ``world`` equal parts, padded."""
    order = np.random.default_rng(seed).permutation(n)
    size = -(-n // world)
    if size * world > n:
        order = np.concatenate([order, order[np.arange(size * world - n) % n]])
    return order[rank * size:(rank + 1) * size]


def _digest(arrays: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def _make_replica_class() -> type:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class _Call(torch.nn.Module):
        """Holds the family's network; ``forward`` dispatches to the method the task called."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            method = kwargs.pop(_METHOD_KW, None)
            return getattr(self.inner, method)(*args, **kwargs) if method else self.inner(*args, **kwargs)

    class _Replica(DistributedDataParallel):
        """DDP over a family's network that still looks like it to the task: its attributes
        (``sigma``, ``cond_dim``) read through, its methods (``nll``) run through DDP's forward."""

        def __init__(self, module: torch.nn.Module, **kwargs: Any) -> None:
            super().__init__(_Call(module), **kwargs)

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name in ("module", "inner") or "_modules" not in self.__dict__:
                    raise
            attr = getattr(self.module.inner, name)
            if inspect.ismethod(attr) and name != "forward":
                return functools.partial(self.__call__, **{_METHOD_KW: name})
            return attr

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            if torch.is_grad_enabled() and not any(p.requires_grad for p in self.module.parameters()):
                return self.module(*args, **kwargs)  # frozen here: nothing to all-reduce
            return super().forward(*args, **kwargs)

    return _Replica


def _ddp_trainer_class(world: int, rank: int, common_seed: int, find_unused: bool,
                       report: dict[str, Any]) -> type:
    import torch
    import torch.distributed as dist

    from synthkit.nn.trainer import Trainer

    replica = _make_replica_class()

    class _DDPTrainer(Trainer):
        """The shared Trainer on this rank's shard, the task's networks DDP-wrapped."""

        def fit(self, task: Any, data: Any, *, resume: bool = False, fingerprint: str = "") -> Any:
            full = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
            digests: list[Any] = [None] * world
            dist.all_gather_object(digests, _digest({"data": full}))
            if len(set(digests)) != 1:
                raise RuntimeError("The ranks encoded the table differently; cannot train in parallel.")
            swapped: list[tuple[str, Any]] = []
            ids = [self.device.index] if self.device.type == "cuda" else None
            try:
                for module in task.modules().values():
                    if not any(p.requires_grad for p in module.parameters()):
                        continue  # a weight average: it follows the synchronised weights
                    names = [k for k, v in vars(task).items() if v is module]
                    if not names:
                        raise ConfigError(f"{type(task).__name__} keeps a network where DDP cannot wrap it.")
                    wrapped = replica(module, device_ids=ids, find_unused_parameters=find_unused)
                    for k in names:
                        swapped.append((k, module))
                        setattr(task, k, wrapped)
                result = super().fit(task, full, resume=False, fingerprint=fingerprint)
            finally:
                for k, module in swapped:
                    setattr(task, k, module)
            states = {f"{n}.{k}": v.detach().cpu().numpy() for n, m in task.modules().items()
                      for k, v in m.state_dict().items()}
            dist.all_gather_object(digests, _digest(states))
            report.update(rows_per_rank=self.rows_per_rank, batch_size_per_rank=self.batch_size,
                          global_batch_size=self.batch_size * world,
                          ranks_in_sync=len(set(digests)) == 1,
                          parameters=sum(p.numel() for m in task.modules().values()
                                         for p in m.parameters() if p.requires_grad))
            if not report["ranks_in_sync"]:
                raise RuntimeError("The ranks ended with different weights; DDP lost synchronisation.")
            return result

        def _split(self, matrix: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            train, valid = super()._split(matrix, common_seed)  # the same held-out rows everywhere
            index = torch.as_tensor(_shard_rows(train.shape[0], world, rank, common_seed))
            self.rows_per_rank = int(index.numel())
            return train[index], valid

    return _DDPTrainer


@contextlib.contextmanager
def _patched_trainer(module: Any, trainer_class: type, world: int, seed: int) -> Iterator[None]:
    """Make the family module's ``make_trainer`` build a :class:`_DDPTrainer`."""
    original = module.make_trainer

    def make_trainer(config: Any, description: str, *, dp: Any = None) -> Any:
        trainer = original(config, description, dp=dp)
        trainer.__class__ = trainer_class
        trainer.batch_size = max(1, trainer.batch_size // world)
        trainer.seed = seed  # this rank's batch order and noise; weights start from the config seed
        trainer.checkpoint_dir = None
        return trainer

    module.make_trainer = make_trainer
    try:
        yield
    finally:
        module.make_trainer = original


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the family's own ``_fit`` with a DDP Trainer; rank 0 saves the model."""
    import os

    import ray
    import ray.train
    import torch
    import torch.distributed as dist

    from synthkit.generators.registry import create
    from synthkit.schema import Schema

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    seed = int(loop_config["seed"])
    device = ray.train.torch.get_device() if loop_config["use_gpu"] else torch.device("cpu")
    config = {**loop_config["config"], "seed": seed, "device": str(device), "progress": False,
              "checkpoint_dir": None}
    gen = create(loop_config["name"], **config)
    gen.schema_ = Schema.from_dict(loop_config["schema"])
    gen.data_fingerprint_ = loop_config["fingerprint"]
    gen.n_rows_ = loop_config["n_rows"]
    gen.fillers_ = loop_config["fillers"]
    gen.condition_values_ = loop_config["conditions"]
    gen.fit_report_ = {"warnings": []}
    table = ray.get(loop_config["table"])
    learned = Schema.from_dict(loop_config["learned"])
    rank_seed = int(np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(1)[0] >> 1)
    report: dict[str, Any] = {}
    trainer_class = _ddp_trainer_class(world, rank, seed, bool(loop_config["find_unused"]), report)
    with _patched_trainer(sys.modules[type(gen).__module__], trainer_class, world, rank_seed):
        gen._fit(table, learned, resume=False)
    training = gen.fit_report_.get("training", {})
    metrics = {"epochs_run": training.get("epochs_run", 0)}
    if rank != 0:
        ray.train.report(metrics)
        return
    gen.fit_report_["distributed"] = {
        "engine": "ray.train.TorchTrainer (DistributedDataParallel)",
        "backend": dist.get_backend(), "workers": world, "seed": seed, "pid": os.getpid(),
        **report,
    }
    with tempfile.TemporaryDirectory(prefix="synthkit-rank0-") as out:
        path = gen.save(Path(out) / "model")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(path)))
