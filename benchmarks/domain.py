"""Domain certificates on squeeze-excite networks: with and without ``--input-range``, and against Jacobians.

Builds MobileNetV3- and EfficientNet-like networks in torch (random weights and BatchNorm
statistics, seeded; no torchvision needed, nothing downloaded), exports them to ONNX, and for each:
the audit without a domain (per-layer values, no network number: the gates have no global
constant), with ``--input-range -3,3``, the time of each, and the largest dense autograd Jacobian
norm found at random points and corners of the box (a lower bound on the true constant there).

    python benchmarks/domain.py [--size 64] [--blocks 4 10]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np


def build(kind: str, blocks: int):
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c, gate):
            super().__init__()
            s = max(c // 4, 8)
            self.pool, self.fc1, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1)
            self.act, self.gate = (nn.ReLU(), nn.Hardsigmoid()) if gate == "hard" else (nn.SiLU(), nn.Sigmoid())

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    act = nn.Hardswish if kind == "mobilenet_v3" else nn.SiLU
    gate = "hard" if kind == "mobilenet_v3" else "sigmoid"

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            e = cin * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, e, 1, bias=False), nn.BatchNorm2d(e), act(),
                nn.Conv2d(e, e, 3, stride, 1, groups=e, bias=False), nn.BatchNorm2d(e), act(), SE(e, gate),
                nn.Conv2d(e, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    torch.manual_seed(0)  # before any layer is built: the weights are drawn at construction
    widths = [16, 16, 24, 24, 40, 40, 40, 48, 96, 96, 96][: blocks + 1]
    strides = [2, 2, 1, 2, 1, 1, 1, 2, 1, 1]
    layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), act()]
    layers += [Block(widths[i], widths[i + 1], strides[i]) for i in range(blocks)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[blocks], 10)]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def jacobian_max(net, shape, points: int = 4, seed: int = 0) -> float:
    import torch

    net = net.double()
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-3, 3, shape) for _ in range(points)] + [np.where(rng.random(shape) < 0.5, -3.0, 3.0)]
    best = 0.0
    for x in xs:
        jac = torch.autograd.functional.jacobian(net, torch.as_tensor(x)).reshape(-1, int(np.prod(shape)))
        best = max(best, float(torch.linalg.matrix_norm(jac, ord=2)))
    return best


def _without_forms(run) -> float:
    """The domain certificate with the linear forms switched off (plain interval arithmetic), for comparison."""
    from lipaudit.ops import linear_forms

    saved, linear_forms.FORM_OPS = linear_forms.FORM_OPS, set()
    try:
        return run().network["certified"].value
    finally:
        linear_forms.FORM_OPS = saved


def main() -> None:
    import onnx
    import torch

    from lipaudit.engine import AuditSettings, audit
    from lipaudit.loaders.onnx import load_onnx_model
    from lipaudit.runner import input_domain

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--blocks", type=int, nargs="+", default=[4, 10])
    args = parser.parse_args()
    shape = (1, 3, args.size, args.size)
    print("| network | layers | without a domain | s | on [-3, 3] | s | on [-3, 3], interval arithmetic only "
          "| largest Jacobian found |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("mobilenet_v3", "efficientnet"):
        for blocks in args.blocks:
            net = build(kind, blocks)
            buf = io.BytesIO()
            torch.onnx.export(net, (torch.zeros(shape),), buf, dynamo=False, opset_version=17)
            model = onnx.load_from_string(buf.getvalue())
            cells = []
            for domain in (None, "-3,3"):
                t0 = time.perf_counter()
                result = audit(load_onnx_model(model, kind), AuditSettings(method="certified", input_range=input_domain(domain)))
                cert = result.network.get("certified")
                cells += [f"{cert.value:.3g}" if cert else "per-layer only", f"{time.perf_counter() - t0:.1f}"]
            cells.append(f"{_without_forms(lambda: audit(load_onnx_model(model, kind), AuditSettings(method='certified', input_range=input_domain('-3,3')))):.3g}")
            print(f"| {kind}, {blocks} SE blocks, {args.size}x{args.size} | {len(result.layers)} | {' | '.join(cells)} "
                  f"| {jacobian_max(net, shape):.3g} |")


if __name__ == "__main__":
    main()
