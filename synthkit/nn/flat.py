"""Parameters seated in one flat buffer, so one op casts every weight and one fused Adam call
updates them all.

A written-out CPU training step (TVAE's: batch 500, 128-wide layers) is a hundred small ops,
and a dozen of them only move parameters about: one cast to bf16 per weight and bias, one
widening per bf16 gradient, Adam's fused kernel over fifteen tensors. With every parameter a
view of one contiguous fp32 buffer (and every gradient a view of another) those become one cast
of the buffer, one widening of the bf16 gradients and one Adam call over the buffer: the same
arithmetic, element by element, in fewer ops.

The parameters stay the modules' own ``nn.Parameter`` objects (``state_dict``, saving, loading
and sampling see the same tensors); only their storage moves. Checkpoints copy what they save
(views of one buffer share memory, which safetensors refuses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["FlatParameters"]


class FlatParameters:
    """``params`` re-seated as views of one buffer (``data``), their gradients as views of
    another (``grad``). The first ``low`` parameters get their gradients from reduced-precision
    products: :meth:`low_grads` hands views of a buffer in that precision, :meth:`widen` copies
    it into ``grad`` in one op.

    All parameters must be trainable and share a device and a floating dtype. A module moved
    or a parameter replaced afterwards unseats them: :meth:`intact` tells, and the owner builds
    a new one.
    """

    def __init__(self, params: Sequence[nn.Parameter], *, low: int = 0) -> None:
        params = list(params)
        if not params:
            raise ValueError("FlatParameters needs at least one parameter")
        device, dtype = params[0].device, params[0].dtype
        if any(p.device != device or p.dtype != dtype for p in params):
            raise ValueError("FlatParameters needs parameters on one device in one dtype")
        if not all(p.requires_grad for p in params):
            # a frozen parameter would get a gradient buffer, and Adam would move it
            raise ValueError("FlatParameters needs trainable parameters only")
        self.params = params
        self.shapes = [tuple(p.shape) for p in params]
        self.sizes = [p.numel() for p in params]
        total = sum(self.sizes)
        self.data = torch.empty(total, device=device, dtype=dtype)
        self.grad = torch.zeros(total, device=device, dtype=dtype)
        with torch.no_grad():
            for p, part in zip(params, self.data.split(self.sizes), strict=True):
                part.copy_(p.detach().reshape(-1))
        self.grads = self.split(self.grad)
        for p, part, grad in zip(params, self.split(self.data), self.grads, strict=True):
            p.data = part
            p.grad = grad
        self.n_low = sum(self.sizes[:low])
        self._low = low
        self._ptrs = [p.data_ptr() for p in params]
        self._low_buffer: torch.Tensor | None = None
        self._low_views: list[torch.Tensor] = []
        self._views: dict[torch.dtype, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        #: Adam's flat moments seated in an optimizer's state (kept by :mod:`synthkit.nn.optim`)
        self.adam: Any = None

    def split(self, buffer: torch.Tensor, count: int | None = None) -> list[torch.Tensor]:
        """``buffer``, laid out as ``data`` (its first ``count`` parameters only, if given), as
        one view per parameter shaped as the parameter."""
        sizes = self.sizes if count is None else self.sizes[:count]
        return [part.view(s) for part, s in zip(buffer.split(sizes), self.shapes, strict=False)]

    def intact(self) -> bool:
        """True while every parameter still lives in ``data`` and holds its view of ``grad``."""
        return all(
            p.data_ptr() == ptr and p.grad is g for p, ptr, g in zip(self.params, self._ptrs, self.grads, strict=True)
        )

    def views(self, dtype: torch.dtype) -> list[torch.Tensor]:
        """Every parameter in ``dtype``, as views of one buffer kept for that dtype (the same
        tensors every call, so callers may keep them) that :meth:`refresh` fills. In the
        parameters' own dtype, views of ``data`` itself. Detached: written-out steps compute
        gradients themselves."""
        cached = self._views.get(dtype)
        if cached is None:
            flat = self.data if dtype == self.data.dtype else torch.empty_like(self.data, dtype=dtype)
            cached = (flat, self.split(flat))
            self._views[dtype] = cached
        return cached[1]

    def refresh(self, dtype: torch.dtype) -> None:
        """Cast the current parameters into :meth:`views`' buffer for ``dtype`` (one op; none
        in the parameters' own dtype)."""
        if dtype != self.data.dtype:
            self.views(dtype)  # allocates on first use
            self._views[dtype][0].copy_(self.data)

    def low_grads(self, dtype: torch.dtype) -> list[torch.Tensor]:
        """Where the first ``low`` parameters' gradients are written in ``dtype``: views of
        ``grad`` itself when ``dtype`` is the parameters' own, else of a buffer that
        :meth:`widen` copies into ``grad``."""
        if dtype == self.data.dtype:
            return self.grads[: self._low]
        if self._low_buffer is None or self._low_buffer.dtype != dtype:
            self._low_buffer = torch.empty(self.n_low, device=self.data.device, dtype=dtype)
            self._low_views = self.split(self._low_buffer, self._low)
        return self._low_views

    def widen(self, dtype: torch.dtype) -> None:
        """Copy the reduced-precision gradients of :meth:`low_grads` into ``grad``."""
        if dtype != self.data.dtype and self.n_low:
            assert self._low_buffer is not None
            self.grad[: self.n_low].copy_(self._low_buffer)
