"""synthkit.nn.optim.adam_step: Adam's fused update called directly gives step()'s result."""

from __future__ import annotations

import copy

import pytest
import torch

from synthkit.generators.neural import adam
from synthkit.nn.flat import FlatParameters
from synthkit.nn.optim import adam_step


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(net: torch.nn.Module, opt: torch.optim.Optimizer, step, steps: int = 12, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 7, generator=gen)
        opt.zero_grad(set_to_none=True)
        net(x).square().mean().backward()
        step(opt)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_direct_fused_update_equals_step_weights_and_state():
    ref, fast = _net(), _net()
    opt_ref = adam(ref.parameters(), lr=2e-3, weight_decay=1e-5, betas=(0.5, 0.9))
    opt_fast = adam(fast.parameters(), lr=2e-3, weight_decay=1e-5, betas=(0.5, 0.9))
    assert opt_fast.param_groups[0]["fused"]  # the direct path is what runs
    _train(ref, opt_ref, lambda o: o.step())
    _train(fast, opt_fast, adam_step)
    assert _same(ref, fast)
    a, b = opt_ref.state_dict()["state"], opt_fast.state_dict()["state"]
    assert a.keys() == b.keys()
    for key in a:
        assert float(a[key]["step"]) == float(b[key]["step"]) == 12.0
        assert a[key]["step"].dtype == b[key]["step"].dtype
        assert torch.equal(a[key]["exp_avg"], b[key]["exp_avg"])
        assert torch.equal(a[key]["exp_avg_sq"], b[key]["exp_avg_sq"])


def test_resumed_optimizer_continues_as_step_would():
    """State restored from a checkpoint's state_dict is the state the direct call updates."""
    ref, fast = _net(), _net()
    opt_ref = adam(ref.parameters(), lr=1e-3)
    _train(ref, opt_ref, lambda o: o.step(), steps=5)
    fast.load_state_dict(ref.state_dict())
    opt_fast = adam(fast.parameters(), lr=1e-3)
    opt_fast.load_state_dict(copy.deepcopy(opt_ref.state_dict()))
    _train(ref, opt_ref, lambda o: o.step(), steps=5, seed=2)
    _train(fast, opt_fast, adam_step, steps=5, seed=2)
    assert _same(ref, fast)


def test_frozen_parameters_are_left_alone():
    ref, fast = _net(), _net()
    for net in (ref, fast):
        net[0].weight.requires_grad_(False)
    _train(ref, adam(ref.parameters(), lr=1e-3), lambda o: o.step())
    opt = adam(fast.parameters(), lr=1e-3)
    _train(fast, opt, adam_step)
    assert _same(ref, fast)
    assert fast[0].weight not in opt.state


@pytest.mark.parametrize("case", ["hook", "foreach", "amsgrad", "scheduler", "sgd"])
def test_optimizers_it_cannot_serve_exactly_take_step(case):
    net = _net()
    if case == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    elif case == "foreach":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
    elif case == "amsgrad":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True, amsgrad=True)
    else:
        opt = adam(net.parameters(), lr=1e-3)
    calls: list[int] = []
    if case == "hook":
        opt.register_step_post_hook(lambda *_: calls.append(1))
    if case == "scheduler":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    ref_net = copy.deepcopy(net)
    ref_opt = type(opt)(ref_net.parameters(), **opt.defaults)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=1, gamma=0.5) if case == "scheduler" else None
    for _ in range(3):
        _train(net, opt, adam_step, steps=1)
        _train(ref_net, ref_opt, lambda o: o.step(), steps=1)
        if case == "scheduler":
            sched.step()
            ref_sched.step()
    assert _same(net, ref_net)
    if case == "hook":
        assert calls == [1, 1, 1]
    if case == "scheduler":
        assert getattr(opt, "_opt_called", False)  # the scheduler saw its optimizer step


def _train_flat(net: torch.nn.Module, opt: torch.optim.Optimizer, flat: FlatParameters,
                steps: int = 12, seed: int = 1) -> None:
    """Autograd accumulates into the seated gradients in place (zeroed, not set to None)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 7, generator=gen)
        opt.zero_grad(set_to_none=False)
        net(x).square().mean().backward()
        adam_step(opt, flat)


def test_flat_update_equals_step_weights_and_state():
    ref, fast = _net(), _net()
    opt_ref = adam(ref.parameters(), lr=2e-3, weight_decay=1e-5, betas=(0.5, 0.9))
    opt_fast = adam(fast.parameters(), lr=2e-3, weight_decay=1e-5, betas=(0.5, 0.9))
    flat = FlatParameters(list(fast.parameters()))
    _train(ref, opt_ref, lambda o: o.step())
    _train_flat(fast, opt_fast, flat)
    assert flat.adam is not None and flat.intact()  # the one-call path ran throughout
    assert _same(ref, fast)
    a, b = opt_ref.state_dict()["state"], opt_fast.state_dict()["state"]
    for key in a:
        assert float(a[key]["step"]) == float(b[key]["step"]) == 12.0
        assert torch.equal(a[key]["exp_avg"], b[key]["exp_avg"])
        assert torch.equal(a[key]["exp_avg_sq"], b[key]["exp_avg_sq"])


def test_flat_state_saves_to_safetensors_and_resumes(tmp_path):
    """Views of one buffer are copied for safetensors; a loaded state is re-seated and the run
    continues as step() would."""
    from safetensors.torch import load_file, save_file

    from synthkit.nn.state import load_optimizer_state, optimizer_state

    ref, fast = _net(), _net()
    opt_ref, opt_fast = adam(ref.parameters(), lr=1e-3), adam(fast.parameters(), lr=1e-3)
    _train(ref, opt_ref, lambda o: o.step(), steps=5)
    _train_flat(fast, opt_fast, FlatParameters(list(fast.parameters())), steps=5)
    tensors, meta = optimizer_state("adam", opt_fast)
    save_file(tensors, str(tmp_path / "opt.safetensors"))
    resumed = _net(seed=3)
    resumed.load_state_dict(fast.state_dict())
    opt_resumed = adam(resumed.parameters(), lr=1e-3)
    load_optimizer_state(opt_resumed, load_file(str(tmp_path / "opt.safetensors")), meta)
    flat = FlatParameters(list(resumed.parameters()))
    _train(ref, opt_ref, lambda o: o.step(), steps=5, seed=2)
    _train_flat(resumed, opt_resumed, flat, steps=5, seed=2)
    assert flat.adam is not None
    assert _same(ref, resumed)


def test_flat_update_falls_back_when_unseated():
    """Gradients set to None (or a parameter moved) unseat the buffer: step()'s result still."""
    ref, fast = _net(), _net()
    opt_ref, opt_fast = adam(ref.parameters(), lr=1e-3), adam(fast.parameters(), lr=1e-3)
    flat = FlatParameters(list(fast.parameters()))
    _train(ref, opt_ref, lambda o: o.step(), steps=4)
    _train(fast, opt_fast, lambda o: adam_step(o, flat), steps=4)  # zero_grad(set_to_none=True)
    assert not flat.intact() and flat.adam is None
    assert _same(ref, fast)


def test_flat_parameters_views_and_reduced_precision_gradients():
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    flat = FlatParameters(list(net.parameters()), low=2)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    assert flat.data.numel() == sum(p.numel() for p in net.parameters())
    low = flat.views(torch.bfloat16)
    assert [v.shape for v in low] == [p.shape for p in net.parameters()]
    flat.refresh(torch.bfloat16)
    assert torch.equal(low[0], net[0].weight.detach().to(torch.bfloat16))
    with torch.no_grad():
        net[2].bias.add_(1.0)  # the parameters move (an optimizer step)...
    assert not torch.equal(low[3], net[2].bias.detach().to(torch.bfloat16))
    flat.refresh(torch.bfloat16)  # ...and one refresh brings the kept views along
    assert flat.views(torch.bfloat16)[3] is low[3]
    assert torch.equal(low[3], net[2].bias.detach().to(torch.bfloat16))
    assert flat.views(torch.float32)[0] is not None and flat.views(torch.float32)[0].data_ptr() == net[0].weight.data_ptr()
    grads = flat.low_grads(torch.bfloat16)
    assert len(grads) == 2 and grads[0].dtype == torch.bfloat16
    grads[0].fill_(0.5)
    grads[1].fill_(-2.0)
    flat.widen(torch.bfloat16)
    assert torch.all(net[0].weight.grad == 0.5) and torch.all(net[0].bias.grad == -2.0)
    assert flat.low_grads(torch.float32)[0] is net[0].weight.grad  # fp32: written in place
    net[0].weight.data = net[0].weight.detach().clone()  # a parameter re-seated elsewhere
    assert not flat.intact()
    frozen = _net()
    frozen[2].bias.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        FlatParameters(list(frozen.parameters()))
