"""The shared Trainer: batching, seeds, history, early stopping, checkpoints and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthkit.errors import ArtifactError, ConfigError
from synthkit.nn import (
    StepContext,
    Trainer,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)
from synthkit.nn.checkpoint import CHECKPOINT


class Regression(TrainingTask):
    """A tiny linear regression: easy to check that training really happens."""

    def __init__(self, seed: int = 0, stop_at: int | None = None) -> None:
        with seeded(seed):
            self.net = torch.nn.Linear(3, 1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.05)
        self.stop_at = stop_at
        self.batches: list[int] = []

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"adam": self.opt}

    def train_step(self, batch: torch.Tensor, ctx: StepContext):
        self.batches.append(batch.shape[0])
        with ctx.autocast():
            loss = torch.mean((self.net(batch[:, :3]).squeeze(1) - batch[:, 3]) ** 2)
        ctx.optimize(loss, self.opt)
        return {"loss": loss.detach()}

    def validation_loss(self, data: torch.Tensor, ctx: StepContext) -> float:
        return float(torch.mean((self.net(data[:, :3]).squeeze(1) - data[:, 3]) ** 2))

    def on_epoch_end(self, epoch: int, ctx: StepContext):
        if self.stop_at is not None and epoch + 1 == self.stop_at:
            raise KeyboardInterrupt  # a run killed after this epoch's checkpoint would be written
        return {"noise": float(torch.rand(1, generator=ctx.generator, device=ctx.device))}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=512)
    return np.column_stack([x, y]).astype(np.float32)


def test_training_lowers_the_loss_and_keeps_history(data) -> None:
    task = Regression()
    result = Trainer(epochs=20, batch_size=100, seed=0, progress=False).fit(task, data)
    assert result.epochs_run == 20 and len(result.history) == 20
    assert result.history[-1]["loss"] < 0.1 * result.history[0]["loss"]
    assert task.batches[:6] == [100, 100, 100, 100, 100, 12]
    assert result.device == "cpu" and result.resumed_from is None


def test_same_seed_same_weights(data) -> None:
    a, b = Regression(), Regression()
    Trainer(epochs=3, batch_size=64, seed=1, progress=False).fit(a, data)
    Trainer(epochs=3, batch_size=64, seed=1, progress=False).fit(b, data)
    assert torch.equal(a.net.weight, b.net.weight)


def test_resume_after_a_kill_matches_an_uninterrupted_run(data, tmp_path) -> None:
    straight = Regression()
    full = Trainer(epochs=6, batch_size=64, seed=2, progress=False).fit(straight, data)

    killed = Regression(stop_at=4)
    trainer = Trainer(epochs=6, batch_size=64, seed=2, progress=False,
                      checkpoint_dir=tmp_path, checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(killed, data, fingerprint="run-a")
    assert (tmp_path / CHECKPOINT).exists()

    resumed_task = Regression(seed=99)  # fresh weights: everything must come from the checkpoint
    resumed = trainer.fit(resumed_task, data, resume=True, fingerprint="run-a")
    assert resumed.resumed_from == 3 and resumed.epochs_run == 6 and len(resumed.history) == 6
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert torch.allclose(resumed_task.net.weight, straight.net.weight, atol=1e-6)
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-5)

    again = trainer.fit(Regression(seed=5), data, resume=True, fingerprint="run-a")
    assert again.epochs_run == 6 and again.resumed_from == 6  # a finished run resumes to itself
    with pytest.raises(ConfigError, match="another run"):
        trainer.fit(Regression(), data, resume=True, fingerprint="run-b")


def test_resume_without_a_checkpoint_starts_fresh(data, tmp_path) -> None:
    result = Trainer(epochs=2, batch_size=64, seed=0, progress=False, checkpoint_dir=tmp_path / "c").fit(
        Regression(), data, resume=True)
    assert result.resumed_from is None and result.epochs_run == 2


def test_corrupt_checkpoint_is_a_clear_error(data, tmp_path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="cannot be read"):
        Trainer(epochs=2, batch_size=64, progress=False, checkpoint_dir=tmp_path).fit(
            Regression(), data, resume=True)


def test_early_stopping_restores_the_best_weights(data) -> None:
    class Diverging(Regression):
        def train_step(self, batch, ctx):
            out = super().train_step(batch, ctx)
            if ctx.epoch >= 3:  # from epoch 4 on the weights are pushed away from the optimum
                with torch.no_grad():
                    self.net.weight.add_(0.5)
            return out

    task = Diverging()
    result = Trainer(epochs=30, batch_size=64, seed=0, progress=False, validation_fraction=0.2,
                     early_stopping_patience=3).fit(task, data)
    assert result.stopped_early and result.epochs_run < 30
    assert result.best_epoch == min(result.history, key=lambda h: h["val_loss"])["epoch"]
    val = torch.as_tensor(data[:100])
    best = min(h["val_loss"] for h in result.history)
    with torch.no_grad():
        assert task.validation_loss(val, None) < 2 * best + 0.5


def test_bad_settings_are_refused(data) -> None:
    with pytest.raises(ConfigError):
        Trainer(epochs=0, batch_size=10)
    with pytest.raises(ConfigError, match="validation"):
        Trainer(epochs=2, batch_size=10, early_stopping_patience=2)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError):
        Trainer(epochs=1, batch_size=10, progress=False).fit(Regression(), np.zeros((0, 4), np.float32))


def test_module_state_round_trip_and_mismatch(tmp_path) -> None:
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    load_module_state({"m": b}, module_state({"m": a}))
    assert torch.equal(a.weight, b.weight)
    from synthkit.artifacts import read_model_dir, write_model_dir

    norm = torch.nn.BatchNorm1d(4)  # has a 0-d buffer (num_batches_tracked)
    write_model_dir(tmp_path / "m", manifest={"generator": "x"}, tensors=module_state({"n": norm}))
    load_module_state({"n": torch.nn.BatchNorm1d(4)}, read_model_dir(tmp_path / "m").tensors)
    with pytest.raises(ArtifactError, match="do not fit"):
        load_module_state({"m": torch.nn.Linear(3, 2)}, {"m.weight": np.zeros((2, 3), np.float32)})
    with pytest.raises(ArtifactError, match="shape"):
        load_module_state({"m": torch.nn.Linear(3, 2)}, module_state({"m": torch.nn.Linear(4, 2)}))


@pytest.mark.gpu
def test_cuda_training_with_mixed_precision(data) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result = Trainer(epochs=5, batch_size=128, device="cuda", seed=0, progress=False).fit(Regression(), data)
    assert result.device.startswith("cuda") and result.history[-1]["loss"] < result.history[0]["loss"]


def test_step_dtype_is_bf16_only_when_asked_where_fast_and_without_dp(data, monkeypatch) -> None:
    import synthkit.nn.trainer as trainer_module
    from synthkit.nn.privacy import SGDBudget

    seen: list[torch.dtype] = []

    class Probe(Regression):
        def train_step(self, batch, ctx):
            seen.append(ctx.dtype)
            return super().train_step(batch, ctx)

    def run(**options) -> torch.dtype:
        seen.clear()
        Trainer(epochs=1, batch_size=256, progress=False, device="cpu", **options).fit(Probe(), data)
        assert len(set(seen)) == 1
        return seen[0]

    monkeypatch.setattr(trainer_module, "fast_bf16", lambda device: True)
    assert run(low_precision=True) == torch.bfloat16
    assert run() == torch.float32  # only when asked
    budget = SGDBudget(epsilon=1.0, delta=1e-5, max_grad_norm=1.0)
    assert not Trainer(epochs=1, batch_size=256, progress=False, device="cpu", dp=budget,
                       low_precision=True).low_precision
    monkeypatch.setattr(trainer_module, "fast_bf16", lambda device: False)
    assert run(low_precision=True) == torch.float32  # bf16 only where it is fast
