"""lipaudit.torch: tn_bound against the CLI's tn, a dense Jacobian and finite differences; tn_penalty."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import lipaudit
from lipaudit.bounds import ConvSpec, conv_bounds
from lipaudit.torch import canonical_kernels, conv_bn_pairs, folded_weight, reset_warm_starts, tn_bound, tn_penalty
from tests.bruteforce import conv_input_shape, dense_norm, torch_conv


def cli_tn(w: torch.Tensor, stride, dilation, groups, transpose=False) -> float:
    spec = ConvSpec(w.detach().double().numpy(), stride=stride, dilation=dilation, groups=groups, transpose=transpose)
    return conv_bounds(spec, ("tn",))["tn"].value


@st.composite
def conv_cases(draw):
    d = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    c_out = groups * draw(st.integers(1, 3))
    c_in_g = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 4 if d < 3 else 3)) for _ in range(d))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(d))
    seed = draw(st.integers(0, 10_000))
    return (c_out, c_in_g) + k, stride, dilation, groups, seed


@settings(max_examples=25, deadline=None, derandomize=True)
@given(conv_cases())
def test_value_equals_cli_tn(case):
    shape, stride, dilation, groups, seed = case
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    value = float(tn_bound(w, stride=stride, dilation=dilation, groups=groups))
    assert value == pytest.approx(cli_tn(w, stride, dilation, groups), rel=1e-3)


def test_canonical_kernels_match_numpy():
    from lipaudit.bounds.conv import canonical_kernels as np_canonical

    w = torch.randn(6, 2, 5, 4, dtype=torch.float64)
    for stride, dilation, groups in [((2, 3), (1, 1), 3), ((3, 2), (2, 1), 1), ((1, 1), (2, 2), 2)]:
        spec = ConvSpec(w.numpy(), stride=stride, dilation=dilation, groups=groups)
        np.testing.assert_array_equal(canonical_kernels(w, stride, dilation, groups).numpy(), np_canonical(spec))


@pytest.mark.parametrize("shape, stride, dilation, groups, transpose, size", [
    ((4, 3, 3, 3), (1, 1), (1, 1), 1, False, (5, 5)),
    ((4, 2, 3, 3), (2, 2), (1, 1), 2, False, (8, 8)),
    ((3, 2, 3), (1,), (2,), 1, False, (12,)),
    ((3, 4, 3, 3), (2, 2), (1, 1), 1, True, (4, 4)),  # transposed: (c_in, c_out, k, k)
])
def test_bound_above_dense_jacobian(shape, stride, dilation, groups, transpose, size):
    torch.manual_seed(1)
    w = torch.randn(*shape, dtype=torch.float64)
    d = len(size)
    pads = tuple(k // 2 for k in shape[2:]) * 2
    fn = torch_conv(w, stride=stride, dilation=dilation, groups=groups, pads=pads, transpose=transpose)
    exact = dense_norm(fn, conv_input_shape(w, groups, size, transpose=transpose))
    value = float(tn_bound(w, stride=stride, dilation=dilation, groups=groups, transpose=transpose))
    assert value >= exact * (1 - 1e-9)
    assert value == pytest.approx(cli_tn(w, stride, dilation, groups, transpose), rel=1e-3)
    assert d == w.dim() - 2


@pytest.mark.parametrize("shape, stride, dilation, groups", [
    ((4, 3, 3, 3), 1, 1, 1),
    ((4, 2, 3, 3), 2, 1, 2),
    ((6, 1, 3, 3), 1, 1, 6),       # depthwise
    ((3, 2, 5), 2, 2, 1),          # 1-D, stride and dilation
    ((2, 2, 2, 3, 2), 1, 1, 1),    # 3-D
    ((5, 3, 4, 2), (2, 1), 1, 1),  # non-square kernel, per-axis stride
])
def test_gradient_matches_finite_differences(shape, stride, dilation, groups):
    torch.manual_seed(2)
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=stride, dilation=dilation, groups=groups, iters=500, tol=1e-15)
    value = tn_bound(w, **kw)
    (grad,) = torch.autograd.grad(value, w)
    h = 1e-6
    for trial in range(3):
        e = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            # warm-started from w's maximiser, as in training: converges to the nearby maximum
            plus = float(tn_bound(w + h * e, key=w, **kw))
            minus = float(tn_bound(w - h * e, key=w, **kw))
        fd = (plus - minus) / (2 * h)
        assert fd == pytest.approx(float((grad * e).sum()), rel=1e-4, abs=1e-6), trial


def test_warm_start_is_used_and_agrees_with_cold(monkeypatch):
    import lipaudit.torch as lt

    reset_warm_starts()
    calls = []
    cold = lt._cold_start
    monkeypatch.setattr(lt, "_cold_start", lambda *a: calls.append(1) or cold(*a))
    w = torch.nn.Parameter(torch.randn(8, 8, 3, 3, dtype=torch.float64))
    first = tn_bound(w).item()
    assert len(calls) == 1
    with torch.no_grad():
        w.add_(1e-3 * torch.randn_like(w))  # an optimiser step
    warm = float(tn_bound(w))
    assert len(calls) == 1  # no cold start again
    reset_warm_starts()
    assert warm == pytest.approx(float(tn_bound(w)), rel=1e-5) and len(calls) == 2
    assert warm != first
    # another shape under the same key starts cold
    tn_bound(torch.randn(4, 8, 3, 3, dtype=torch.float64), key=w)
    assert len(calls) == 3


def test_zero_kernel_has_a_finite_gradient():
    w = torch.zeros(3, 2, 3, 3, requires_grad=True)
    value = tn_bound(w)
    value.backward()
    assert float(value) == 0.0 and torch.isfinite(w.grad).all()


def test_float32_and_device_of_result():
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    value = tn_bound(w)
    assert value.dtype == torch.float32 and value.device == w.device and value.requires_grad
    assert float(value) == pytest.approx(cli_tn(w, (1, 1), (1, 1), 1), rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda():
    w = torch.randn(4, 3, 3, 3, device="cuda", requires_grad=True)
    value = tn_bound(w)
    value.backward()
    assert value.device.type == "cuda" and w.grad.device.type == "cuda"
    assert float(value) == pytest.approx(cli_tn(w.cpu(), (1, 1), (1, 1), 1), rel=1e-3)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)  # no BN after it
        self.up = torch.nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.head(self.bn(self.up(torch.relu(self.conv(self.stem(x))))))


def _net():
    torch.manual_seed(3)
    net = Net().double()
    with torch.no_grad():
        for bn in (net.stem[1], net.bn):
            bn.running_var.uniform_(0.3, 3.0)
            bn.weight.uniform_(0.5, 2.0)
    return net


def test_penalty_pairs_and_folding():
    net = _net()
    pairs = [(name, bn is not None) for name, _, bn in conv_bn_pairs(net)]
    assert pairs == [("stem.0", True), ("conv", False), ("up", True), ("head", False)]
    reset_warm_starts()
    per_layer = tn_penalty(net, reduction="none")
    expected = [cli_tn(folded_weight(c, b).detach(), c.stride, c.dilation, c.groups, isinstance(c, torch.nn.ConvTranspose2d))
                for _, c, b in conv_bn_pairs(net)]
    np.testing.assert_allclose(per_layer.detach().numpy(), expected, rtol=1e-3)
    # folded: the stem's value is the TN of diag(gamma / sigma) K, not of K
    per_layer = per_layer.detach().numpy()
    assert per_layer[0] != pytest.approx(tn_bound(net.stem[0].weight.detach().clone()).item(), rel=1e-3)
    unfolded = tn_penalty(net, fold_bn=False, reduction="none").detach().numpy()
    assert unfolded[1] == pytest.approx(per_layer[1])
    assert tn_penalty(net).item() == pytest.approx(per_layer.sum())
    assert tn_penalty(net, reduction="log").item() == pytest.approx(np.log(per_layer).sum())


def test_penalty_equals_audited_tn_and_leaves_the_module_alone():
    net = _net().float()
    net.train()
    flags = [m.training for m in net.modules()]
    state = copy.deepcopy(net.state_dict())
    reset_warm_starts()
    penalty = tn_penalty(net, reduction="none")
    report = lipaudit.audit(net, input_shape=(1, 2, 8, 8))
    audited = [layer.values["tn"].value for layer in report.layers]
    np.testing.assert_allclose(penalty.detach().numpy(), audited, rtol=1e-3)
    # gradient reaches the conv weights and the BN scales
    penalty.sum().backward()
    assert net.stem[0].weight.grad.abs().sum() > 0 and net.stem[1].weight.grad.abs().sum() > 0
    assert net.bn.weight.grad.abs().sum() > 0 and net.stem[1].running_var.grad is None
    assert [m.training for m in net.modules()] == flags
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_penalty_training_step_lowers_it():
    net = _net().float()
    reset_warm_starts()
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    before = tn_penalty(net).item()
    for _ in range(5):
        opt.zero_grad()
        tn_penalty(net).backward()
        opt.step()
    assert tn_penalty(net).item() < before
