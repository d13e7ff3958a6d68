"""Training steps replayed from CUDA graphs: one launch per step instead of one per kernel.

At the batches tabular generators train with (hundreds of rows, layers 128 wide) a step on a
GPU is a hundred or so kernels of a few microseconds each, and the time goes to launching them
from Python, not to the arithmetic: a TVAE step took ~5 ms on an H100 where the 2-core CPU box
took ~2. :class:`CapturedStep` records a whole step (forward, loss, backward, optimizer update)
once per batch shape with :class:`torch.cuda.CUDAGraph` and replays it afterwards; each call
copies its inputs into the graph's static buffers, replays, and returns a copy of the losses.

The first ``warmup`` calls for a shape run eagerly on a side stream (real training steps: they
initialise the optimizer's state and let cuBLAS pick its kernels before capture, as PyTorch's
whole-network capture recipe asks). Randomness is drawn outside the graph by the caller and
handed in as an input, so a run draws from its own seeded generator exactly as the eager step
does. A capture that fails (an operation that cannot be captured, a driver that refuses) turns
graphs off for the rest of the run and the step runs eagerly: training never stops for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

__all__ = ["CapturedStep"]

#: A step body: input tensors -> a 1-D tensor of losses; it back-propagates and steps the
#: optimizers itself (gradients are None when it starts).
StepBody = Callable[..., torch.Tensor]


class _Graph:
    """One captured step for one input shape: the graph, its static inputs and output."""

    def __init__(self, inputs: Sequence[torch.Tensor]) -> None:
        self.graph = torch.cuda.CUDAGraph()
        self.inputs = [torch.empty_like(t) for t in inputs]
        self.output: torch.Tensor | None = None
        #: gradients allocated inside the capture: kept referenced so their memory stays the graph's
        self.grads: list[torch.Tensor | None] = []


class CapturedStep:
    """Runs ``body(*inputs)`` as a CUDA graph per distinct input shape (see the module docstring).

    ``optimizers`` are those ``body`` steps: their gradients are cleared before every eager
    call and before capture, and they are marked capturable while the graph is recorded.
    """

    def __init__(
        self,
        body: StepBody,
        optimizers: Sequence[torch.optim.Optimizer],
        *,
        warmup: int = 3,
    ) -> None:
        self.body = body
        self.optimizers = list(optimizers)
        self.warmup = max(1, int(warmup))
        self.enabled = True
        #: steps replayed from a graph, and why graphs were turned off (None while they are on)
        self.replayed = 0
        self.failure: str | None = None
        self._graphs: dict[tuple, _Graph] = {}
        self._eager_calls: dict[tuple, int] = {}
        self._stream: torch.cuda.Stream | None = None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """One training step on ``inputs``; returns the step's losses (a fresh tensor)."""
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        graph = self._graphs.get(key)
        if graph is not None:
            return self._replay(graph, inputs)
        if not self.enabled:
            return self._eager(inputs)
        seen = self._eager_calls.get(key, 0)
        if seen < self.warmup:
            self._eager_calls[key] = seen + 1
            return self._eager(inputs, side_stream=True)
        try:
            graph = self._capture(inputs)
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager steps
            self._disable(f"{type(exc).__name__}: {exc}")
            return self._eager(inputs)
        self._graphs[key] = graph
        return self._replay(graph, inputs)

    @property
    def captured(self) -> bool:
        """True once at least one step ran from a graph."""
        return self.replayed > 0

    # --- internals ----------------------------------------------------------------------------
    def _zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def _eager(self, inputs: Sequence[torch.Tensor], *, side_stream: bool = False) -> torch.Tensor:
        self._zero_grad()
        if not side_stream or not inputs[0].is_cuda:
            return self.body(*inputs).detach().clone()
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=inputs[0].device)
        current = torch.cuda.current_stream(inputs[0].device)
        self._stream.wait_stream(current)
        with torch.cuda.stream(self._stream):
            out = self.body(*inputs).detach().clone()
        current.wait_stream(self._stream)
        for t in inputs:  # made on the current stream, used on the side one
            t.record_stream(self._stream)
        out.record_stream(current)
        return out

    def _capture(self, inputs: Sequence[torch.Tensor]) -> _Graph:
        graph = _Graph(inputs)
        for static, t in zip(graph.inputs, inputs, strict=True):
            static.copy_(t)
        torch.cuda.synchronize(inputs[0].device)
        self._zero_grad()
        groups = [g for o in self.optimizers for g in o.param_groups]
        capturable = [g.get("capturable", False) for g in groups]
        for g in groups:
            g["capturable"] = True  # only checked while recording; replays run what was captured
        try:
            with torch.cuda.graph(graph.graph):
                graph.output = self.body(*graph.inputs).detach()
        finally:
            for g, flag in zip(groups, capturable, strict=True):
                g["capturable"] = flag
        graph.grads = [p.grad for g in groups for p in g["params"]]
        return graph

    def _replay(self, graph: _Graph, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        for static, t in zip(graph.inputs, inputs, strict=True):
            static.copy_(t)
        graph.graph.replay()
        self.replayed += 1
        assert graph.output is not None
        return graph.output.clone()

    def _disable(self, why: str) -> None:
        self.enabled = False
        self.failure = why
        self._graphs.clear()
        self._zero_grad()
        warnings.warn(
            f"CUDA graph capture of the training step failed ({why}); training goes on without "
            "graphs, one kernel launch at a time.",
            RuntimeWarning,
            stacklevel=3,
        )
