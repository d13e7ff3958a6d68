"""bf16 sampling (synthkit.nn.precision): the right dtype per device, fp32 continuous outputs,
samples that match fp32 sampling, and CTGAN's transposed bf16 path against its fp32 one; CTGAN's
bf16 mixed-precision training."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import synthkit as sk
from synthkit.generators.tabular.ctgan import CTGANGeneratorNet
from synthkit.nn.precision import linear_split_t, mlp_no_grad, sampling_dtype


def test_sampling_dtype_follows_the_hardware_unless_told():
    cpu = torch.device("cpu")
    # bf16 where the CPU multiplies it natively: AMX tiles (Intel) or AVX-512 BF16 (AMD Zen 4)
    fast = any(bool(getattr(torch.cpu, probe, lambda: False)())
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    assert sampling_dtype("auto", cpu) == (torch.bfloat16 if fast else torch.float32)
    assert sampling_dtype("float32", cpu) == torch.float32
    assert sampling_dtype("bfloat16", cpu) == torch.bfloat16


@pytest.mark.parametrize("rows", [64, 4096])  # 4,096 rows: the exact sum runs over input slices
def test_split_linear_keeps_exact_columns_in_fp32(rows):
    torch.manual_seed(0)
    layer = torch.nn.Linear(300, 40)
    h = torch.randn(rows, 300).bfloat16()
    exact = torch.tensor([0, 7, 39])
    out = linear_split_t(layer, h.t(), exact)
    assert out.dtype == torch.float32 and out.shape == (rows, 40)
    reference = layer(h.float()).detach()
    # exact columns: fp32 products of the bf16 inputs; the others rounded through bf16
    assert torch.allclose(out[:, exact], reference[:, exact], rtol=0, atol=1e-5)
    rest = [c for c in range(40) if c not in exact.tolist()]
    assert (out[:, rest] - reference[:, rest]).abs().max() < 0.05
    assert not torch.equal(out[:, rest], reference[:, rest])
    # a contiguous transposed input gives the same numbers as a transposed view
    assert torch.allclose(linear_split_t(layer, h.t().contiguous(), exact), out, atol=1e-5)
    assert torch.equal(mlp_no_grad(torch.nn.Sequential(layer), h.float(), torch.float32), layer(h.float()))


def test_split_linear_without_bias_and_with_every_column_exact():
    torch.manual_seed(1)
    layer = torch.nn.Linear(200, 6, bias=False)
    h = torch.randn(3000, 200).bfloat16()
    with torch.no_grad():
        reference = layer(h.float())
        every = linear_split_t(layer, h.t(), torch.arange(6))
        assert torch.allclose(every, reference, rtol=0, atol=1e-5)
        low = linear_split_t(layer, h.t(), None, widen=False)  # no exact column, not widened
    assert low.dtype == torch.bfloat16 and (low.float() - reference).abs().max() < 0.05


@pytest.mark.parametrize("fused", [True, False])
def test_bf16_mlp_matches_fp32_with_and_without_the_fused_kernel(fused, monkeypatch):
    """The hidden Linear+ReLU pairs of a bf16 pass run as one oneDNN kernel where the build has
    it (probed once); with it or without it the outputs are fp32's within bf16 rounding."""
    from synthkit.nn import precision

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96), torch.nn.ReLU(),
        torch.nn.Linear(96, 30),
    )
    x = torch.randn(2000, 128)
    if fused and not precision.fused_linear_relu(x.bfloat16()):
        pytest.skip("this PyTorch build has no fused oneDNN linear + ReLU on this CPU")
    monkeypatch.setitem(precision._FUSED, "cpu", fused)
    with torch.no_grad():
        want = mlp(x)
        got = mlp_no_grad(mlp, x, torch.bfloat16, torch.tensor([0, 29]))
    assert got.dtype == torch.float32 and got.shape == (2000, 30)
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert precision.fused_linear_relu(x) is False  # fp32 never takes the bf16 kernel


def test_ctgan_bf16_generator_pass_matches_fp32():
    torch.manual_seed(0)
    net = CTGANGeneratorNet(170, (256, 256), 60)
    net.train()
    net(torch.randn(512, 170))  # BatchNorm running statistics
    net.eval()
    x = torch.randn(1000, 170)
    with torch.no_grad():
        full = net.forward_no_grad(x)
        low = net.forward_no_grad(x, torch.bfloat16, torch.tensor([0, 1, 2]))
    assert not torch.isnan(low).any()
    assert torch.allclose(full, net(x).detach(), atol=1e-4)  # the fp32 fast path is exact
    assert (low - full).abs().max() < 0.1 * full.abs().max()
    assert (low[:, :3] - full[:, :3]).abs().mean() < (low[:, 3:] - full[:, 3:]).abs().mean()


@pytest.mark.parametrize("family", ["tabular/ctgan", "tabular/tvae"])
def test_bf16_samples_match_fp32_samples(family, wage_small):
    gen = sk.create(family, epochs=5, seed=0, progress=False).fit(wage_small)
    fp32 = gen.sample(3000, seed=1)
    gen.config = gen.config.model_copy(update={"sample_precision": "bfloat16"})
    bf16 = gen.sample(3000, seed=1)
    assert bf16.schema == fp32.schema and bf16.height == 3000
    assert bf16.equals(gen.sample(3000, seed=1))  # reproducible
    for column in ("age", "wage"):
        a, b = fp32[column].cast(pl.Float64), bf16[column].cast(pl.Float64)
        assert abs(a.mean() - b.mean()) < 0.02 * a.std()
    shares = [df["education"].value_counts(normalize=True).sort("education")["proportion"] for df in (fp32, bf16)]
    assert (shares[0] - shares[1]).abs().max() < 0.02
    # continuous values are not snapped to bf16's grid
    assert bf16["wage"].n_unique() > 0.9 * fp32["wage"].n_unique()


def test_ctgan_trains_with_bf16_products_where_told(wage_small, monkeypatch):
    """With train_precision="bfloat16" (or the default "auto" on a CPU) where bf16 is fast, both
    networks multiply in bf16 (weights cast once per step, fp32 masters); with "float32" in fp32.
    Both runs learn and sample alike."""
    import synthkit.generators.tabular.ctgan as ctgan_module
    import synthkit.nn.trainer as trainer_module

    seen: list[torch.dtype] = []
    forward = ctgan_module.CTGANGeneratorNet.forward

    def spy(self, x, dtype=torch.float32, weights=None):
        if self.training:  # not the coverage probe or sampling, which run in eval mode
            seen.append(dtype)
        return forward(self, x, dtype, weights)

    monkeypatch.setattr(ctgan_module.CTGANGeneratorNet, "forward", spy)
    monkeypatch.setattr(trainer_module, "fast_bf16", lambda device: True)
    options = {"epochs": 3, "seed": 0, "progress": False, "batch_size": 100}
    low = sk.create("tabular/ctgan", train_precision="bfloat16", **options).fit(wage_small)
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    sk.create("tabular/ctgan", **options).fit(wage_small)  # "auto" on a CPU
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    full = sk.create("tabular/ctgan", train_precision="float32", **options).fit(wage_small)
    assert set(seen) == {torch.float32}
    for gen in (low, full):
        history = gen.fit_report_["training"]["history"]
        assert all(np.isfinite([h["loss_d"], h["loss_g"]]).all() for h in history)
        assert (gen.sample(200, conditions={"jobclass": "2. Information"}, seed=1)
                ["jobclass"] == "2. Information").all()
    # the same seed draws the same noise: the two runs' weights differ only by rounding
    a = dict(low.generator_net_.named_parameters())
    b = dict(full.generator_net_.named_parameters())
    assert all((a[k] - b[k]).abs().max() < 0.05 for k in a)


def test_auto_training_precision_is_bf16_on_a_cpu_only(monkeypatch):
    """"auto" asks for bf16 products on a CPU; a CUDA device keeps its fp32 step (autocast)."""
    import synthkit.nn.device as device_module
    from synthkit.generators.neural import trains_in_bf16

    assert trains_in_bf16("auto", "cpu") and trains_in_bf16("bfloat16", "cpu")
    assert not trains_in_bf16("float32", "cpu")
    monkeypatch.setattr(device_module, "resolve_device", lambda device, **_: torch.device("cuda"))
    assert not trains_in_bf16("auto", "auto") and trains_in_bf16("bfloat16", "auto")


def test_mlp_output_stays_in_its_dtype_only_when_asked():
    from synthkit.nn.precision import mlp_no_grad

    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.randn(10, 6)
    with torch.no_grad():
        low = mlp_no_grad(net, x, torch.bfloat16, widen=False)
        wide = mlp_no_grad(net, x, torch.bfloat16)
        exact = mlp_no_grad(net, x, torch.bfloat16, torch.tensor([0]), widen=False)
    assert low.dtype == torch.bfloat16 and wide.dtype == exact.dtype == torch.float32
    assert torch.equal(low.float(), wide)


def _denormals_flushed() -> bool:
    return float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) == 0.0


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="CPU cannot flush denormals")
def test_training_and_sampling_flush_denormals_and_restore_the_mode(wage_small, monkeypatch):
    """Denormal arithmetic is tens of times slower on x86: the Trainer's loop and the samplers
    treat denormals as zero, and leave the caller's mode as it was."""
    from synthkit.nn.precision import flush_denormals

    assert not _denormals_flushed()
    with flush_denormals():
        assert _denormals_flushed()
    assert not _denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            pass
        assert _denormals_flushed()  # the caller's choice survives
    finally:
        torch.set_flush_denormal(False)

    import synthkit.generators.tabular.tvae as tvae_module

    seen: list[bool] = []
    step = tvae_module.TVAETrainingTask.train_step

    def spy(self, batch, ctx):
        seen.append(_denormals_flushed())
        return step(self, batch, ctx)

    monkeypatch.setattr(tvae_module.TVAETrainingTask, "train_step", spy)
    gen = sk.create("tabular/tvae", epochs=1, seed=0, progress=False).fit(wage_small)
    assert seen and all(seen) and not _denormals_flushed()
    gen.sample(100, seed=0)
    assert not _denormals_flushed()
