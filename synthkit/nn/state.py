"""Module and optimizer state as flat numpy/torch arrays plus JSON: safetensors, never pickle."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthkit.errors import ArtifactError


def module_state(modules: dict[str, torch.nn.Module]) -> dict[str, np.ndarray]:
    """``{"name.param": array}`` for every parameter and buffer, as contiguous numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for name, module in modules.items():
        for key, tensor in module.state_dict().items():
            array = tensor.detach().cpu()
            if array.dtype == torch.bfloat16:
                array = array.float()
            values = array.numpy()
            out[f"{name}.{key}"] = np.ascontiguousarray(values).reshape(values.shape)  # keeps 0-d
    return out


def load_module_state(modules: dict[str, torch.nn.Module], arrays: dict[str, Any]) -> None:
    """Load what :func:`module_state` wrote (numpy or torch arrays); mismatches are errors."""
    for name, module in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        current = module.state_dict()
        missing = sorted(set(current) - set(own))
        unexpected = sorted(set(own) - set(current))
        if missing or unexpected:
            raise ArtifactError(
                f"Saved weights do not fit the '{name}' network (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}).",
                hint="The model was saved with another architecture or version; re-train it.",
            )
        tensors = {}
        for key, value in own.items():
            t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
            if tuple(t.shape) != tuple(current[key].shape):
                raise ArtifactError(
                    f"Saved weight '{name}.{key}' has shape {tuple(t.shape)}, the network "
                    f"expects {tuple(current[key].shape)}."
                )
            tensors[key] = t.to(dtype=current[key].dtype)
        module.load_state_dict(tensors)


def optimizer_state(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state dict split into tensors (for safetensors) and a JSON skeleton."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        meta: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tkey = f"optim.{name}.{pid}.{key}"
                # a copy: states may be views of one buffer (nn.flat), which safetensors refuses
                tensors[tkey] = value.detach().to("cpu", copy=True).contiguous()
                meta[key] = {"tensor": tkey}
            else:
                meta[key] = {"value": value}
        state_meta[str(pid)] = meta
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Restore what :func:`optimizer_state` wrote."""
    state: dict[int, dict[str, Any]] = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {
            key: tensors[spec["tensor"]] if "tensor" in spec else spec["value"]
            for key, spec in entries.items()
        }
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
