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


def certify(model, n, tmp_path, name="m", budget=None):
    from lipaudit.engine import AuditSettings, audit
    from lipaudit.loaders.onnx import load_onnx
    from tests.conftest import export_onnx

    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    path = export_onnx(model, x, tmp_path / f"{name}.onnx", keep_bn=True)
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


@pytest.mark.parametrize("name,make,n", CASES, ids=[c[0] for c in CASES])
def test_expansion_bounds_every_pattern(name, make, n, tmp_path):
    model = nets.randomise(make(n), seed=len(name))
    cert = certify(model, n, tmp_path, name)
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
