"""The expansion certificate against brute force on tiny networks.

For every network: ``max_D ||J(D)||`` found by the pattern adversary (over all
slope patterns, reachable or not) <= certified (with the expansion) <= product.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from tests.certificate import nets  # noqa: E402


def certify(model, n, tmp_path, name="m", budget=None, keep_bn=True):
    from lipaudit.engine import AuditSettings, audit
    from lipaudit.loaders.onnx import load_onnx
    from tests.conftest import export_onnx

    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    path = export_onnx(model, x, tmp_path / f"{name}.onnx", keep_bn=keep_bn)
    graph = load_onnx(path)
    result = audit(graph, AuditSettings(method="certified", expansion=budget, jobs=1))
    return result.network["certified"]


CASES = [
    ("relu-chain", lambda n: nets.Chain(n=n, act="relu"), 6),
    ("relu-stride", lambda n: nets.Chain(n=n, act="relu", stride=2), 7),
    ("leaky-chain-bn", lambda n: nets.Chain(n=n, act="leaky", bn=True), 5),
    ("prelu-chain", lambda n: nets.Chain(n=n, act="prelu", c=3), 5),
    ("silu-chain", lambda n: nets.Chain(n=n, act="silu"), 5),
    ("depthwise", lambda n: nets.Chain(n=n, act="relu", c=3, groups=3), 5),
    ("no-pad", lambda n: nets.Chain(n=n, act="relu", pad=0), 8),
    ("spatial-output", lambda n: nets.Chain(n=n, act="relu", head=False), 4),
    ("smallest-border", lambda n: nets.Chain(n=n, act="relu", stride=2), 3),
    ("residual", lambda n: nets.Residual("relu"), 6),
    ("residual-odd", lambda n: nets.Residual("leaky", stride=2), 5),
    ("concat", lambda n: nets.Residual("relu", concat=True, stride=1), 4),
    ("maxpool-break", lambda n: nets.Residual("relu", maxpool=True, stride=1), 6),
    ("conv-conv-no-activation", lambda n: _seq(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1),
                                                nets.Act("relu"), nn.Conv2d(2, 2, 3, padding=1)), 4),
    ("reflect-circular-pads", lambda n: _seq(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nets.Act("relu"),
                                              nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), nets.Act("relu"),
                                              nn.Conv2d(2, 2, 3, padding=1)), 5),
    ("avgpool", lambda n: _seq(nn.Conv2d(1, 2, 3, padding=1), nets.Act("relu"), nn.AvgPool2d(2),
                                nn.Conv2d(2, 2, 3, padding=1), nets.Act("relu"), nn.Conv2d(2, 2, 1)), 6),
    ("dilated-even-stride", lambda n: _seq(nn.Conv2d(1, 2, 3, padding=2, dilation=2), nets.Act("leaky"),
                                            nn.Conv2d(2, 3, 3, stride=2, padding=1), nets.Act("relu"),
                                            nn.Conv2d(3, 2, 2, stride=2)), 7),
]


def _seq(*layers):
    return nn.Sequential(*layers)


CASES.append(("bn-folded-by-exporter", lambda n: nets.Chain(n=n, act="relu", bn=True, stride=2), 6))


@pytest.mark.parametrize("name,make,n", CASES, ids=[c[0] for c in CASES])
def test_expansion_bounds_every_pattern(name, make, n, tmp_path):
    model = nets.randomise(make(n), seed=len(name))
    cert = certify(model, n, tmp_path, name, keep_bn="folded" not in name)
    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    worst = nets.max_pattern_norm(model, x, starts=3, rounds=4, seed=1)
    assert cert.expansion is not None
    assert worst <= cert.value * (1 + 1e-9), (name, worst, cert.value, cert.expansion)
    assert cert.value <= cert.product * (1 + 1e-12)
    # the certificate is the product's or tighter, never looser
    assert cert.value <= cert.expansion["expansion"] * (1 + 1e-12) or cert.value == cert.product


def test_linear_segments_compose_before_their_norm(tmp_path):
    """conv -> BN -> conv with no activation: one segment, whose norm is far below the product of the two."""
    model = nets.randomise(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nets.Act("relu", 3),
                                         nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1)), seed=3)
    cert = certify(model, 6, tmp_path)
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    worst = nets.max_pattern_norm(model, x, starts=2, rounds=3)
    assert worst <= cert.value <= 1.5 * worst
    assert cert.value <= cert.product


def test_budget_zero_is_the_product(tmp_path):
    model = nets.randomise(nets.Residual("relu"), seed=2)
    cert = certify(model, 6, tmp_path, budget=0)
    assert cert.expansion is None and cert.product is None


def test_dense_network_and_an_intermediate_output(tmp_path):
    """An MLP (rows only, no torus) and --output at a spatial value inside a residual net."""
    from lipaudit.engine import AuditSettings, audit
    from lipaudit.loaders.onnx import load_onnx
    from tests.conftest import export_onnx

    mlp = nets.randomise(nn.Sequential(nn.Linear(12, 10), nets.Act("relu"), nn.Linear(10, 10), nets.Act("leaky"),
                                       nn.Linear(10, 3)), seed=9)
    x = torch.zeros(1, 12, dtype=torch.float64)
    graph = load_onnx(export_onnx(mlp, x, tmp_path / "mlp.onnx"))
    cert = audit(graph, AuditSettings(method="certified", jobs=1)).network["certified"]
    worst = nets.max_pattern_norm(mlp, x, starts=3, rounds=4)
    assert worst <= cert.value <= cert.product and cert.expansion["splits"] == 2

    res = nets.randomise(nets.Residual("relu"), seed=11)
    graph = load_onnx(export_onnx(res, torch.zeros(1, 1, 6, 6, dtype=torch.float64), tmp_path / "res.onnx"))
    add = next(n for n in graph.nodes if n.op == "Add")
    cert = audit(graph, AuditSettings(method="certified", outputs=(add.outputs[0],), jobs=1)).network["certified"]
    head = lambda v: res.b2(res.a1(res.b1(res.a0(res.stem(v))))) + res.short(res.a0(res.stem(v)))  # noqa: E731
    model = nn.Module()
    model.forward = head
    for name in ("a0", "a1"):
        setattr(model, name, getattr(res, name))
    worst = nets.max_pattern_norm(model, torch.zeros(1, 1, 6, 6, dtype=torch.float64), starts=3, rounds=4)
    assert worst <= cert.value <= cert.product


def test_a_cut_conv_with_a_folded_batchnorm_is_not_counted_twice(tmp_path):
    """conv -> conv (cut: padded read of a conv output) -> BN (folded into the cut conv) -> ReLU -> conv.

    The product walk's constant for the cut conv's output already holds the BN scale; the expansion
    must not take it as that value's constant and multiply by the BN again.
    """
    model = nets.randomise(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1),
                                         nn.BatchNorm2d(2), nets.Act("relu"), nn.Conv2d(2, 2, 3, padding=1)), seed=8)
    with torch.no_grad():
        model[2].weight.fill_(0.05)  # BN scales far below 1: counting them twice would undercut the truth
    cert = certify(model, 5, tmp_path)
    worst = nets.max_pattern_norm(model, torch.zeros(1, 1, 5, 5, dtype=torch.float64), starts=3, rounds=4)
    assert worst <= cert.value <= cert.product
