"""Adam's fused update called directly: the same arithmetic as ``optimizer.step()`` without
``torch.optim``'s per-call bookkeeping.

At the small batches tabular generators train with on a CPU, ``Adam.step`` spends about three
times as long in Python (hooks, profiler records, grouping tensors by device and dtype, a
dozen checks per parameter) as in its one fused kernel: ~0.3 ms of TVAE's ~4 ms step on wage.
:func:`adam_step` runs that kernel on the optimizer's own state tensors, so checkpoints, resume
and ``state_dict`` see exactly what ``step()`` would have left; optimizers it cannot serve
exactly (not a fused CPU Adam, hooks registered, AMSGrad, a schedule that hands ``lr`` as a
tensor, mixed devices or dtypes) take ``step()``. Given the parameters seated in one buffer
(:class:`~synthkit.nn.flat.FlatParameters`), the kernel runs once over that buffer, its moments
kept as views of two more, seated in the optimizer's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

if TYPE_CHECKING:
    from synthkit.nn.flat import FlatParameters

__all__ = ["adam_step"]


def _direct_groups(optimizer: torch.optim.Optimizer) -> bool:
    """The optimizer-wide and per-group conditions of :func:`_direct`."""
    if type(optimizer) is not torch.optim.Adam:  # subclasses and wrappers (Opacus) may add work
        return False
    if "step" in vars(optimizer):  # wrapped per instance (an LR scheduler's step tracking)
        return False
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
        return False
    for group in optimizer.param_groups:
        if not group.get("fused") or group["amsgrad"] or group["maximize"]:
            return False
        if group["capturable"] or group["differentiable"] or group.get("decoupled_weight_decay"):
            return False
        if isinstance(group["lr"], torch.Tensor) or any(isinstance(b, torch.Tensor) for b in group["betas"]):
            return False
    return True


def _direct(optimizer: torch.optim.Optimizer) -> bool:
    """True when the direct call gives ``step()``'s result for this optimizer."""
    if not _direct_groups(optimizer):
        return False
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            device, dtype = params[0].device, params[0].dtype
            if device.type != "cpu" or any(
                p.device != device or p.dtype != dtype or p.grad.is_sparse or torch.is_complex(p)
                for p in params
            ):
                return False
    return True


@torch.no_grad()
def adam_step(optimizer: torch.optim.Optimizer, flat: FlatParameters | None = None) -> None:
    """``optimizer.step()``, by one fused-kernel call per parameter group where that is exact
    (see the module docstring), else by ``step()`` itself. With ``flat`` (the optimizer's
    parameters, all of one group, seated in one buffer, every gradient set), one call over
    the buffer."""
    if flat is not None and _flat_step(optimizer, flat):
        return
    if not _direct(optimizer):
        optimizer.step()
        return
    state = optimizer.state
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            s = state[p]
            if not s:  # lazy initialisation, as Adam._init_group does for a fused group
                s["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(s["exp_avg"])
            exp_avg_sqs.append(s["exp_avg_sq"])
            steps.append(s["step"])
        torch._foreach_add_(steps, 1)
        _fused_adam(group, params, [p.grad for p in params], exp_avgs, exp_avg_sqs, steps)


def _fused_adam(
    group: dict,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
) -> None:
    """PyTorch's fused Adam kernel with ``group``'s hyperparameters (steps already counted)."""
    beta1, beta2 = group["betas"]
    torch._fused_adam_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        steps,
        amsgrad=False,
        lr=float(group["lr"]),
        beta1=float(beta1),
        beta2=float(beta2),
        weight_decay=float(group["weight_decay"]),
        eps=float(group["eps"]),
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )


@dataclass(frozen=True)
class _FlatAdam:
    """Adam's state for a :class:`FlatParameters`: flat moments seated (as views) in one
    optimizer's per-parameter state, and the parameter list it was built for."""

    optimizer: torch.optim.Optimizer
    params: list[torch.Tensor]  # the group's own list object (a changed group is rebuilt)
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    m_views: list[torch.Tensor]
    steps: torch.Tensor
    first_step: torch.Tensor


def _flat_moments(optimizer: torch.optim.Optimizer, flat: FlatParameters) -> _FlatAdam | None:
    """The flat first and second moments and the parameters' step counters, seated in the
    optimizer's state (built from what it holds: fresh, or loaded from a checkpoint); None when
    the group is not exactly ``flat``'s parameters or their states disagree (some initialised,
    some not, or different step counts)."""
    state = optimizer.state
    params = optimizer.param_groups[0]["params"]
    cached = flat.adam
    if (
        isinstance(cached, _FlatAdam) and cached.optimizer is optimizer and cached.params is params
        and len(params) == len(flat.params)
        and all(state[p].get("exp_avg") is m for p, m in zip(flat.params, cached.m_views, strict=True))
    ):
        return cached
    if len(params) != len(flat.params) or {id(p) for p in params} != {id(p) for p in flat.params}:
        return None
    entries = [state[p] for p in flat.params]
    if any(entries) and not all(entries):
        return None
    counts = {float(s["step"]) for s in entries if s}
    if len(counts) > 1:
        return None
    exp_avg, exp_avg_sq = torch.zeros_like(flat.data), torch.zeros_like(flat.data)
    m_views, v_views = flat.split(exp_avg), flat.split(exp_avg_sq)
    # every parameter's step counter a view of one vector: one op counts them all (a
    # foreach add over fifteen scalars costs a third of Adam's kernel), and step() or a
    # checkpoint still sees one counter per parameter
    steps = torch.full((len(flat.params),), counts.pop() if counts else 0.0, device=flat.data.device)
    for i, (p, m, v) in enumerate(zip(flat.params, m_views, v_views, strict=True)):
        s = state[p]
        if s:
            m.copy_(s["exp_avg"])
            v.copy_(s["exp_avg_sq"])
        s["step"], s["exp_avg"], s["exp_avg_sq"] = steps[i], m, v
    flat.adam = _FlatAdam(optimizer, params, exp_avg, exp_avg_sq, m_views, steps, steps[0])
    return flat.adam


def _flat_step(optimizer: torch.optim.Optimizer, flat: FlatParameters) -> bool:
    """One fused Adam call over ``flat``'s buffer; False (nothing done) where it would not give
    ``step()``'s result."""
    if len(optimizer.param_groups) != 1 or flat.data.device.type != "cpu":
        return False
    if not flat.intact() or not _direct_groups(optimizer):
        return False
    moments = _flat_moments(optimizer, flat)
    if moments is None:
        return False
    moments.steps.add_(1)
    _fused_adam(optimizer.param_groups[0], [flat.data], [flat.grad], [moments.exp_avg],
                [moments.exp_avg_sq], [moments.first_step])
    return True
