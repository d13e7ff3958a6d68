"""CTGAN's critic step written out: both forward passes, and the gradients of the WGAN-GP loss
with respect to the critic's weights in closed form, without an autograd graph.

The critic is a stack of Linear + LeakyReLU(0.2) + dropout layers and a Linear score. Its loss
is ``mean(score(fake packs)) - mean(score(real packs)) + λ · mean((‖∇ₓ score(x̂)‖ - 1)²)`` over
interpolated packs ``x̂``. Because LeakyReLU's slope is piecewise constant, the input gradient is
a product of the weights with fixed 0/1/0.2/2 masks: ``g = ((w_out ∘ m_L ∘ d_L) W_L ∘ ... ∘ m_1 ∘
d_1) W_1``, so the penalty's gradient with respect to each weight is one more product per layer
(biases get none: they only move the slopes, whose derivative is zero almost everywhere).
Autograd reaches the same numbers through a double-backward graph that also pushes zeros back
through the interpolates' forward pass (the derivative PyTorch defines for the slope's input);
here each product is computed once. The dropout masks are drawn in the order the autograd path
draws them (score pass, then the mixing weights, then the penalty pass), so a seed gives the
same masks either way; ``tests/test_ctgan.py`` checks the gradients against autograd's.

Used for plain CPU steps (:class:`~synthkit.generators.tabular.ctgan._CTGANTask`); private,
CUDA and compiled runs keep autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

_SLOPE = 0.2


def _layers(critic: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    hidden = list(critic.hidden)  # type: ignore[attr-defined]
    return hidden, critic.out  # type: ignore[attr-defined]


def hidden_forward(
    weights: list[tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    mask: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The critic's hidden layers (Linear, LeakyReLU, dropout) on packed rows ``x``, as its
    ``forward`` runs them (one mask per layer, drawn in order): the last activations, and each
    layer's input, pre-activation and mask, which the written-out backward passes read."""
    inputs, pre, masks = [], [], []
    h = x
    for weight, bias in weights:
        inputs.append(h)
        z = F.linear(h, weight, bias)
        a = F.leaky_relu(z, _SLOPE)
        m = mask(a)
        pre.append(z)
        masks.append(m)
        h = a * m
    return h, inputs, pre, masks


@torch.no_grad()
def critic_step(
    critic: nn.Module,
    fake: torch.Tensor,
    real: torch.Tensor,
    mask: Callable[[torch.Tensor], torch.Tensor],
    mixing: Callable[[int], torch.Tensor],
    penalty_weight: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Set every critic parameter's ``.grad`` for one WGAN-GP step; return the loss.

    ``fake`` and ``real`` are rows (each ``pac`` of them one pack); ``mask(like)`` draws an
    inverted-dropout mask shaped like ``like``; ``mixing(packs)`` draws the ``(packs, 1)``
    interpolation weights of real over fake. Products run in ``dtype``; the loss, the
    penalty's norms and the gradients handed to the optimizer are fp32.
    """
    hidden, out = _layers(critic)
    packed_dim = critic.packed_dim  # type: ignore[attr-defined]
    weights = [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in hidden]
    w_out, b_out = out.weight.to(dtype), out.bias.to(dtype)
    # each hidden weight's gradient is one product over both terms' rows: (Wasserstein rows,
    # penalty rows) stacked on each side, multiplied once at the end
    left: list[list[torch.Tensor]] = [[] for _ in hidden]
    right: list[list[torch.Tensor]] = [[] for _ in hidden]
    grads_b: list[torch.Tensor] = [torch.empty(0)] * len(hidden)

    # --- Wasserstein term: one pass over fake and real packs ---------------------------------
    x = torch.cat([fake, real]).reshape(-1, packed_dim).to(dtype)
    packs_fake = fake.shape[0] * fake.shape[1] // packed_dim
    packs = x.shape[0]
    h, inputs, pre, masks = hidden_forward(weights, x, mask)
    score = F.linear(h, w_out, b_out).float()
    wasserstein = score[:packs_fake].mean() - score[packs_fake:].mean()
    # d loss / d score: +1/fake packs for fakes, -1/real packs for reals
    d_score = torch.empty((packs, 1), dtype=torch.float32, device=x.device)
    d_score[:packs_fake] = 1.0 / packs_fake
    d_score[packs_fake:] = -1.0 / (packs - packs_fake)
    grad_w_out = (d_score.t() @ h.float())
    grad_b_out = d_score.sum(0)
    g = d_score.to(dtype) @ w_out
    for i in range(len(weights) - 1, -1, -1):
        g = torch.ops.aten.leaky_relu_backward(g * masks[i], pre[i], _SLOPE, False)
        left[i].append(g)
        right[i].append(inputs[i])
        grads_b[i] = g.sum(0).float()
        if i:
            g = g @ weights[i][0]

    # --- gradient penalty on interpolated packs ------------------------------------------------
    fake_packs, real_packs = fake.float().reshape(-1, packed_dim), real.float().reshape(-1, packed_dim)
    alpha = mixing(fake_packs.shape[0])
    mixed = torch.lerp(fake_packs, real_packs, alpha).to(dtype)
    pre, masks = [], []
    h = mixed
    for i, (weight, bias) in enumerate(weights):
        z = F.linear(h, weight, bias)
        m = mask(z)
        pre.append(z)
        masks.append(m)
        if i + 1 < len(weights):  # the last layer's activations are not needed, its slopes are
            h = F.leaky_relu(z, _SLOPE) * m
    # the input gradient, layer by layer from the score down: u_{i} = lrelu'(z_i)(u_{i+1} m_i) W_i
    chain: list[torch.Tensor] = []
    u = w_out.expand(mixed.shape[0], -1)
    for i in range(len(weights) - 1, -1, -1):
        t = torch.ops.aten.leaky_relu_backward(u * masks[i], pre[i], _SLOPE, False)
        chain.append(t)
        u = t @ weights[i][0]
    chain.reverse()  # chain[i]: layer i's slope-masked gradient
    norm = u.float().norm(2, dim=1)
    penalty = penalty_weight * ((norm - 1.0) ** 2).mean()
    # d penalty / d g = 2λ/Q · (‖g‖ - 1) g / ‖g‖ (0 where g = 0, as autograd's norm takes it)
    factor = torch.where(norm > 0, (norm - 1.0) / norm, torch.zeros_like(norm))
    du = (u.float() * (factor * (2.0 * penalty_weight / norm.numel()))[:, None]).to(dtype)
    for i, (weight, _) in enumerate(weights):
        left[i].append(chain[i])
        right[i].append(du)
        dt = du @ weight.t()
        du = torch.ops.aten.leaky_relu_backward(dt, pre[i], _SLOPE, False) * masks[i]
    grad_w_out = grad_w_out + du.float().sum(0, keepdim=True)

    for layer, lhs, rhs, gb in zip(hidden, left, right, grads_b, strict=True):
        layer.weight.grad = (torch.cat(lhs).t() @ torch.cat(rhs)).float()
        layer.bias.grad = gb
    out.weight.grad, out.bias.grad = grad_w_out, grad_b_out
    return wasserstein + penalty
