"""Tiny torch networks for the certificate tests, and the adversary that maximises ||J(D)||.

Every activation is an :class:`Act`: it applies its function, or, when ``mask``
is set, multiplies by that fixed slope pattern ``D``. With masks the network is
affine, and ``J(D)`` is its (dense) Jacobian. The expansion certificate bounds
``||J(D)||`` for *every* ``D`` with entries in the activations' slope intervals
(reachable or not); ``||J(D)||`` is convex in each entry, so the maximum is at a
vertex, and :func:`max_pattern_norm` searches vertices by sign-of-gradient
ascent from random starts: any value it finds must stay below the certificate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

INTERVALS = {"relu": (0.0, 1.0), "leaky": (0.1, 1.0), "silu": (-0.0998, 1.0998), "prelu": None}


class Act(nn.Module):
    def __init__(self, kind: str, channels: int = 1):
        super().__init__()
        self.kind = kind
        self.mask = None
        if kind == "prelu":
            self.prelu = nn.PReLU(channels)
            with torch.no_grad():
                self.prelu.weight.copy_(torch.linspace(-0.5, 0.6, channels, dtype=torch.float64))
        self.fn = {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.1), "silu": nn.SiLU()}.get(kind)

    def interval(self, shape):
        if self.kind == "prelu":
            a = self.prelu.weight.detach().reshape(1, -1, *([1] * (len(shape) - 2)))
            lo, hi = torch.minimum(a, torch.ones_like(a)), torch.maximum(a, torch.ones_like(a))
            return lo.expand(shape), hi.expand(shape)
        lo, hi = INTERVALS[self.kind]
        return torch.full(shape, lo, dtype=torch.float64), torch.full(shape, hi, dtype=torch.float64)

    def forward(self, x):
        if self.mask is not None:
            return x * self.mask
        return self.prelu(x) if self.kind == "prelu" else self.fn(x)


def acts(model):
    return [m for m in model.modules() if isinstance(m, Act)]


def record_shapes(model, x):
    shapes = {}
    hooks = [a.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, tuple(o.shape))) for a in acts(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def jac_norm(model, x0) -> tuple[float, np.ndarray, np.ndarray]:
    jac = torch.autograd.functional.jacobian(lambda v: model(v).reshape(-1), x0).reshape(-1, x0.numel())
    u, s, vt = np.linalg.svd(jac.detach().numpy())
    return float(s[0]), u[:, 0], vt[0]


def max_pattern_norm(model, x, starts: int = 4, rounds: int = 6, seed: int = 0) -> float:
    """Largest ||J(D)|| found over vertex patterns D (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    layers = acts(model)
    shapes = record_shapes(model, x)
    bounds = {a: a.interval(shapes[a]) for a in layers}
    best = 0.0
    x0 = torch.zeros_like(x)
    for _ in range(starts):
        for a in layers:
            lo, hi = bounds[a]
            pick = torch.rand(lo.shape, generator=gen, dtype=torch.float64) < 0.5
            a.mask = torch.where(pick, hi, lo)
        for _ in range(rounds):
            s, u, v = jac_norm(model, x0)
            best = max(best, s)
            for a in layers:
                a.mask = a.mask.clone().requires_grad_(True)
            out = model(torch.tensor(v, dtype=torch.float64).reshape(x.shape)).reshape(-1) - model(x0).reshape(-1)
            (torch.tensor(u) @ out).backward()
            for a in layers:
                lo, hi = bounds[a]
                a.mask = torch.where(a.mask.grad > 0, hi, lo).detach()
        best = max(best, jac_norm(model, x0)[0])
    for a in layers:
        a.mask = None
    return best


# -- the networks -------------------------------------------------------------------------------
class Chain(nn.Module):
    def __init__(self, act="relu", c=2, stride=1, pad=1, k=3, groups=1, bn=False, head=True, n=6):
        super().__init__()
        self.c1 = nn.Conv2d(1, c, k, stride=1, padding=pad)
        self.a1 = Act(act, c)
        self.c2 = nn.Conv2d(c, c, k, stride=stride, padding=pad, groups=groups if c % groups == 0 else 1)
        self.bn = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.a2 = Act(act, c)
        self.c3 = nn.Conv2d(c, c, k, stride=1, padding=pad)
        self.head = head
        if head:
            self.a3 = Act(act, c)
            with torch.no_grad():
                m = self.c3(self.c2(self.c1(torch.zeros(1, 1, n, n)))).numel()
            self.fc = nn.Linear(m, 3)

    def forward(self, x):
        y = self.c3(self.a2(self.bn(self.c2(self.a1(self.c1(x))))))
        if self.head:
            y = self.fc(torch.flatten(self.a3(y), 1))
        return y


class Residual(nn.Module):
    def __init__(self, act="relu", c=2, stride=2, concat=False, maxpool=False):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.a0 = Act(act, c)
        self.b1 = nn.Conv2d(c, c, 3, stride=stride, padding=1)
        self.a1 = Act(act, c)
        self.b2 = nn.Conv2d(c, c, 3, padding=1)
        self.short = nn.Conv2d(c, c, 1, stride=stride) if stride > 1 else nn.Identity()
        self.concat = concat
        self.a2 = Act(act, 2 * c if concat else c)
        self.pool = nn.MaxPool2d(2) if maxpool else nn.Identity()
        self.b3 = nn.Conv2d(2 * c if concat else c, c, 3, padding=1)
        self.a3 = Act(act, c)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        h = self.a0(self.stem(x))
        r = self.b2(self.a1(self.b1(h)))
        s = self.short(h)
        y = torch.cat([r, s], 1) if self.concat else r + s
        y = self.pool(self.a2(y))
        y = self.a3(self.b3(y) + y[:, : self.b3.out_channels])
        return self.fc(torch.flatten(self.gap(y), 1))


def randomise(model, seed: int):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "prelu" in name:
                continue
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (0.8 if p.ndim > 1 else 0.2))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
    return model.double().eval()
