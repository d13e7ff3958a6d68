"""The native (C++) TVAE training step and draws: built for this machine, the same gradients,
fits and draws as the Python code, off with SYNTHKIT_NATIVE=0, and clear errors where they cannot
be built."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from synthkit.cli import main
from synthkit.generators.tabular.tvae import TVAEGenerator
from synthkit.nn import native

FAST = {"epochs": 2, "batch_size": 100, "seed": 0, "progress": False}


@pytest.fixture(autouse=True)
def _built(native_built):
    """Every test here needs the build (skipped where no C++ compiler can make it)."""


def test_only_categories_or_only_numbers_match_autograd(wage_small):
    """Rows without alpha values (categories only) and without one-hot blocks (quantile
    numbers), and no hidden layer at all: the native step's gradients are autograd's."""
    from test_tvae import _autograd_and_written_out_grads

    cats = wage_small.select(pl.col(pl.String)).head(200)
    nums = wage_small.select("age", "wage").head(200)
    for table, dims in ((cats, (16,)), (cats, ()), (nums, (16, 8))):
        want, got = _autograd_and_written_out_grads(table, dims, torch.float32, native=True)
        for w, g in zip(want, got, strict=True):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)


def test_cpu_fit_runs_natively_and_learns_what_the_python_step_does(wage_small, monkeypatch):
    """A CPU fit takes the native step where it is built (the fit report says so); with
    SYNTHKIT_NATIVE=0 the Python step, with the same draws: losses agree to fp32 rounding."""
    fits = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("SYNTHKIT_NATIVE", flag)
        gen = TVAEGenerator(**FAST, train_precision="float32").fit(wage_small)
        fits[flag] = gen
    assert fits["1"].fit_report_["tvae"]["training_step"] == "native"
    assert fits["0"].fit_report_["tvae"]["training_step"] == "written-out"
    loss = [[r["loss"] for r in g.fit_report_["training"]["history"]] for g in fits.values()]
    assert np.allclose(loss[0], loss[1], rtol=1e-4)
    monkeypatch.setenv("SYNTHKIT_NATIVE", "1")
    low = TVAEGenerator(**FAST).fit(wage_small)  # bf16 products where bf16 is fast
    assert low.fit_report_["tvae"]["training_step"] == "native"
    assert low.sample(200, seed=0).height == 200


def test_asking_for_the_native_step_without_a_build_says_how_to_build(wage_small, tmp_path, monkeypatch):
    """native=True where nothing is built (an empty build folder) raises with the command to run."""
    from test_tvae import _autograd_and_written_out_grads

    monkeypatch.setenv("SYNTHKIT_NATIVE_DIR", str(tmp_path))
    native._load.cache_clear()
    try:
        assert native.load("tvae_step") is None
        with pytest.raises(native.NativeBuildError, match="synthkit native build"):
            _autograd_and_written_out_grads(wage_small.head(50), (8,), torch.float32, native=True)
    finally:
        native._load.cache_clear()


def test_a_failed_compile_raises_with_the_reason_and_leaves_no_library(tmp_path, monkeypatch):
    """No working compiler: a NativeBuildError that says training still works, and nothing
    loadable in the build folder."""
    monkeypatch.setenv("SYNTHKIT_NATIVE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    native._load.cache_clear()
    try:
        with pytest.raises(native.NativeBuildError, match="Training still works"):
            native.build("tvae_step")
        assert native.library("tvae_step") is None and native.load("tvae_step") is None
    finally:
        native._load.cache_clear()


def test_cli_status_and_build(monkeypatch):
    """`synthkit native status` names the build; `build` is a no-op where it exists;
    SYNTHKIT_NATIVE=0 shows as off."""
    runner = CliRunner()
    built = runner.invoke(main, ["native", "build"])
    assert built.exit_code == 0, built.output
    assert "built tvae_step" in built.output and "built draws" in built.output
    status = runner.invoke(main, ["native", "status"])
    assert status.exit_code == 0
    assert "tvae_step: built" in status.output and "draws: built" in status.output
    monkeypatch.setenv("SYNTHKIT_NATIVE", "0")
    off = runner.invoke(main, ["native", "status"])
    assert "SYNTHKIT_NATIVE=0" in off.output


@pytest.mark.parametrize(
    ("kind", "dtype", "shape"),
    [("normal", torch.bfloat16, (4096, 128)), ("normal", torch.float32, (1001, 67)),
     ("gumbel", torch.float32, (20, 4093))],
)
def test_native_draws_are_the_python_draws_bit_for_bit(monkeypatch, kind, dtype, shape):
    """The native quantile draws (draws.cpp) continue numpy's SFC64 stream and index the same
    table: a pass's values are the Python path's, bit for bit (an odd count included)."""
    from synthkit.nn.chunks import block_generator
    from synthkit.nn.draws import gumbel_draws, normal_draws

    assert native.load("draws") is not None

    def draw() -> torch.Tensor:
        gen = block_generator(5, 1, torch.device("cpu"))
        if kind == "normal":
            return normal_draws(shape, gen, "cpu", dtype)
        return gumbel_draws(shape, gen, "cpu")

    fast = draw()
    monkeypatch.setenv("SYNTHKIT_NATIVE", "0")
    slow = draw()
    assert fast.dtype == slow.dtype == dtype and fast.shape == slow.shape == shape
    assert torch.equal(fast.view(torch.int16) if dtype == torch.bfloat16 else fast,
                       slow.view(torch.int16) if dtype == torch.bfloat16 else slow)
