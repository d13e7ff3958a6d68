"""CTGAN's generator step written out: the forward pass through the generator, its output
activation and the (frozen) critic, then the gradients of the generator's loss with respect to
its weights by hand, without an autograd graph.

The loss is ``-mean(critic score of the generated packs) + cross-entropy(conditioned block's
logits, named category)``. Its gradient with respect to the raw generator output is closed
form: the critic's input gradient (its weights fixed, the score pass's dropout masks), through
``tanh`` on alpha columns and the tempered Gumbel softmax on one-hot slots, plus
``softmax(logits) - one_hot`` of the conditioned block. The generator's residual blocks
(Linear, BatchNorm in training mode, ReLU, output concatenated to the input) are then walked
back: the output layer, and per block BatchNorm's backward and the linear layer's (BatchNorm
forward and backward by PyTorch's own kernels, which also move the running statistics as
``nn.BatchNorm1d`` moves them). Noise is drawn in the
autograd step's order (Gumbel values, then the critic's dropout masks), so a seed gives the
same draws either way; ``tests/test_neural_fast.py`` checks the gradients against autograd's.

Used for plain CPU steps (:class:`~synthkit.generators.tabular.ctgan._CTGANTask`); private,
CUDA and compiled runs keep autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthkit.generators.tabular.ctgan_critic import hidden_forward

_SLOPE = 0.2


def _batch_norm_train(bn: nn.BatchNorm1d, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``bn(a)`` in training mode by PyTorch's own kernel: ``(output, batch mean, 1 / std)``;
    the running statistics move as ``nn.BatchNorm1d`` moves them."""
    momentum = 0.0
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return torch.native_batch_norm(
        a, bn.weight, bn.bias, bn.running_mean, bn.running_var, True, momentum, bn.eps
    )


@torch.no_grad()
def generator_step(
    blocks: list[nn.Module],
    out: nn.Linear,
    critic: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor,
    activation: Any,
    generator: torch.Generator | None,
    mask: Callable[[torch.Tensor], torch.Tensor],
    condition: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Set ``.grad`` of every generator parameter for one step; return the loss.

    ``blocks`` are the residual blocks (``.fc`` Linear, ``.bn`` BatchNorm1d) and ``out`` the
    output layer; ``x`` the generator's input (noise and conditional vector) and ``cond`` the
    conditional vector the critic reads beside each row. ``activation`` is the task's
    ``_Activation`` (its ``parts(raw, generator)`` draws the Gumbel noise and applies tanh and the
    tempered softmax; its ``alpha``, ``slots``, ``blocks`` and ``tau`` lay the row out);
    ``mask(like)`` draws a critic dropout mask. ``condition`` is ``(index,
    padding, target)`` of the conditioned blocks' logits (``None`` without discrete columns).
    Products and BatchNorm run in ``dtype`` (BatchNorm's statistics in fp32), the activation and
    the losses in fp32, and the gradients handed to the optimizer are fp32.
    """
    alpha, slots, one_hot, tau = activation.alpha, activation.slots, activation.blocks, activation.tau
    rows = x.shape[0]
    # --- generator forward -----------------------------------------------------------------
    h = x.to(dtype)
    weights = [(b.fc.weight.to(dtype), b.fc.bias.to(dtype)) for b in blocks]
    inputs, saved = [], []
    for block, (weight, bias) in zip(blocks, weights, strict=True):
        inputs.append(h)
        a = F.linear(h, weight, bias)
        y, mean, inv_std = _batch_norm_train(block.bn, a)
        saved.append((a, y, mean, inv_std))
        h = torch.cat([y.relu(), h], dim=1)
    w_out = out.weight.to(dtype)
    raw = F.linear(h, w_out, out.bias.to(dtype)).float()

    # --- activation: tanh on alpha values, Gumbel softmax (tau) on one-hot slots -----------
    t, p, fake = activation.parts(raw, generator)

    # --- critic (frozen) forward and its input gradient ----------------------------------------
    hidden, c_out = list(critic.hidden), critic.out  # type: ignore[attr-defined]
    c_weights = [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in hidden]
    packed = torch.cat([fake, cond], dim=1).reshape(-1, critic.packed_dim).to(dtype)  # type: ignore[attr-defined]
    hc, _, pre, masks = hidden_forward(c_weights, packed, mask)
    c_w_out = c_out.weight.to(dtype)
    score = F.linear(hc, c_w_out, c_out.bias.to(dtype)).float()
    packs = score.shape[0]
    loss = -score.mean()
    g = torch.full((packs, 1), -1.0 / packs, dtype=dtype, device=x.device) @ c_w_out
    for i in range(len(c_weights) - 1, -1, -1):
        g = torch.ops.aten.leaky_relu_backward(g * masks[i], pre[i], _SLOPE, False) @ c_weights[i][0]
    d_fake = g.reshape(rows, -1)[:, : raw.shape[1]].float()

    # --- back through the activation into the raw output ---------------------------------------
    d_raw = torch.empty_like(raw)
    d_raw.index_copy_(1, alpha, d_fake.index_select(1, alpha) * (1.0 - t * t))
    dp = d_fake.index_select(1, slots)
    d_slots = p * (dp - one_hot.expand(one_hot.block_sum(dp * p)))
    d_raw.index_copy_(1, slots, d_slots.div_(tau))
    if condition is not None:  # cross-entropy of the conditioned block, mean over rows
        index, padding, target = condition
        logits = raw.gather(1, index).masked_fill(padding, -torch.inf)
        log_probs = torch.log_softmax(logits, dim=1)
        loss = loss - log_probs.gather(1, target[:, None]).mean()
        d_logits = log_probs.exp_()
        d_logits.scatter_add_(1, target[:, None], torch.full((rows, 1), -1.0, device=x.device))
        d_raw.scatter_add_(1, index, d_logits.div_(rows))

    # --- back through the generator ------------------------------------------------------------
    d = d_raw.to(dtype)
    out.weight.grad = (d.t() @ h).float()
    out.bias.grad = d_raw.sum(0)
    dh = d @ w_out
    for k in range(len(blocks) - 1, -1, -1):
        block, (weight, _), (a, y, mean, inv_std) = blocks[k], weights[k], saved[k]
        width, bn = block.fc.out_features, block.bn
        d_y = torch.ops.aten.threshold_backward(dh[:, :width], y, 0)  # ReLU
        # BatchNorm's backward in training mode (through the batch mean and variance too)
        d_a, d_gamma, d_beta = torch.ops.aten.native_batch_norm_backward(
            d_y, a, bn.weight, bn.running_mean, bn.running_var, mean, inv_std, True, bn.eps,
            [True, bn.affine, bn.affine],
        )
        if bn.affine:
            bn.weight.grad, bn.bias.grad = d_gamma, d_beta
        block.fc.weight.grad = (d_a.t() @ inputs[k]).float()
        block.fc.bias.grad = d_a.sum(0).float()
        if k:
            dh = torch.addmm(dh[:, width:], d_a, weight)
    return loss
