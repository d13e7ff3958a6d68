"""Adam's fused update called directly: the same arithmetic as ``optimizer.step()`` without
``torch.optim``'s per-call bookkeeping.

At the small batches tabular generators train with on a CPU, ``Adam.step`` spends about three
times as long in Python (hooks, profiler records, grouping tensors by device and dtype, a
dozen checks per parameter) as in its one fused kernel: ~0.3 ms of TVAE's ~4 ms step on wage.
:func:`adam_step` runs that kernel on the optimizer's own state tensors, so checkpoints, resume
and ``state_dict`` see exactly what ``step()`` would have left; optimizers it cannot serve
exactly (not a fused CPU Adam, hooks registered, AMSGrad, a schedule that hands ``lr`` as a
tensor, mixed devices or dtypes) take ``step()``.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

__all__ = ["adam_step"]


def _direct(optimizer: torch.optim.Optimizer) -> bool:
    """True when the direct call gives ``step()``'s result for this optimizer."""
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
def adam_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, by one fused-kernel call per parameter group where that is exact
    (see the module docstring), else by ``step()`` itself."""
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
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params,
            [p.grad for p in params],
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
