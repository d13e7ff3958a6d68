"""Reduced precision for sampling and training: bf16 hidden layers where the hardware
multiplies bf16 fast, output layers whose numbers stay fp32, denormals flushed on a CPU.

Sampling a trained generator is a stack of matrix products over many rows. On a GPU with bf16
and on a CPU with AMX tiles (Intel Sapphire Rapids and later) bf16 products run several times
faster than fp32 ones (an MLP of CTGAN's widths over 100,000 rows on one core: 0.07 s against
0.35 s), on a CPU with AVX-512 BF16 (AMD Zen 4) about twice as fast. The hidden layers tolerate
bf16's 8-bit mantissa (mixed-precision training uses it for whole steps). Of the output
layer, the columns that become continuous numbers (``exact``) are computed in fp32, so they
are not rounded to bf16's grid; the category logits, which only feed an argmax, stay in bf16.

The output layer is computed transposed (outputs × rows), so the rows × outputs matrix handed
to decoding is column-major: every encoded column contiguous, which the decoder's per-block
argmax reads fastest (:func:`synthkit.nn.chunks.sample_chunks` runs the passes and decoding).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch

SamplePrecision = Literal["auto", "float32", "bfloat16"]


def fast_bf16(device: torch.device) -> bool:
    """True where bf16 matrix products beat fp32 by a wide margin: CUDA GPUs with bf16 support,
    CPUs with AMX tiles (Intel Sapphire Rapids and later) or AVX-512 BF16 dot products (AMD
    Zen 4 and later, Intel Cooper Lake: 1.7-2.4x fp32's rate at these layers' sizes)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def sampling_dtype(precision: SamplePrecision, device: torch.device) -> torch.dtype:
    """The dtype of a sampler's hidden layers: ``"auto"`` picks bf16 where :func:`fast_bf16`."""
    if precision == "bfloat16" or (precision == "auto" and fast_bf16(device)):
        return torch.bfloat16
    return torch.float32


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats (below ~1e-38) as zero on this thread's CPU while inside, as the
    training loops and samplers do, and restore the previous mode after.

    Long runs drift some weights, moments and gradients into the denormal range, where x86
    arithmetic is tens of times slower: a 300-epoch TVAE fit on diamonds took over 6 CPU
    minutes without this and 2.5 with it (the first epochs equally fast). Values that small
    change no result that matters."""
    probe = torch.tensor([1e-39], dtype=torch.float32)
    was_on = float(probe * 1.0) == 0.0  # flushed already (no getter for the mode)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def linear_split_t(
    layer: torch.nn.Linear, h_t: torch.Tensor, exact: torch.Tensor | None, *, widen: bool = True
) -> torch.Tensor:
    """``layer`` on a reduced-precision input given transposed, ``h_t`` (features × rows,
    contiguous or a transposed view of a contiguous matrix): the output columns in ``exact``
    computed in fp32, the others in ``h_t``'s dtype. Returns rows × outputs, column-major (the
    transpose of a contiguous outputs × rows matrix), fp32 unless ``widen=False`` and no column
    is ``exact`` (then in ``h_t``'s dtype, for a caller that widens it while copying it)."""
    if exact is not None and exact.numel():
        out_t = torch.empty(layer.out_features, h_t.shape[1], device=h_t.device)
        keep = torch.ones(layer.out_features, dtype=torch.bool, device=h_t.device)
        keep[exact] = False
        rest = keep.nonzero().squeeze(1)
        if rest.numel():  # the other columns in h_t's dtype: no product computed twice
            out_t.index_copy_(0, rest, _product(layer, h_t, rest).float())
        out_t.index_copy_(0, exact, _exact_product(layer, h_t, exact))
        return out_t.t()
    out_t = _product(layer, h_t)
    return (out_t.float() if widen else out_t).t()


def _product(layer: torch.nn.Linear, h_t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """``layer``'s output (its ``rows`` only, if given), transposed, in ``h_t``'s dtype."""
    weight, bias = layer.weight, layer.bias
    if rows is not None:
        weight = weight.index_select(0, rows)
        bias = None if bias is None else bias.index_select(0, rows)
    weight = weight.to(h_t.dtype)
    if bias is None:
        return torch.mm(weight, h_t)
    return torch.addmm(bias.to(h_t.dtype)[:, None], weight, h_t)


#: Bytes of ``h_t`` widened to fp32 at a time by :func:`_exact_product`: small enough to stay
#: in a core's cache and to come from the heap rather than a fresh mapping.
_WIDEN_BYTES = 1 << 19


def _exact_product(layer: torch.nn.Linear, h_t: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``layer``'s ``exact`` output rows (transposed) in fp32 from a reduced-precision ``h_t``.

    The sum runs over slices of ``h_t``'s features, each widened on its own: widening the whole
    input at once (660 × 4,096 values for a CTGAN block) wrote a fresh 10 MB buffer whose page
    faults and memory traffic cost as much as the product itself. The slices' partial sums add
    in a fixed order, so the result does not depend on the thread that computes it."""
    w = layer.weight.index_select(0, exact)
    features, rows = h_t.shape
    step = max(8, _WIDEN_BYTES // (4 * max(rows, 1)))
    out = (torch.zeros(exact.numel(), rows, device=h_t.device) if layer.bias is None
           else layer.bias.index_select(0, exact)[:, None].expand(-1, rows).clone())
    for start in range(0, features, step):
        out.addmm_(w[:, start : start + step], h_t[start : start + step].float())
    return out


def mlp_no_grad(
    layers: torch.nn.Sequential,
    x: torch.Tensor,
    dtype: torch.dtype,
    exact: torch.Tensor | None = None,
    *,
    widen: bool = True,
) -> torch.Tensor:
    """Run a Linear/ReLU stack whose last layer is a Linear: the hidden layers in ``dtype``, the
    last one by :func:`linear_split_t` (``exact`` columns in fp32; with ``widen=False`` and no
    ``exact`` columns the output stays in ``dtype``). Equal to ``layers(x)`` when ``dtype`` is
    fp32."""
    if dtype == torch.float32:
        return layers(x)
    *hidden, last = list(layers.children())
    if not isinstance(last, torch.nn.Linear):
        raise TypeError("mlp_no_grad needs a stack that ends in a Linear layer")
    h = x.to(dtype)
    flat = _flatten(hidden)
    fuse = fused_linear_relu(h)
    i = 0
    while i < len(flat):
        layer = flat[i]
        if isinstance(layer, torch.nn.Linear):
            weight = layer.weight.to(dtype)
            bias = None if layer.bias is None else layer.bias.to(dtype)
            if fuse and i + 1 < len(flat) and isinstance(flat[i + 1], torch.nn.ReLU):
                h = linear(h, weight, bias, fused=True, relu=True)
                i += 2
                continue
            h = torch.nn.functional.linear(h, weight, bias)
        elif isinstance(layer, torch.nn.ReLU):
            h = h.relu_()
        else:
            h = layer(h)
        i += 1
    return linear_split_t(last, h.t(), exact, widen=widen)


def linear(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, fused: bool, relu: bool = False
) -> torch.Tensor:
    """``h Wᵀ + b`` (then ReLU when ``relu``): by oneDNN's kernel when ``fused`` (see
    :func:`fused_linear_relu`; PyTorch's own bf16 addmm with a bias is about twice as slow on a
    CPU), else by ``F.linear``."""
    if fused:
        if relu:
            return torch.ops.mkldnn._linear_pointwise(h, weight, bias, "relu", [None], "")
        return torch.ops.mkldnn._linear_pointwise(h, weight, bias, "none", [], "")
    out = torch.nn.functional.linear(h, weight, bias)
    return out.relu_() if relu else out


_FUSED: dict[str, bool] = {}


def fused_linear_relu(h: torch.Tensor) -> bool:
    """True where oneDNN's fused linear + ReLU (the kernel ``torch.compile`` emits on CPU) runs
    for ``h``: a bf16 CPU tensor, in a PyTorch build that has the op and gives ReLU(linear)'s
    values (and, without the ReLU, linear's). It saves a pass over every hidden layer's output
    (a fifth of a layer's time)."""
    if h.device.type != "cpu" or h.dtype != torch.bfloat16:
        return False
    if "cpu" not in _FUSED:
        try:
            x = torch.linspace(-1, 1, 24).reshape(4, 6).to(torch.bfloat16)
            w = torch.linspace(-1, 1, 30).reshape(5, 6).to(torch.bfloat16)
            b = torch.linspace(-0.5, 0.5, 5).to(torch.bfloat16)
            plain = torch.nn.functional.linear(x, w, b)
            relu = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [None], "")
            none = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
            _FUSED["cpu"] = bool(
                torch.allclose(relu.float(), plain.relu().float(), atol=1e-2)
                and torch.allclose(none.float(), plain.float(), atol=1e-2)
            )
        except (RuntimeError, AttributeError, NotImplementedError):
            _FUSED["cpu"] = False
    return _FUSED["cpu"]


def _flatten(modules: list[torch.nn.Module]) -> list[torch.nn.Module]:
    out: list[torch.nn.Module] = []
    for module in modules:
        if isinstance(module, torch.nn.Sequential):
            out.extend(_flatten(list(module.children())))
        else:
            out.append(module)
    return out
