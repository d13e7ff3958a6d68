"""Training checkpoints: one safetensors file holding weights, optimizer and RNG states.

The run's bookkeeping (epoch, history, fingerprint, optimizer layouts) travels as JSON in the
safetensors header, so a checkpoint is one file, replaced atomically: a run killed while
writing keeps the previous checkpoint. Never pickle.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthkit.errors import ArtifactError
from synthkit.nn.state import load_module_state, load_optimizer_state, optimizer_state

CHECKPOINT = "checkpoint.safetensors"
_FORMAT = 1


@dataclass
class Checkpoint:
    """Everything a resumed run needs, as tensors plus JSON metadata."""

    tensors: dict[str, torch.Tensor]
    fingerprint: str
    meta: dict[str, Any]
    optim_meta: dict[str, Any]
    extra_meta: dict[str, Any]

    @classmethod
    def capture(
        cls,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        task: Any,
        order_gen: torch.Generator,
        noise_gen: torch.Generator,
        *,
        fingerprint: str,
        meta: dict[str, Any],
    ) -> Checkpoint:
        tensors: dict[str, torch.Tensor] = {}
        for name, module in modules.items():
            for key, value in module.state_dict().items():
                # a copy: parameters may be views of one buffer (nn.flat), which safetensors refuses
                tensors[f"module.{name}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
        optim_meta = {}
        for name, optimizer in optimizers.items():
            opt_tensors, optim_meta[name] = optimizer_state(name, optimizer)
            tensors.update(opt_tensors)
        tensors["rng.order"] = order_gen.get_state()
        tensors["rng.noise"] = noise_gen.get_state().cpu()
        tensors["rng.torch"] = torch.get_rng_state()
        extra_arrays, extra_meta = task.extra_checkpoint_state()
        for key, array in extra_arrays.items():
            tensors[f"extra.{key}"] = torch.from_numpy(np.ascontiguousarray(array))
        return cls(tensors, fingerprint, meta, optim_meta, extra_meta)

    def restore(
        self,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        task: Any,
        order_gen: torch.Generator,
        noise_gen: torch.Generator,
    ) -> None:
        module_arrays = {k[len("module."):]: v for k, v in self.tensors.items() if k.startswith("module.")}
        load_module_state(modules, module_arrays)
        for name, optimizer in optimizers.items():
            if name not in self.optim_meta:
                raise ArtifactError(f"The checkpoint has no state for optimizer '{name}'.")
            load_optimizer_state(optimizer, self.tensors, self.optim_meta[name])
        order_gen.set_state(self.tensors["rng.order"])
        noise_gen.set_state(self.tensors["rng.noise"].to(noise_gen.get_state().device))
        torch.set_rng_state(self.tensors["rng.torch"])
        extra = {k[len("extra."):]: v.numpy() for k, v in self.tensors.items() if k.startswith("extra.")}
        task.load_extra_checkpoint_state(extra, self.extra_meta)


def save_checkpoint(directory: Path, ckpt: Checkpoint) -> Path:
    """Write ``directory/checkpoint.safetensors`` atomically (temp file, fsync, rename)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    header = {
        "format": _FORMAT,
        "fingerprint": ckpt.fingerprint,
        "run": ckpt.meta,
        "optimizers": ckpt.optim_meta,
        "extra": ckpt.extra_meta,
    }
    dest = directory / CHECKPOINT
    tmp = directory / f".{CHECKPOINT}.{secrets.token_hex(6)}.tmp"
    try:
        save_file(ckpt.tensors, str(tmp), metadata={"synthkit": json.dumps(header, sort_keys=True)})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None when there is none yet."""
    from safetensors import safe_open

    path = directory / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = json.loads((fh.metadata() or {})["synthkit"])
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 - safe_open API
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        raise ArtifactError(
            f"The checkpoint {path} cannot be read: {exc}",
            hint="Delete it to start training afresh.",
        ) from exc
    if header.get("format") != _FORMAT:
        raise ArtifactError(f"The checkpoint {path} has an unknown format.")
    return Checkpoint(tensors, header["fingerprint"], header["run"], header["optimizers"], header["extra"])
