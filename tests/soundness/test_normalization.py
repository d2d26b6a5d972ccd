"""Normalisation layers: the eps-based global constant against dense Jacobians and reference secants.

The constant ``||diag(gamma) P|| / sqrt(eps)`` is claimed to be exact (attained
where a group is constant): every sampled Jacobian must lie below it, and the
Jacobian at a constant group must reach it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from onnx.reference import ReferenceEvaluator

from lipaudit.bounds.normalization import centred_scale_norm, standardize_constant
from tests.soundness.graphs import Net, assert_sound, certify


def _dense_centred(d, m) -> float:
    diag = np.repeat(np.asarray(d, dtype=np.float64), m)
    n = diag.size
    p = np.eye(n) - np.ones((n, n)) / n
    return float(np.linalg.norm(np.diag(diag) @ p, 2))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=7), st.lists(st.integers(1, 4), min_size=7, max_size=7))
def test_centred_scale_norm_matches_the_dense_matrix(d, m):
    m = m[: len(d)]
    exact = _dense_centred(d, m)
    bound = centred_scale_norm(np.array(d), np.array(m))
    assert bound >= exact * (1 - 1e-12)
    assert bound <= exact * (1 + 1e-5) + 1e-12


def _jacobian_norm(fn, x) -> float:
    j = torch.autograd.functional.jacobian(fn, x)
    return float(torch.linalg.matrix_norm(j.reshape(x.numel(), x.numel()), ord=2))


@pytest.mark.parametrize("eps", [1e-5, 1e-2, 0.5])
def test_layer_norm_constant_is_the_supremum_of_jacobian_norms(eps):
    gen = torch.Generator().manual_seed(0)
    n = 6
    gamma = torch.randn(n, generator=gen, dtype=torch.float64)

    def fn(v):
        return torch.nn.functional.layer_norm(v, (n,), weight=gamma, eps=eps)

    bound = standardize_constant(eps, gamma.numpy(), 1)
    worst = 0.0
    for scale in (1e-4, 1e-2, 0.1, 1.0, 10.0):
        for _ in range(20):
            x = torch.randn(n, generator=gen, dtype=torch.float64) * scale
            worst = max(worst, _jacobian_norm(fn, x))
    assert worst <= bound
    at_constant = _jacobian_norm(fn, torch.full((n,), 0.7, dtype=torch.float64))
    assert at_constant >= bound * (1 - 1e-5)  # attained: no smaller global constant exists


def _run(model, x):
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def _tightness_secant(model, shape, direction, t=1e-3):
    """The secant at a constant input along ``direction``: the Jacobian there reaches the constant.

    ``t`` is small against sqrt(eps) (the secant is then within 1e-4 of the Jacobian) and large enough for
    reference kernels that compute statistics in float32 (GroupNormalization's stash_type).
    """
    x0 = np.full(shape, 0.3)
    u = (direction / np.linalg.norm(direction)).reshape(shape)
    diff = _run(model, x0 + t * u) - _run(model, x0 - t * u)
    return float(np.linalg.norm(diff) / (2 * t))


def _top_direction(d, m, shape):
    diag = np.repeat(d, m)
    n = diag.size
    p = np.eye(n) - np.ones((n, n)) / n
    return np.linalg.svd(np.diag(diag) @ p)[2][0]


def test_layer_normalization_node_is_sound_and_tight():
    rng = np.random.default_rng(1)
    net = Net(opset=17)
    x = net.input((1, 3, 4), name="x")
    gamma = rng.standard_normal(4)
    y = net.op("LayerNormalization", [x, net.const(gamma), net.const(rng.standard_normal(4))], axis=-1, epsilon=0.01)
    model = net.build([y])
    value = assert_sound(model, [y], points=2)
    direction = np.zeros((1, 3, 4))
    direction[0, 1] = _top_direction(gamma, 1, (4,))
    secant = _tightness_secant(model, (1, 3, 4), direction.ravel())
    assert secant <= value <= secant * 1.001


def test_layer_normalization_over_two_axes_with_broadcast_scale():
    rng = np.random.default_rng(2)
    net = Net(opset=17)
    x = net.input((1, 2, 3, 4), name="x")
    gamma = rng.standard_normal((3, 1)) * 2
    y = net.op("LayerNormalization", [x, net.const(gamma)], axis=2, epsilon=0.05)
    model = net.build([y])
    value = assert_sound(model, [y], points=2)
    direction = np.zeros((1, 2, 3, 4))
    direction[0, 0] = _top_direction(gamma.ravel(), 4, (3, 4)).reshape(3, 4)
    secant = _tightness_secant(model, (1, 2, 3, 4), direction.ravel())
    assert secant <= value <= secant * 1.001


@pytest.mark.parametrize("opset", [21])  # GroupNormalization-18 is deprecated: onnx.checker refuses it
def test_group_normalization_is_sound_and_tight(opset):
    rng = np.random.default_rng(3)
    net = Net(opset=opset)
    x = net.input((1, 4, 2, 2), name="x")
    n_scale = 2 if opset == 18 else 4
    gamma = rng.standard_normal(n_scale)
    y = net.op("GroupNormalization", [x, net.const(gamma), net.const(rng.standard_normal(n_scale))],
               num_groups=2, epsilon=0.02)
    model = net.build([y])
    value = assert_sound(model, [y], points=2)
    per_entry = np.repeat(gamma, 4 if opset == 18 else 1)  # per group (18) or per channel (21), over 2x2
    best = 0.0
    for g in range(2):
        d = per_entry[g * (1 if opset == 18 else 2):(g + 1) * (1 if opset == 18 else 2)]
        m = 8 if opset == 18 else 4
        direction = np.zeros((1, 4, 2, 2))
        direction[0, 2 * g:2 * g + 2] = _top_direction(d, m, None).reshape(2, 2, 2)
        best = max(best, _tightness_secant(model, (1, 4, 2, 2), direction.ravel()))
    # the reference kernel computes the statistics in float32 (stash_type=1): the secant carries ~1e-5 noise
    assert best * (1 - 1e-4) <= value <= best * 1.001
    # float64 dense Jacobians (torch): below the constant everywhere sampled, and reaching it at a constant input
    gamma_c = torch.tensor(np.repeat(gamma, 2) if opset == 18 else gamma)

    def fn(v):
        return torch.nn.functional.group_norm(v.reshape(1, 4, 2, 2), 2, weight=gamma_c, eps=0.02).reshape(-1)

    gen = torch.Generator().manual_seed(0)
    samples = [torch.randn(16, generator=gen, dtype=torch.float64) * s for s in (0.01, 0.1, 1.0) for _ in range(5)]
    assert max(_jacobian_norm(fn, v) for v in samples) <= value
    assert _jacobian_norm(fn, torch.full((16,), 0.3, dtype=torch.float64)) >= value * (1 - 1e-5)


def test_instance_normalization_is_sound_and_tight():
    rng = np.random.default_rng(4)
    net = Net(opset=17)
    x = net.input((1, 3, 2, 3), name="x")
    gamma = rng.standard_normal(3)
    y = net.op("InstanceNormalization", [x, net.const(gamma), net.const(rng.standard_normal(3))], epsilon=0.03)
    model = net.build([y])
    value = assert_sound(model, [y], points=2)
    assert value == pytest.approx(np.max(np.abs(gamma)) / math.sqrt(0.03), rel=1e-5)
    _, result = certify(model, outputs=[y])
    assert any(code == "LIP014" for code, _, _ in result.node_notes)


def test_nonpositive_eps_and_input_dependent_scale_are_refused():
    net = Net(opset=17)
    x = net.input((1, 2, 4), name="x")
    y = net.op("LayerNormalization", [x, net.const(np.ones(4))], epsilon=0.0)
    value, result = certify(net.build([y]), outputs=[y])
    assert value is None and "epsilon" in result.refusals[0].reason


# -- the spelled-out form of older exporters ------------------------------------------------

def _decomposed(variant: str, eps=1e-3, axes=(2,), var_axes=None, exponent=2.0, shape=(1, 2, 5)):
    net = Net(opset=13)
    x = net.input(shape, name="x")
    mean = net.op("ReduceMean", [x], axes=list(axes))
    d = net.op("Sub", [x, mean])
    sq = net.op("Mul", [d, d]) if variant == "mul" else net.op("Pow", [d, net.const(np.array(exponent))])
    var = net.op("ReduceMean", [sq], axes=list(var_axes or axes))
    ve = net.op("Add", [net.const(np.array(eps)), var] if variant == "mul" else [var, net.const(np.array(eps))])
    if variant in ("div", "mul"):
        y = net.op("Div", [d, net.op("Sqrt", [ve])])
    elif variant == "pow":
        y = net.op("Div", [d, net.op("Pow", [ve, net.const(np.array(0.5))])])
    elif variant == "rsqrt":
        y = net.op("Mul", [net.op("Reciprocal", [net.op("Sqrt", [ve])]), d])
    elif variant == "pow_inv":
        y = net.op("Mul", [d, net.op("Pow", [ve, net.const(np.array(-0.5))])])
    else:
        raise ValueError(variant)
    out = net.op("Add", [net.op("Mul", [y, net.const(np.array([0.5, -2.0, 1.0, 1.5, 0.2]))]), net.const(np.ones(5))])
    return net.build([out]), out


@pytest.mark.parametrize("variant", ["div", "mul", "pow", "rsqrt", "pow_inv"])
def test_decomposed_standardisation_is_certified_soundly(variant):
    model, out = _decomposed(variant)
    value = assert_sound(model, [out], points=2)
    assert value == pytest.approx(2.0 / math.sqrt(1e-3), rel=1e-5)  # 1/sqrt(eps) times max|gamma|
    _, result = certify(model, outputs=[out])
    assert any(code == "LIP014" for code, _, _ in result.node_notes)
    assert not any("no global Lipschitz constant" in r.reason for r in result.refusals)


@pytest.mark.parametrize("change", [dict(var_axes=(1,)), dict(exponent=3.0), dict(eps=0.0), dict(eps=-1e-3)])
def test_decomposed_lookalikes_are_refused(change):
    model, out = _decomposed("div", **change)
    value, result = certify(model, outputs=[out])
    assert value is None and result.refusals


def test_torch_exports_of_layer_norm_before_and_after_opset_17_get_the_same_certificate(tmp_path):
    """torch's exporter spells LayerNorm out (ReduceMean/Sub/Pow/Sqrt/Div) below opset 17, and GELU as erf."""
    import onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8, eps=1e-3), torch.nn.GELU(),
                                torch.nn.Linear(8, 3)).eval()
    values = {}
    for opset in (16, 17):
        path = tmp_path / f"ln{opset}.onnx"
        torch.onnx.export(model, (torch.randn(1, 6),), str(path), dynamo=False, opset_version=opset)
        proto = onnx.load(str(path))
        ops = {n.op_type for n in proto.graph.node}
        assert ("LayerNormalization" in ops) == (opset == 17)
        values[opset], _ = certify(proto)  # float32 models: soundness is checked on the float64 graphs above
    assert values[16] is not None
    assert values[16] == pytest.approx(values[17], rel=1e-5)  # gamma = 1: ||diag(gamma) P|| = max|gamma|
