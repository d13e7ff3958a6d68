"""TVAE's training step written out: the forward pass, the loss's gradient and the backward
pass as a few matrix products and elementwise ops, without an autograd graph.

At TVAE's batch of 500 rows and 128-wide layers a CPU step is small: autograd's bookkeeping
and the dozens of small ops of the recorded graph cost more than the products themselves. The
gradients here are autograd's (a test compares them), computed in a fixed order:

- the output layer's rows are read alpha values first, one-hot slots after (one gather of the
  weight per step), so the loss works on two contiguous column ranges;
- the loss's gradient with respect to the outputs is closed-form: ``(tanh(r) - t)(1 - tanh²(r))
  / σ²`` for alpha values, ``softmax(block) - target`` for one-hot slots, both times
  ``loss_factor / rows``; the KL term adds ``mu / rows`` and ``(exp(logvar) - 1) / (2 rows)``;
- ``dtype=torch.bfloat16`` runs the hidden layers' products (forward and backward) in bf16
  where bf16 is fast; the output layer, whose alpha values meet noise scales down to 0.01,
  stays in fp32, as do the loss, the gradients handed to Adam and the weights.

Used by :class:`~synthkit.generators.tabular.tvae.TVAETrainingTask` for plain steps on a CPU;
private, CUDA, DDP and compiled runs keep autograd (Opacus' hooks, autocast, DDP's all-reduce,
the compiled forward).
"""

from __future__ import annotations

import torch
from torch import nn

from synthkit.nn.blocks import OneHotBlocks
from synthkit.nn.precision import fused_linear_relu, linear


def _linears(stack: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a Linear/ReLU stack, in order."""
    return [m for m in stack.modules() if isinstance(m, nn.Linear)]


class TVAEStep:
    """One TVAE optimisation step's gradients, written out (see the module docstring).

    ``encoder`` and ``decoder`` are :class:`TVAEEncoderNet` and :class:`TVAEDecoderNet`;
    ``alpha`` and ``slots`` are the encoded row's alpha positions and one-hot positions (block
    by block, as ``blocks`` lays them out).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        alpha: torch.Tensor,
        slots: torch.Tensor,
        blocks: OneHotBlocks,
        loss_factor: float,
    ) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.hidden_enc = _linears(encoder.seq)
        self.mu, self.logvar = encoder.mu, encoder.logvar
        *self.hidden_dec, self.out = _linears(decoder.seq)
        self.order = torch.cat([alpha, slots]).to(alpha.device)  # output rows: alpha, then slots
        self.n_alpha = int(alpha.numel())
        self.blocks = blocks
        self.loss_factor = float(loss_factor)

    @torch.no_grad()
    def __call__(
        self, batch: torch.Tensor, eps: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Set every parameter's ``.grad`` for ``batch`` with reparameterisation noise ``eps``;
        return the (weighted) reconstruction loss and the KL term, as autograd's step would."""
        rows = batch.shape[0]
        scale = self.loss_factor / rows
        sigma = self.decoder.sigma

        # --- encoder -----------------------------------------------------------------------
        enc_w = [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in self.hidden_enc]
        mu_w, lv_w = self.mu.weight.to(dtype), self.logvar.weight.to(dtype)
        inputs: list[torch.Tensor] = []
        h = batch.to(dtype)
        fused = fused_linear_relu(h)  # bf16 on a CPU with the fused kernel
        for weight, bias in enc_w:
            inputs.append(h)
            h = linear(h, weight, bias, fused=fused, relu=True)
        inputs.append(h)
        # two heads, two products: contiguous results (elementwise ops on a column slice of
        # one product run several times slower)
        mu = linear(h, mu_w, self.mu.bias.to(dtype), fused=fused).float()
        logvar = linear(h, lv_w, self.logvar.bias.to(dtype), fused=fused).float()
        std = logvar.mul(0.5).exp_()
        z = torch.addcmul(mu, eps, std)

        # --- decoder -----------------------------------------------------------------------
        dec_w = [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in self.hidden_dec]
        h = z.to(dtype)
        for weight, bias in dec_w:
            inputs.append(h)
            h = linear(h, weight, bias, fused=fused, relu=True)
        last = h.float()  # the output layer runs in fp32 (a no-op cast in an fp32 step)
        out_w = self.out.weight.index_select(0, self.order)
        raw = torch.addmm(self.out.bias.index_select(0, self.order), last, out_w.t())
        target = batch.index_select(1, self.order)

        # --- loss and its gradient with respect to the outputs ----------------------------
        n_alpha = self.n_alpha
        grad_raw = torch.empty_like(raw)
        recon = raw.new_zeros(())
        if n_alpha:
            tanh = torch.tanh(raw[:, :n_alpha])
            diff = tanh - target[:, :n_alpha]  # prediction - target
            inv_var = sigma.detach().square().reciprocal()
            sq = diff.square()
            recon = recon + (sq.sum(0) * inv_var).sum() * 0.5 + torch.log(sigma.detach()).sum() * rows
            # d/d raw: (tanh - t) (1 - tanh²) / σ²
            torch.mul(diff * (1.0 - tanh.square()), inv_var * scale, out=grad_raw[:, :n_alpha])
            if sigma.requires_grad:
                # d/d σ of Σ (t - tanh)² / (2σ²) + rows · log σ, over the batch
                sigma.grad = (rows - sq.sum(0) * inv_var) * (scale / sigma.detach())
        if self.blocks.n_blocks:
            logits, hot = raw[:, n_alpha:], target[:, n_alpha:]
            e, sums, shift = self.blocks._exp_sums(logits)
            recon = recon + (torch.log(sums) + shift).sum() - (logits * hot).sum()
            probs = e.div_(self.blocks.expand(sums))
            torch.mul(probs.sub_(hot), scale, out=grad_raw[:, n_alpha:])
        # KL = -1/2 Σ (1 + logvar - mu² - std²), as sums without temporaries
        mu_flat, std_flat = mu.view(-1), std.view(-1)
        kl = -0.5 * (mu_flat.numel() + logvar.sum() - torch.dot(mu_flat, mu_flat)
                     - torch.dot(std_flat, std_flat))

        # --- backward ----------------------------------------------------------------------
        grad_out_w = grad_raw.t() @ last
        self.out.weight.grad = torch.empty_like(self.out.weight).index_copy_(0, self.order, grad_out_w)
        self.out.bias.grad = torch.empty_like(self.out.bias).index_copy_(0, self.order, grad_raw.sum(0))
        g = grad_raw @ out_w  # d/d h of the last hidden layer (fp32)
        g = self._back(g.to(dtype), h, self.hidden_dec, dec_w, inputs[len(enc_w) + 1 :])
        grad_z = g.float()
        # reparameterisation and KL: z = mu + eps * std, std = exp(logvar / 2)
        grad_mu = torch.add(grad_z, mu, alpha=1.0 / rows)
        # d/d logvar: grad_z · eps · std / 2 + (std² - 1) / (2 rows)
        #           = std (rows · grad_z · eps + std) / (2 rows) - 1 / (2 rows)
        grad_lv = torch.addcmul(std, grad_z, eps, value=float(rows)).mul_(std)
        grad_lv.sub_(1.0).mul_(0.5 / rows)
        h_enc = inputs[len(enc_w)]
        grad_mu_low, grad_lv_low = grad_mu.to(dtype), grad_lv.to(dtype)
        self.mu.weight.grad = (grad_mu_low.t() @ h_enc).float()
        self.logvar.weight.grad = (grad_lv_low.t() @ h_enc).float()
        self.mu.bias.grad, self.logvar.bias.grad = grad_mu.sum(0), grad_lv.sum(0)
        if enc_w:
            g = torch.addmm(grad_mu_low @ mu_w, grad_lv_low, lv_w)
            self._back(g, h_enc, self.hidden_enc, enc_w, inputs[: len(enc_w)], first=True)
        return recon * scale, kl / rows

    @staticmethod
    def _back(
        grad: torch.Tensor,
        output: torch.Tensor,
        layers: list[nn.Linear],
        weights: list[tuple[torch.Tensor, torch.Tensor]],
        inputs: list[torch.Tensor],
        *,
        first: bool = False,
    ) -> torch.Tensor:
        """Back through Linear+ReLU ``layers`` whose last output is ``output``: set their
        gradients, return the gradient of their first input (none when ``first``)."""
        for i in range(len(layers) - 1, -1, -1):
            grad = torch.ops.aten.threshold_backward(grad, output, 0)  # ReLU: 0 where output <= 0
            layers[i].weight.grad = (grad.t() @ inputs[i]).float()
            # summed in the products' dtype (its kernel accumulates in fp32, and a bf16 sum
            # skips a cast of the whole gradient): as precise as the bf16 weight gradient
            layers[i].bias.grad = grad.sum(0).float()
            if i == 0 and first:
                return grad
            grad = grad @ weights[i][0]
            output = inputs[i]
        return grad
