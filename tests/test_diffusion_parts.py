"""Diffusion parts: schedules against their closed forms, samplers against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthkit.errors import ConfigError
from synthkit.nn.diffusion import (
    AncestralSampler,
    DDIMSampler,
    DenoiserNet,
    DPMSolverSampler,
    GaussianSchedule,
    KnownValues,
    MultinomialSchedule,
    OneHotBlocks,
    beta_schedule,
    strided_pairs,
    timestep_embedding,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- beta schedules ------------------------------------------------------------------------------
def test_beta_schedules():
    linear = beta_schedule("linear", 1000)
    assert linear[0] == pytest.approx(1e-4) and linear[-1] == pytest.approx(0.02)
    assert beta_schedule("linear", 100)[-1] == pytest.approx(0.2)  # rescaled for fewer steps
    cosine = beta_schedule("cosine", 1000)
    bar = np.cumprod(1 - cosine)
    assert ((cosine > 0) & (cosine <= 0.999)).all()
    assert (np.diff(bar) < 0).all() and bar[0] > 0.999 and bar[-1] < 1e-4
    grid = (np.arange(1, 1001) / 1000 + 0.008) / 1.008
    closed = np.cos(grid * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    assert np.allclose(bar[:-1], closed[:-1], atol=1e-6)
    with pytest.raises(ConfigError, match="Unknown beta schedule"):
        beta_schedule("sigmoid", 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 1"):
        beta_schedule("cosine", 0)
    with pytest.raises(ConfigError):
        GaussianSchedule(np.array([0.5, 1.0]))


def test_alpha_bar_has_the_clean_entry():
    sched = GaussianSchedule.named("linear", 10)
    assert float(sched.alpha_bar(-1)) == 1.0 and float(sched.beta(-1)) == 0.0
    assert float(sched.alpha_bar(0)) == pytest.approx(1 - sched.betas_np[0])
    assert float(sched.alpha_bar(9)) == pytest.approx(np.prod(1 - sched.betas_np))


# --- Gaussian ------------------------------------------------------------------------------------
def test_gaussian_q_sample_marginals():
    sched = GaussianSchedule.named("cosine", 100)
    x0 = torch.full((200_000, 1), 2.0)
    for step in (0, 30, 99):
        t = torch.full((x0.shape[0],), step)
        xt = sched.q_sample(x0, t, torch.randn(x0.shape, generator=_gen(step)))
        bar = float(sched.alpha_bar(step))
        assert float(xt.mean()) == pytest.approx(2.0 * math.sqrt(bar), abs=0.01)
        assert float(xt.var()) == pytest.approx(1 - bar, abs=0.01 + 0.01 * (1 - bar))


def test_predict_x0_and_eps_invert_q_sample():
    sched = GaussianSchedule.named("cosine", 50)
    x0, eps = torch.randn(64, 3, generator=_gen(1)), torch.randn(64, 3, generator=_gen(2))
    t = torch.randint(0, 50, (64,), generator=_gen(3))
    xt = sched.q_sample(x0, t, eps)
    assert torch.allclose(sched.predict_x0(xt, t, eps), x0, atol=1e-4)
    assert torch.allclose(sched.predict_eps(xt, t, x0), eps, atol=1e-3)


def test_posterior_is_bayes_rule():
    """q(x_{t-1} | x_t, x_0) from the product of the two Gaussians it combines."""
    sched = GaussianSchedule.named("linear", 100)
    x0, xt = torch.tensor([[0.7], [-1.2]]), torch.tensor([[0.1], [2.0]])
    for t in (1, 40, 99):
        prev, beta = float(sched.alpha_bar(t - 1)), float(sched.beta(t))
        precision = 1 / (1 - prev) + (1 - beta) / beta
        mean = (math.sqrt(prev) * x0 / (1 - prev) + math.sqrt(1 - beta) * xt / beta) / precision
        got_mean, got_var = sched.posterior_mean_variance(x0, xt, t)
        assert torch.allclose(got_mean, mean.float(), atol=1e-5)
        assert float(got_var) == pytest.approx(1 / precision, rel=1e-5)
    mean, var = sched.posterior_mean_variance(x0, xt, 0)
    assert torch.allclose(mean, x0) and float(var) == 0.0


def test_ddim_step_ends_at_x0_and_refuses_forward_steps():
    sched = GaussianSchedule.named("cosine", 20)
    x0, eps = torch.randn(5, 2, generator=_gen(0)), torch.randn(5, 2, generator=_gen(1))
    assert torch.equal(sched.ddim_step(x0, eps, 7, -1, eta=1.0, noise=eps), x0)
    with pytest.raises(ConfigError, match="back in time"):
        sched.ddim_step(x0, eps, 3, 5, eta=0.0, noise=eps)


# --- multinomial ---------------------------------------------------------------------------------
def _multinomial(widths=(3, 1, 4), steps=50) -> MultinomialSchedule:
    return MultinomialSchedule.named("cosine", steps, OneHotBlocks(list(widths)))


def _transition(k: int, keep: float) -> np.ndarray:
    return keep * np.eye(k) + (1 - keep) / k


def test_multinomial_posterior_rows_sum_to_one_and_match_bayes():
    """log_posterior (losses) and posterior_weights (draws) against Bayes' rule by brute force."""
    sched = _multinomial((3, 1, 4))
    blocks = sched.blocks
    x0 = blocks.index_to_one_hot(torch.tensor([[2, 0, 1], [0, 0, 3]]))
    xt = blocks.index_to_one_hot(torch.tensor([[0, 0, 1], [1, 0, 0]]))
    for t, s in ((10, 9), (40, 5), (49, -1), (0, -1)):
        log_post = sched.log_posterior(x0, xt, t, s)
        assert torch.allclose(blocks.block_sum(log_post.exp()), torch.ones(2, 3), atol=1e-5)
        bar_t, bar_s = float(sched.alpha_bar(t)), float(sched.alpha_bar(s))
        for row in range(2):
            for j, (start, k) in enumerate(zip(blocks.starts.tolist(), blocks.widths, strict=True)):
                a, b = int(x0[row, start:start + k].argmax()), int(xt[row, start:start + k].argmax())
                step, marg = _transition(k, bar_t / bar_s), _transition(k, bar_s)
                bayes = step[:, b] * marg[a, :]  # q(x_t = b | x_s) q(x_s | x_0 = a)
                bayes = bayes / bayes.sum()
                got = log_post[row, start:start + k].exp().numpy()
                assert np.allclose(got, bayes, atol=1e-5), (t, s, row, j)
                weights = sched.posterior_weights(x0, xt, t, s)[row, start:start + k].numpy()
                assert np.allclose(weights / weights.sum(), bayes, atol=1e-5), (t, s, row, j)
    # a predicted distribution for x0 gives a proper distribution too
    probs = torch.softmax(torch.randn(2, 8, generator=_gen(0)), dim=1)
    probs = torch.exp(blocks.log_softmax(torch.log(probs)))
    post = sched.log_posterior(probs, xt, 30, 29).exp()
    assert torch.allclose(blocks.block_sum(post), torch.ones(2, 3), atol=1e-5)


def test_multinomial_q_sample_marginals():
    sched = _multinomial((4,), steps=100)
    n = 100_000
    x0 = sched.blocks.index_to_one_hot(torch.zeros((n, 1), dtype=torch.long))
    for step in (0, 50, 99):
        uniform = torch.rand((n, 1), generator=_gen(step))
        xt = sched.q_sample(x0, torch.full((n,), step), uniform)
        bar = float(sched.alpha_bar(step))
        expected = [bar + (1 - bar) / 4] + [(1 - bar) / 4] * 3
        assert np.allclose(xt.mean(0).numpy(), expected, atol=0.01)
        assert torch.equal(xt.sum(1), torch.ones(n))


def test_multinomial_loss_vanishes_for_a_perfect_prediction():
    sched = _multinomial((3, 2))
    idx = torch.randint(0, 2, (300, 2), generator=_gen(0))
    x0 = sched.blocks.index_to_one_hot(idx)
    t = torch.randint(0, 50, (300,), generator=_gen(1))
    xt = sched.q_sample(x0, t, torch.rand((300, 2), generator=_gen(2)))
    perfect = sched.loss(x0, xt, t, 40.0 * x0)
    wrong = sched.loss(x0, xt, t, 40.0 * (1 - x0))
    assert perfect.shape == (300, 2) and torch.isfinite(perfect).all()
    assert float(perfect.max()) < 1e-4
    assert float(wrong[t == 0].min()) > 1.0  # certain and wrong about x0 costs its log-likelihood
    assert float(wrong.mean()) > 100 * float(perfect.mean()) + 1e-3


# --- denoiser ------------------------------------------------------------------------------------
def test_timestep_embedding_and_denoiser_shapes():
    t = torch.tensor([0, 5, 999])
    emb = timestep_embedding(t, 7)
    assert emb.shape == (3, 7) and torch.equal(emb[0, :3], torch.ones(3))
    net = DenoiserNet(6, (16, 8), time_embedding_dim=12, cond_dim=4, dropout=0.1, layer_norm=True,
                      activation="silu")
    out = net(torch.zeros(3, 6), t, torch.ones(3, 4))
    assert out.shape == (3, 6)
    assert net(torch.zeros(3, 6), t).shape == (3, 6)  # no condition: zeros
    x = torch.randn(3, 6)
    shared = net.eval()(x, torch.tensor([5]))  # one timestep for every row, embedded once
    assert torch.allclose(shared, net(x, torch.tensor([5, 5, 5])), atol=1e-6)
    assert DenoiserNet(6, (), out_dim=2)(torch.zeros(3, 6), t).shape == (3, 2)
    kinds = {type(m).__name__ for m in net.modules()}
    assert kinds <= {"DenoiserNet", "Sequential", "Linear", "SiLU", "Dropout", "LayerNorm"}
    assert any(isinstance(m, torch.nn.ReLU) for m in DenoiserNet(3, (4,)).modules())
    with pytest.raises(ConfigError):
        DenoiserNet(0)
    with pytest.raises(ConfigError, match="activation"):
        DenoiserNet(3, activation="tanh")  # type: ignore[arg-type]


@pytest.mark.slow  # importing Opacus alone takes seconds
@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_denoiser_per_sample_gradients_with_opacus():
    """Opacus' per-sample gradients exist for every weight and add up to the batch gradient."""
    opacus = pytest.importorskip("opacus")
    torch.manual_seed(0)
    net = DenoiserNet(5, (8, 8), time_embedding_dim=6, cond_dim=2, layer_norm=True)
    wrapped = opacus.GradSampleModule(net, loss_reduction="sum")
    x, t, c = torch.randn(4, 5), torch.tensor([1, 2, 3, 4]), torch.randn(4, 2)
    loss = wrapped(x, t, c).square().mean(dim=1).sum()
    loss.backward()
    for p in net.parameters():
        assert p.grad_sample is not None and p.grad_sample.shape[0] == 4
        assert torch.allclose(p.grad_sample.sum(0), p.grad, atol=1e-5)


# --- samplers ------------------------------------------------------------------------------------
def test_sampler_pairs():
    assert AncestralSampler().pairs(4) == [(3, 2), (2, 1), (1, 0), (0, -1)]
    assert DDIMSampler(steps=4).pairs(4) == AncestralSampler().pairs(4)
    pairs = DDIMSampler(steps=5).pairs(1000)
    assert len(pairs) == 5 and pairs[0][0] == 999 and pairs[-1] == (0, -1)
    assert all(s < t for t, s in pairs) and all(a[1] == b[0] for a, b in zip(pairs, pairs[1:], strict=False))
    assert len(DDIMSampler(steps=50).pairs(10)) == 10
    quad = strided_pairs(1000, 10, "quadratic")
    assert quad[0][0] == 999 and quad[-1] == (0, -1) and len(quad) == 10
    assert quad[-2][0] < pairs[-2][0]  # denser near the data end
    assert DPMSolverSampler(steps=10, spacing="quadratic").pairs(1000) == quad
    with pytest.raises(ConfigError, match="spacing"):
        DDIMSampler(spacing="cubic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        DDIMSampler(steps=0)
    with pytest.raises(ConfigError):
        DDIMSampler(eta=1.5)
    with pytest.raises(ConfigError):
        AncestralSampler("medium")  # type: ignore[arg-type]


def _fixed_denoiser(n_num: int, n_slots: int):
    """A fixed, arbitrary denoiser (a random linear map) for comparing samplers step by step."""
    weight = torch.randn(n_num + n_slots + 1, n_num + n_slots, generator=_gen(42)) * 0.3

    def denoise(x_num, x_cat, t):
        time = t.float().view(-1, 1).expand(x_num.shape[0], 1) / 100
        h = torch.cat([x_num, x_cat, time], dim=1) @ weight
        return h[:, :n_num], h[:, n_num:]

    return denoise


def test_ddim_with_every_step_and_eta_one_is_the_ancestral_chain():
    gaussian = GaussianSchedule.named("cosine", 60)
    multinomial = MultinomialSchedule.named("cosine", 60, OneHotBlocks([3, 2]))
    denoise = _fixed_denoiser(3, 5)
    kw = {"n_numerical": 3, "clip": 3.0}
    a_num, a_cat = AncestralSampler("small").sample(denoise, gaussian, multinomial, 50,
                                                    generator=_gen(7), **kw)
    d_num, d_cat = DDIMSampler(steps=60, eta=1.0).sample(denoise, gaussian, multinomial, 50,
                                                          generator=_gen(7), **kw)
    assert torch.allclose(a_num, d_num, atol=1e-4)
    assert torch.equal(a_cat, d_cat)
    # and not by accident: fewer steps, or no noise, give other rows
    e_num, _ = DDIMSampler(steps=60, eta=0.0).sample(denoise, gaussian, multinomial, 50,
                                                      generator=_gen(7), **kw)
    assert not torch.allclose(a_num, e_num, atol=1e-2)


def _exact_denoiser(mean: float, std: float, probs: torch.Tensor, gaussian: GaussianSchedule):
    """The exact denoiser for data x ~ N(mean, std^2) and categories ~ probs (x0 = probs)."""

    def denoise(x_num, x_cat, t):
        bar = gaussian.alpha_bar(t).float().view(-1, 1)
        var = bar * std**2 + 1 - bar
        x0 = mean + bar.sqrt() * std**2 * (x_num - bar.sqrt() * mean) / var
        eps = (x_num - bar.sqrt() * x0) / (1 - bar).sqrt()
        return eps, torch.log(probs).expand(x_cat.shape[0], -1)

    return denoise


def _ddim_std(std: float, pairs: list[tuple[int, int]], eta: float, gaussian: GaussianSchedule) -> float:
    """The spread DDIM gives N(., std^2) data with the exact denoiser, from its recursion.

    Each strided step maps x_t linearly (plus noise), so the variance follows in closed form;
    strides shrink it a little (the predicted x0 is a posterior mean), which is what DDIM does.
    """
    var = 1.0
    for t, s in pairs:
        at, as_ = float(gaussian.alpha_bar(t)), float(gaussian.alpha_bar(s))
        vt = at * std**2 + 1 - at
        noise = eta**2 * (1 - as_) / (1 - at) * (1 - at / as_)
        c = (math.sqrt(as_ * at) * std**2 + math.sqrt(max(1 - as_ - noise, 0.0) * (1 - at))) / vt
        var = c * c * var + noise
    return math.sqrt(var)


@pytest.mark.parametrize(
    "sampler",
    [AncestralSampler("small"), AncestralSampler("large"), DDIMSampler(steps=25, eta=0.0),
     DDIMSampler(steps=25, eta=1.0), DDIMSampler(steps=10, spacing="quadratic"),
     DPMSolverSampler(steps=10, spacing="quadratic")],
    ids=repr,
)
def test_samplers_recover_known_distributions(sampler):
    """With the exact denoiser, samples follow the data: N(1.5, 0.5^2) and fixed category shares."""
    gaussian = GaussianSchedule.named("cosine", 200)
    blocks = OneHotBlocks([3, 2])
    multinomial = MultinomialSchedule.named("cosine", 200, blocks)
    probs = torch.tensor([0.6, 0.3, 0.1, 0.8, 0.2])
    denoise = _exact_denoiser(1.5, 0.5, probs, gaussian)
    n = 12_000 if isinstance(sampler, AncestralSampler) else 40_000
    x_num, x_cat = sampler.sample(denoise, gaussian, multinomial, n, n_numerical=1,
                                  generator=_gen(3))
    assert float(x_num.mean()) == pytest.approx(1.5, abs=0.03)
    if isinstance(sampler, DPMSolverSampler):  # second order: close with ten steps
        assert float(x_num.std()) == pytest.approx(0.5, rel=0.04)
    elif isinstance(sampler, DDIMSampler):
        expected = _ddim_std(0.5, sampler.pairs(gaussian.timesteps), sampler.eta, gaussian)
        assert float(x_num.std()) == pytest.approx(expected, rel=0.015)
    else:
        assert float(x_num.std()) == pytest.approx(0.5, rel=0.03)
    assert np.allclose(x_cat.mean(0).numpy(), probs.numpy(), atol=0.015)
    assert torch.equal(blocks.block_sum(x_cat), torch.ones(n, 2))


def test_dpm_solver_starts_and_ends_as_ddim_and_beats_it_with_few_steps():
    gaussian = GaussianSchedule.named("cosine", 200)
    probs = torch.tensor([1.0])
    denoise = _exact_denoiser(0.0, 0.3, probs, gaussian)
    one = [DDIMSampler(steps=2).sample(denoise, gaussian, None, 500, n_numerical=1, generator=_gen(1)),
           DPMSolverSampler(steps=2).sample(denoise, gaussian, None, 500, n_numerical=1,
                                            generator=_gen(1))]
    assert torch.allclose(one[0][0], one[1][0])  # (999 -> 0) is first order, (0 -> -1) too
    spreads = {}
    for sampler in (DDIMSampler(steps=8, spacing="quadratic"), DPMSolverSampler(steps=8, spacing="quadratic")):
        x, _ = sampler.sample(denoise, gaussian, None, 20_000, n_numerical=1, generator=_gen(2))
        spreads[type(sampler).__name__] = abs(float(x.std()) - 0.3)
    assert spreads["DPMSolverSampler"] < 0.5 * spreads["DDIMSampler"]


def test_known_values_are_kept():
    gaussian = GaussianSchedule.named("linear", 30)
    blocks = OneHotBlocks([3, 2])
    multinomial = MultinomialSchedule(gaussian.betas_np, blocks)
    known = KnownValues(
        numerical=torch.tensor([[0.0, -0.75]]),
        numerical_mask=torch.tensor([[False, True]]),
        categorical=torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]),
        categorical_mask=torch.tensor([[True, True, True, False, False]]),
    )
    x_num, x_cat = DDIMSampler(steps=8).sample(_fixed_denoiser(2, 5), gaussian, multinomial, 200,
                                                n_numerical=2, generator=_gen(0), known=known)
    assert torch.equal(x_num[:, 1], torch.full((200,), -0.75))
    assert torch.equal(x_cat[:, :3], torch.tensor([[0.0, 0.0, 1.0]]).expand(200, -1))
    assert x_cat[:, 3].unique().numel() == 2  # the free block still varies


def test_same_generator_same_sample_and_schedules_must_match():
    gaussian = GaussianSchedule.named("cosine", 20)
    multinomial = MultinomialSchedule.named("cosine", 20, OneHotBlocks([2]))
    denoise = _fixed_denoiser(1, 2)
    a = DDIMSampler(steps=5, eta=0.5).sample(denoise, gaussian, multinomial, 30, n_numerical=1,
                                             generator=_gen(1))
    b = DDIMSampler(steps=5, eta=0.5).sample(denoise, gaussian, multinomial, 30, n_numerical=1,
                                             generator=_gen(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other = MultinomialSchedule.named("cosine", 10, OneHotBlocks([2]))
    with pytest.raises(ConfigError, match="same length"):
        AncestralSampler().sample(denoise, gaussian, other, 3, n_numerical=1, generator=_gen(0))


def test_only_numerical_or_only_categorical():
    gaussian = GaussianSchedule.named("cosine", 20)
    x_num, x_cat = DDIMSampler(steps=5).sample(_fixed_denoiser(2, 0), gaussian, None, 10,
                                                n_numerical=2, generator=_gen(0))
    assert x_num.shape == (10, 2) and x_cat.shape == (10, 0)
    multinomial = MultinomialSchedule.named("cosine", 20, OneHotBlocks([3]))
    x_num, x_cat = DDIMSampler(steps=5).sample(_fixed_denoiser(0, 3), gaussian, multinomial, 10,
                                                n_numerical=0, generator=_gen(0))
    assert x_num.shape == (10, 0) and torch.equal(x_cat.sum(1), torch.ones(10))
