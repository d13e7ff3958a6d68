"""Fast DP-SGD: ghost clipping gives the reference path's clipped-and-noised update, the fast
epsilon is Opacus' epsilon, and each family records the mode it trained with."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from opacus.accountants import RDPAccountant
from torch import nn

from synthkit.errors import ConfigError
from synthkit.generators.tabular.ctgan import CTGANGenerator
from synthkit.generators.tabular.tvae import TVAEGenerator
from synthkit.nn.privacy import PrivateTraining, SGDBudget
from synthkit.nn.trainer import StepContext


class _Encoder(nn.Module):
    """Linear layers on sequences, a LayerNorm, and an embedding read twice (once through a
    non-contiguous index), as in tabular/argn."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.norm = nn.LayerNorm(3)
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = x[:, 1:3].long().t().contiguous().t()  # (rows, 2), not contiguous
        seq = self.norm(self.embed(index)) + self.embed(index[:, :1].contiguous())
        h = torch.cat([x[:, :1, None].expand(-1, 2, 1), seq], dim=2)
        return self.out(torch.tanh(self.hidden(h)).mean(dim=1))


def _step(mode: str, noise: float | None, rows: int = 24) -> list[torch.Tensor]:
    """One private SGD step (lr 1) on a fixed batch: two networks, one optimizer, as in tvae."""
    torch.manual_seed(0)
    encoder, decoder = _Encoder(), nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.cat([torch.randn(rows, 1) * 3, torch.randint(0, 5, (rows, 2)).float()], dim=1)
    target = torch.randn(rows, 3) * torch.linspace(0.0, 4.0, rows)[:, None]  # some rows clipped
    opt = torch.optim.SGD([*encoder.parameters(), *decoder.parameters()], lr=1.0)
    private = PrivateTraining(SGDBudget(epsilon=2.0, delta=1e-5, max_grad_norm=3.0),
                              n_rows=100, batch_size=rows, epochs=1)
    if noise is not None:
        private.noise_multiplier = noise
    private.attach({"enc": encoder, "dec": decoder}, {"sgd": opt}, (["enc", "dec"], ["sgd"]),
                   torch.Generator().manual_seed(7), row_losses=True, mode=mode)
    assert private.grad_sample_mode == mode
    ctx = StepContext(device=torch.device("cpu"), generator=torch.Generator(), private=private)
    code = encoder(x)
    per_row = (decoder(code) - target).square().sum(1) + 0.1 * code.square().sum(1)
    ctx.optimize(per_row.mean(), opt, rows=per_row)
    private.detach()
    return [p.detach().clone() for p in [*encoder.parameters(), *decoder.parameters()]]


@pytest.mark.parametrize("noise", [0.0, 1.3])
def test_ghost_clipping_gives_the_reference_update(noise):
    """Same per-row clipping (rows far over the bound), same noise draw: the same parameters."""
    reference, ghost = _step("hooks", noise), _step("ghost", noise)
    for ref, new in zip(reference, ghost, strict=True):
        torch.testing.assert_close(new, ref, rtol=1e-5, atol=1e-6)


def test_clipping_really_happens():
    """Without clipping the update would be larger: the test above compares clipped updates."""
    torch.manual_seed(0)
    start = [p.clone() for p in _Encoder().parameters()]
    moved = _step("ghost", 0.0)[: len(start)]
    # each row contributes at most max_grad_norm / expected batch: the whole step is bounded
    step = torch.cat([(a - b).flatten() for a, b in zip(moved, start, strict=True)]).norm().detach()
    assert 0 < float(step) <= 3.0 + 1e-5


def test_ghost_refuses_tied_parameters_and_missing_row_losses():
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.Tanh(), shared)
    private = PrivateTraining(SGDBudget(epsilon=2.0, delta=1e-5, max_grad_norm=1.0),
                              n_rows=100, batch_size=10, epochs=1)
    opt = torch.optim.SGD(tied.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="tied"):
        private.attach({"m": tied}, {"o": opt}, (["m"], ["o"]), torch.Generator(),
                       row_losses=True, mode="ghost")
    private.attach({"m": tied}, {"o": opt}, (["m"], ["o"]), torch.Generator(), row_losses=True)
    assert private.grad_sample_mode == "hooks"  # auto: the reference path for tied weights
    private.detach()
    plain = nn.Linear(3, 1)
    private = PrivateTraining(SGDBudget(epsilon=2.0, delta=1e-5, max_grad_norm=1.0),
                              n_rows=100, batch_size=10, epochs=1)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    private.attach({"m": plain}, {"o": opt}, (["m"], ["o"]), torch.Generator(), row_losses=True)
    ctx = StepContext(device=torch.device("cpu"), generator=torch.Generator(), private=private)
    with pytest.raises(ConfigError, match="per-row losses"):
        ctx.optimize(plain(torch.randn(4, 3)).mean(), opt)
    private.detach()


def test_fast_epsilon_equals_opacus_accountant():
    private = PrivateTraining(SGDBudget(epsilon=3.0, delta=1e-5, max_grad_norm=1.0),
                              n_rows=2400, batch_size=1000, epochs=7)
    reference = RDPAccountant()
    for _ in range(private.planned_steps):
        private.step()
        reference.step(noise_multiplier=private.noise_multiplier, sample_rate=private.sample_rate)
        assert private.epsilon() == reference.get_epsilon(delta=1e-5)
    assert private.epsilon() == pytest.approx(3.0, abs=0.02)


@pytest.mark.parametrize("family", [TVAEGenerator, CTGANGenerator])
def test_families_train_with_ghost_clipping(family, wage_small: pl.DataFrame):
    gen = family(epochs=1, batch_size=200, seed=0, progress=False,
                 dp={"epsilon": 8.0, "delta": 1e-5}).fit(wage_small)
    sgd = gen.fit_report_["privacy"]["sgd"]
    assert sgd["grad_sample_mode"] == "ghost" and sgd["steps"] == 3
    assert gen.sample(20, seed=0).height == 20
