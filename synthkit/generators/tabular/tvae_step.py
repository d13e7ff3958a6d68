"""TVAE's training step written out: the forward pass, the loss's gradient and the backward
pass as a few matrix products and elementwise ops, without an autograd graph.

At TVAE's batch of 500 rows and 128-wide layers a CPU step is small: autograd's bookkeeping
and the dozens of small ops of the recorded graph cost more than the products themselves. The
gradients here are autograd's (a test compares them), computed in a fixed order:

- rows come reordered, alpha values first and one-hot slots after (the generator reorders the
  training matrix once, :meth:`~synthkit.generators.tabular.tvae._Layout.alpha_first`), so the
  targets, the output layer's rows and their gradients are two contiguous ranges each;
- the loss's gradient with respect to the outputs is closed-form: ``(tanh(r) - t)(1 - tanh²(r))
  / σ²`` for alpha values, ``softmax(block) - target`` for one-hot slots, both times
  ``loss_factor / rows``; the KL term adds ``mu / rows`` and ``(exp(logvar) - 1) / (2 rows)``;
- ``dtype=torch.bfloat16`` runs the hidden layers' products (forward and backward) in bf16
  where bf16 is fast; the output layer, whose alpha values meet noise scales down to 0.01,
  stays in fp32, as do the loss, the gradients handed to Adam and the weights. (A bf16 output
  layer, alpha outputs excepted, saved 5-8% of a step on mlc_churn and scored the same on
  wage, credit_data and mlc_churn, but 0.921 against 0.931 on diamonds' seed 0.)

Where it was built for the machine (:mod:`synthkit.nn.native`), the same step runs as one native
call (``synthkit/nn/native/tvae_step.cpp``: these products, the elementwise work fused); this
module's code is the reference and the fallback.

Used by :class:`~synthkit.generators.tabular.tvae.TVAETrainingTask` for plain steps on a CPU;
private, CUDA, DDP and compiled runs keep autograd (Opacus' hooks, autocast, DDP's all-reduce,
the compiled forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from synthkit.nn import native
from synthkit.nn.blocks import OneHotBlocks
from synthkit.nn.flat import FlatParameters
from synthkit.nn.precision import fused_linear_relu, linear


def _linears(stack: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a Linear/ReLU stack, in order."""
    return [m for m in stack.modules() if isinstance(m, nn.Linear)]


def _stacked(first: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` equal-shaped 2-D views that lie one after another in one buffer, read as one
    matrix of their rows stacked (a view, no copy)."""
    rows, cols = first.shape
    return torch.as_strided(first, (count * rows, cols), (cols, 1))


@dataclass(frozen=True)
class _Plan:
    """Views one step reads: weights in the products' dtype and where gradients go."""

    flat: FlatParameters
    enc_w: list[tuple[torch.Tensor, torch.Tensor]]
    enc_g: list[tuple[torch.Tensor, torch.Tensor]]
    heads_w: torch.Tensor
    heads_g: torch.Tensor
    heads_b: torch.Tensor
    code: int
    dec_w: list[tuple[torch.Tensor, torch.Tensor]]
    dec_g: list[tuple[torch.Tensor, torch.Tensor]]
    full_g: tuple[torch.Tensor, ...]


class TVAEStep:
    """One TVAE optimisation step's gradients, written out (see the module docstring).

    ``encoder`` and ``decoder`` are :class:`TVAEEncoderNet` and :class:`TVAEDecoderNet` for rows
    whose first ``n_alpha`` columns are alpha values and whose other columns are the one-hot
    slots of ``blocks``, block by block. The first step seats both networks' parameters in one
    buffer (:class:`~synthkit.nn.flat.FlatParameters`, :attr:`flat`): one cast gives every bf16
    weight, gradients land in place, and :func:`~synthkit.nn.optim.adam_step` given
    :attr:`flat` updates them all in one call.

    On a CPU the step runs natively (:mod:`synthkit.nn.native`, one call for the whole step)
    where that was built for this machine; ``native=False`` keeps it in Python, ``native=True``
    demands the native step (an error where it is not built).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        n_alpha: int,
        blocks: OneHotBlocks,
        loss_factor: float,
        *,
        native: bool | None = None,
    ) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.hidden_enc = _linears(encoder.seq)
        self.mu, self.logvar = encoder.mu, encoder.logvar
        *self.hidden_dec, self.out = _linears(decoder.seq)
        self.n_alpha = int(n_alpha)
        if self.n_alpha + blocks.n_slots != self.out.out_features:
            raise ValueError(
                f"{self.n_alpha} alpha values and {blocks.n_slots} one-hot slots do not make "
                f"the decoder's {self.out.out_features} outputs"
            )
        self.blocks = blocks
        self.loss_factor = float(loss_factor)
        self.flat: FlatParameters | None = None
        self._plans: dict[torch.dtype, _Plan] = {}
        self.native = native
        self._native_steps: dict[torch.dtype, tuple[_Plan, Any]] = {}
        #: Whether a step ran (written out), and whether the last one ran natively.
        self.ran = False
        self.ran_native = False

    def _seat(self) -> FlatParameters:
        """The parameters in one buffer, in the order the step reads them: those whose gradients
        come from the products in the step's dtype first (hidden encoder layers, both heads'
        weights side by side, hidden decoder layers), then the ones kept fp32 (the heads' biases
        side by side, the output layer, the noise scales)."""
        if self.flat is None or not self.flat.intact():
            low: list[nn.Parameter] = []
            for layer in self.hidden_enc:
                low += [layer.weight, layer.bias]
            low += [self.mu.weight, self.logvar.weight]
            for layer in self.hidden_dec:
                low += [layer.weight, layer.bias]
            full = [self.mu.bias, self.logvar.bias, self.out.weight, self.out.bias, self.decoder.sigma]
            self.flat = FlatParameters(low + full, low=len(low))
        return self.flat

    def _plan(self, dtype: torch.dtype) -> _Plan:
        """The step's views of the seated parameters and gradients for ``dtype`` (built once
        per seating: the same tensors every step)."""
        flat = self._seat()
        plan = self._plans.get(dtype)
        if plan is not None and plan.flat is flat:
            return plan
        weights = flat.views(dtype)
        grads = flat.low_grads(dtype)
        n_enc, n_dec = len(self.hidden_enc), len(self.hidden_dec)
        first_dec = 2 * n_enc + 2
        full = first_dec + 2 * n_dec
        plan = _Plan(
            flat=flat,
            enc_w=[(weights[2 * i], weights[2 * i + 1]) for i in range(n_enc)],
            enc_g=[(grads[2 * i], grads[2 * i + 1]) for i in range(n_enc)],
            # the heads' weights (their gradients, their biases) lie side by side: mu's view
            # read as two stacked matrices is both heads
            heads_w=_stacked(weights[2 * n_enc], 2),
            heads_g=_stacked(grads[2 * n_enc], 2),
            heads_b=torch.as_strided(weights[full], (2 * weights[full].numel(),), (1,)),
            code=int(weights[2 * n_enc].shape[0]),
            dec_w=[(weights[first_dec + 2 * i], weights[first_dec + 2 * i + 1]) for i in range(n_dec)],
            dec_g=[(grads[first_dec + 2 * i], grads[first_dec + 2 * i + 1]) for i in range(n_dec)],
            full_g=tuple(flat.grads[full:]),
        )
        self._plans[dtype] = plan
        return plan

    @torch.no_grad()
    def __call__(
        self, batch: torch.Tensor, eps: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Set every parameter's ``.grad`` for ``batch`` (rows laid out alpha values first) with
        reparameterisation noise ``eps``; return the (weighted) reconstruction loss and the KL
        term, as autograd's step would."""
        rows = batch.shape[0]
        scale = self.loss_factor / rows
        plan = self._plan(dtype)
        flat = plan.flat
        flat.refresh(dtype)  # every weight in the products' dtype: one cast
        fast = self._native_step(plan, dtype, batch, eps)
        self.ran, self.ran_native = True, fast is not None
        if fast is not None:
            recon, kl = fast(batch.contiguous(), eps.contiguous())
            flat.widen(dtype)
            return recon, kl
        enc_w, enc_g, dec_w, dec_g = plan.enc_w, plan.enc_g, plan.dec_w, plan.dec_g
        heads_w, heads_g, code = plan.heads_w, plan.heads_g, plan.code
        mu_bg, lv_bg, out_wg, out_bg, sigma_g = plan.full_g
        n_enc, n_alpha = len(enc_w), self.n_alpha
        sigma = self.decoder.sigma.detach()

        # --- encoder -----------------------------------------------------------------------
        inputs: list[torch.Tensor] = []
        h = batch.to(dtype)
        fused = fused_linear_relu(h)  # bf16 on a CPU with the fused kernel
        for weight, bias in enc_w:
            inputs.append(h)
            h = linear(h, weight, bias, fused=fused, relu=True)
        inputs.append(h)
        # both heads in one product, each half widened to a contiguous fp32 matrix
        heads = linear(h, heads_w, plan.heads_b, fused=fused)
        mu, logvar = heads[:, :code].float().contiguous(), heads[:, code:].float().contiguous()
        std = logvar.mul(0.5).exp_()
        z = torch.addcmul(mu, eps, std)

        # --- decoder -----------------------------------------------------------------------
        h = z.to(dtype)
        for weight, bias in dec_w:
            inputs.append(h)
            h = linear(h, weight, bias, fused=fused, relu=True)

        # --- output layer (fp32), loss, and the loss's gradient with respect to the outputs
        last = h.float()  # (a no-op cast in an fp32 step)
        out_w = self.out.weight.detach()
        raw = torch.addmm(self.out.bias.detach(), last, out_w.t())
        grad_raw = torch.empty_like(raw)
        recon = batch.new_zeros(())
        if n_alpha:
            tanh = torch.tanh(raw[:, :n_alpha])
            diff = tanh - batch[:, :n_alpha]  # prediction - target
            inv_var = sigma.square().reciprocal()
            sq_sum = diff.square().sum(0)
            recon = recon + (sq_sum * inv_var).sum() * 0.5 + torch.log(sigma).sum() * rows
            # d/d raw: (tanh - t) (1 - tanh²) / σ²
            torch.mul(diff.mul_(1.0 - tanh.square()), inv_var * scale, out=grad_raw[:, :n_alpha])
            # d/d σ of Σ (t - tanh)² / (2σ²) + rows · log σ, over the batch
            torch.mul(sq_sum.mul_(inv_var).neg_().add_(rows), scale / sigma, out=sigma_g)
        if self.blocks.n_blocks:
            logits, hot = raw[:, n_alpha:], batch[:, n_alpha:]
            e, sums, shift = self.blocks._exp_sums(logits)
            recon = recon + (torch.log(sums) + shift).sum() - (logits * hot).sum()
            probs = e.div_(self.blocks.expand(sums))
            torch.mul(probs.sub_(hot), scale, out=grad_raw[:, n_alpha:])
        # KL = -1/2 Σ (1 + logvar - mu² - std²), as sums without temporaries
        mu_flat, std_flat = mu.view(-1), std.view(-1)
        kl = -0.5 * (mu_flat.numel() + logvar.sum() - torch.dot(mu_flat, mu_flat)
                     - torch.dot(std_flat, std_flat))

        # --- backward ----------------------------------------------------------------------
        torch.mm(grad_raw.t(), last, out=out_wg)
        torch.sum(grad_raw, 0, out=out_bg)
        g = self._back((grad_raw @ out_w).to(dtype), h, dec_w, dec_g, inputs[n_enc + 1 :])
        grad_z = g.float()
        # reparameterisation and KL: z = mu + eps * std, std = exp(logvar / 2)
        grad_mu = torch.add(grad_z, mu, alpha=1.0 / rows)
        # d/d logvar: grad_z · eps · std / 2 + (std² - 1) / (2 rows)
        #           = std (rows · grad_z · eps + std) / (2 rows) - 1 / (2 rows)
        grad_lv = torch.addcmul(std, grad_z, eps, value=float(rows)).mul_(std)
        grad_lv.sub_(1.0).mul_(0.5 / rows)
        torch.sum(grad_mu, 0, out=mu_bg)
        torch.sum(grad_lv, 0, out=lv_bg)
        # both heads' gradients side by side in the products' dtype: one product gives both
        # weights' gradients (a cat into another dtype is several times slower than two copies)
        grad_heads = torch.empty((rows, 2 * code), dtype=dtype, device=batch.device)
        grad_mu_low, grad_lv_low = grad_heads[:, :code], grad_heads[:, code:]
        grad_mu_low.copy_(grad_mu)
        grad_lv_low.copy_(grad_lv)
        h_enc = inputs[n_enc]
        torch.mm(grad_heads.t(), h_enc, out=heads_g)
        if n_enc:
            # the encoder's gradient: both heads in one product (fp32 accumulation over 2 x code)
            self._back(grad_heads @ heads_w, h_enc, enc_w, enc_g, inputs[:n_enc], first=True)
        flat.widen(dtype)
        return recon * scale, kl / rows

    def _native_step(self, plan: _Plan, dtype: torch.dtype, batch: torch.Tensor, eps: torch.Tensor) -> Any:
        """The native step for ``plan`` (built once per plan: it keeps the plan's views), or
        None where the Python step runs: not on a CPU, other dtypes, no native build, or
        ``native=False``."""
        if self.native is False:
            return None
        usable = (batch.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
                  and plan.flat.data.dtype == torch.float32 and batch.dtype == torch.float32
                  and eps.dtype == torch.float32)
        cached = self._native_steps.get(dtype)
        if usable and cached is not None and cached[0] is plan:
            return cached[1]
        module = native.load("tvae_step") if usable else None
        if module is None:
            if self.native:
                raise native.NativeBuildError(
                    "The native TVAE step was asked for but is not available here (run "
                    "`synthkit native build`; it needs fp32 parameters and rows on a CPU).")
            return None
        pairs = lambda layers: [t for pair in layers for t in pair]  # noqa: E731
        mu_bg, lv_bg, out_wg, out_bg, sigma_g = plan.full_g
        step = module.TVAEStep(
            pairs(plan.enc_w), pairs(plan.enc_g), plan.heads_w, plan.heads_b, plan.heads_g,
            pairs(plan.dec_w), pairs(plan.dec_g), self.out.weight.detach(), self.out.bias.detach(),
            self.decoder.sigma.detach(), mu_bg, lv_bg, out_wg, out_bg, sigma_g,
            list(self.blocks.widths), self.n_alpha, self.loss_factor,
            fused_linear_relu(batch.new_empty(0, dtype=dtype)),
        )
        self._native_steps[dtype] = (plan, step)
        return step

    @staticmethod
    def _back(
        grad: torch.Tensor,
        output: torch.Tensor,
        weights: list[tuple[torch.Tensor, torch.Tensor]],
        grads: list[tuple[torch.Tensor, torch.Tensor]],
        inputs: list[torch.Tensor],
        *,
        first: bool = False,
    ) -> torch.Tensor:
        """Back through Linear+ReLU layers (``weights``, in the products' dtype) whose last
        output is ``output``: write their gradients into ``grads``, return the gradient of
        their first input (none when ``first``)."""
        for i in range(len(weights) - 1, -1, -1):
            grad = torch.ops.aten.threshold_backward(grad, output, 0)  # ReLU: 0 where output <= 0
            torch.mm(grad.t(), inputs[i], out=grads[i][0])
            # summed in the products' dtype (its kernel accumulates in fp32, and a bf16 sum
            # skips a cast of the whole gradient): as precise as the bf16 weight gradient
            torch.sum(grad, 0, out=grads[i][1])
            if i == 0 and first:
                return grad
            grad = grad @ weights[i][0]
            output = inputs[i]
        return grad
