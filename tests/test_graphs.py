"""CUDA-graph training steps (synthkit.nn.graphs) and TVAE's use of them: run on a CUDA GPU only."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import synthkit as sk
from synthkit.generators.neural import adam
from synthkit.generators.tabular.tvae import TVAEGenerator
from synthkit.nn.graphs import CapturedStep

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 1)).cuda()


def _body(net: nn.Module, optimizer: torch.optim.Optimizer):
    def body(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        loss = (net(x + noise).squeeze(1) - x[:, 0]).square().mean()
        loss.backward()
        optimizer.step()
        return loss.detach().reshape(1)
    return body


def _batches(shapes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator(device="cuda").manual_seed(1)
    return [(torch.randn(n, 12, device="cuda", generator=gen), 0.1 * torch.randn(n, 12, device="cuda", generator=gen))
            for n in shapes]


def test_replayed_steps_match_eager_steps():
    """Replays give the eager loop's losses and weights, one graph per batch shape."""
    eager_net = _net()
    graph_net = copy.deepcopy(eager_net)
    eager_opt, graph_opt = adam(eager_net.parameters(), lr=1e-2), adam(graph_net.parameters(), lr=1e-2)
    eager_step, step = _body(eager_net, eager_opt), CapturedStep(_body(graph_net, graph_opt), [graph_opt])
    batches = _batches([64] * 8 + [17] * 6 + [64] * 2)
    for x, noise in batches:
        eager_opt.zero_grad(set_to_none=True)
        expected = eager_step(x, noise)
        got = step(x, noise)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for p, q in zip(eager_net.parameters(), graph_net.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    # three warm-up steps per shape, the rest replayed: (8 - 3) + (6 - 3) + 2
    assert step.replayed == 10 and step.failure is None
    assert not any(g["capturable"] for g in graph_opt.param_groups)  # set only while recording


def test_a_step_that_cannot_be_captured_runs_eagerly_with_a_warning():
    net = _net()
    optimizer = adam(net.parameters(), lr=1e-2)
    inner = _body(net, optimizer)

    def body(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        loss = inner(x, noise)
        if float(loss) < 0:  # a host sync: not allowed while a graph is recorded
            raise AssertionError
        return loss

    step = CapturedStep(body, [optimizer])
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.warns(RuntimeWarning, match="CUDA graph capture"):
        losses = [step(x, noise) for x, noise in _batches([32] * 6)]
    assert step.failure is not None and not step.enabled and step.replayed == 0
    assert all(torch.isfinite(v).all() for v in losses)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_tvae_fits_with_graphs_as_it_does_without(wage_small, tmp_path):
    """Same seed, same draws: the replayed fit's loss history follows the eager one's."""
    fast = {"epochs": 6, "batch_size": 100, "seed": 3, "progress": False, "device": "cuda"}
    graphed = TVAEGenerator(**fast).fit(wage_small)
    eager = TVAEGenerator(**fast, cuda_graphs=False).fit(wage_small)
    assert graphed.fit_report_["tvae"]["training_step"] == "cuda-graph"
    assert eager.fit_report_["tvae"]["training_step"] == "autograd"
    ours = [r["loss"] for r in graphed.fit_report_["training"]["history"]]
    theirs = [r["loss"] for r in eager.fit_report_["training"]["history"]]
    assert ours == pytest.approx(theirs, rel=2e-2)
    loaded = sk.load(graphed.save(tmp_path / "model"))
    assert loaded.sample(300, seed=1).equals(graphed.sample(300, seed=1))


def test_tvae_with_graphs_resumes_from_a_checkpoint(wage_small, tmp_path):
    """A run stopped after its first checkpoint and resumed ends where an uninterrupted one does."""
    fast = {"batch_size": 100, "seed": 3, "progress": False, "device": "cuda", "checkpoint_every": 2}
    whole = TVAEGenerator(**fast, epochs=4, checkpoint_dir=str(tmp_path / "a")).fit(wage_small)
    TVAEGenerator(**fast, epochs=2, checkpoint_dir=str(tmp_path / "b")).fit(wage_small)
    resumed = TVAEGenerator(**fast, epochs=4, checkpoint_dir=str(tmp_path / "b")).fit(wage_small, resume=True)
    assert resumed.fit_report_["training"]["resumed_from"] == 2
    ours = [r["loss"] for r in resumed.fit_report_["training"]["history"]]
    theirs = [r["loss"] for r in whole.fit_report_["training"]["history"]]
    assert len(ours) == 4 and ours == pytest.approx(theirs, rel=2e-2)
