"""Element-wise functions that exporters spell out as small subgraphs, recognised and bounded.

Each matcher reads the subgraph that produced a node's inputs (only default-domain
ops, only finite scalar constants) and returns the node's global Lipschitz
constant relative to one input-dependent value ``x``, or ``None`` when the
subgraph is not exactly the recognised function. Intermediate nodes of a
pattern (``Pow(x, 3)``, ``Sqrt(var + eps)``, ``Exp``) may be refused on their
own; the recognised node does not use their constants, only ``x``'s.

Gates ``x * s * (c + g(p(x)))``: the slope is ``s (c + h(t))`` with
``h = d/dx [x g(p(x))]``, whose range over the real line depends only on ``g``
(and, for a cubic ``p``, on the sign pattern and ratio of its coefficients),
never on the scale of ``x``. The ranges below are the extremes of ``h``, rounded
outward (checked against dense samples in tests/ops/test_patterns.py):

- ``sigmoid(k x)``: ``h = sigma(t) + t sigma'(t)``, t = kx, in [-0.099840, 1.099840];
- ``tanh(k x)``: ``tanh t + t sech^2 t`` in [-1.199679, 1.199679];
- ``erf(k x)``: ``erf t + (2/sqrt(pi)) t exp(-t^2)`` in [-1.257809, 1.257809];
- ``tanh(softplus(k x))`` (Mish): in [-0.112527, 1.088499];
- ``tanh(k1 x + k3 x^3)``, k1 k3 > 0 (tanh-GELU): ``h`` is odd; for ``x >= 0``, with
  ``t = p(x)``, ``x p'(x) in [t, 3t]``, so ``0 <= h <= tanh t + 3 t sech^2 t <= 2.031581``;
  with the GELU ratio ``k3 / k1^3 = 0.044715 pi / 2`` the extreme is 1.257987;
- ``hardsigmoid(k x)`` (alpha, beta): slopes lie in hull{0, 1, -beta, 2 - beta}.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops.context import Refusal
from lipaudit.values import SAFETY

DEFAULT = ("", "ai.onnx")

SIGMOID_GATE = (-0.09985, 1.09985)
TANH_GATE = (-1.19968, 1.19968)
ERF_GATE = (-1.257811, 1.257811)
MISH_GATE = (-0.11253, 1.08851)
TANH_GELU_GATE = (-1.25799, 1.25799)
TANH_CUBIC_GATE = (-2.03159, 2.03159)
TANH_GELU_RATIO = 0.044715 * math.pi / 2  # k3 / k1^3 for sqrt(2/pi) (x + 0.044715 x^3)

_MAX_DEPTH = 16


def producer(ctx, value: str):
    node = ctx.producers().get(value)
    if node is None or node.domain not in DEFAULT:
        return None
    return node


def scalar(ctx, value: str) -> float | None:
    """A finite constant of exactly one entry, as a float."""
    c = ctx.const(value)
    if c is None:
        return None
    c = np.asarray(c)
    if c.size != 1 or not np.issubdtype(c.dtype, np.number):
        return None
    v = float(c.reshape(()))
    return v if math.isfinite(v) else None


def strip_scale(ctx, value: str) -> tuple[float, str]:
    """Follow ``Mul``/``Div`` by finite scalar constants, ``Neg`` and ``Identity`` upstream: ``(signed scale, source)``."""
    scale = 1.0
    for _ in range(_MAX_DEPTH):
        node = producer(ctx, value)
        if node is None:
            break
        if node.op in ("Neg", "Identity"):
            scale, value = (-scale if node.op == "Neg" else scale), node.inputs[0]
            continue
        if node.op not in ("Mul", "Div") or len(node.inputs) < 2:
            break
        a, b = node.inputs[:2]
        ca, cb = scalar(ctx, a), scalar(ctx, b)
        if node.op == "Mul" and ca is not None:
            scale, value = scale * ca, b
        elif node.op == "Mul" and cb is not None:
            scale, value = scale * cb, a
        elif node.op == "Div" and cb is not None and cb != 0:
            scale, value = scale / cb, a
        else:
            break
    return scale, value


# -- polynomials in x ------------------------------------------------------------------

def polynomial(ctx, value: str, x: str, depth: int = 0, memo: dict | None = None) -> dict[int, float] | None:
    """``{power: coefficient}`` when ``value`` is a polynomial (degree <= 7) in ``x`` with scalar constants.

    ``memo`` keeps each value's answer within one call, so a long chain of sums is walked once.
    """
    memo = {} if memo is None else memo
    if value not in memo:
        memo[value] = _polynomial(ctx, value, x, depth, memo)
    return memo[value]


def _polynomial(ctx, value: str, x: str, depth: int, memo: dict) -> dict[int, float] | None:
    if value == x:
        return {1: 1.0}
    c = scalar(ctx, value)
    if c is not None:
        return {0: c} if c else {}
    node = producer(ctx, value)
    if node is None or depth > _MAX_DEPTH:
        return None
    ins = node.inputs
    if node.op in ("Identity", "Neg"):
        p = polynomial(ctx, ins[0], x, depth + 1, memo)
        return p if p is None or node.op == "Identity" else {k: -v for k, v in p.items()}
    if node.op in ("Add", "Sub", "Mul") and len(ins) == 2:
        p, q = polynomial(ctx, ins[0], x, depth + 1, memo), polynomial(ctx, ins[1], x, depth + 1, memo)
        if p is None or q is None:
            return None
        if node.op == "Mul":
            out: dict[int, float] = {}
            for i, a in p.items():
                for j, b in q.items():
                    out[i + j] = out.get(i + j, 0.0) + a * b
        else:
            sign = -1.0 if node.op == "Sub" else 1.0
            out = dict(p)
            for j, b in q.items():
                out[j] = out.get(j, 0.0) + sign * b
        out = {k: v for k, v in out.items() if v}
        return out if max(out, default=0) <= 7 else None
    if node.op == "Div" and len(ins) == 2:
        d = scalar(ctx, ins[1])
        p = polynomial(ctx, ins[0], x, depth + 1, memo)
        return None if p is None or not d else {k: v / d for k, v in p.items()}
    if node.op == "Pow" and len(ins) == 2:
        e = scalar(ctx, ins[1])
        p = polynomial(ctx, ins[0], x, depth + 1, memo)
        if p is None or e is None or e != int(e) or not 0 <= e <= 7:
            return None
        out = {0: 1.0}
        for _ in range(int(e)):
            nxt: dict[int, float] = {}
            for i, a in out.items():
                for j, b in p.items():
                    nxt[i + j] = nxt.get(i + j, 0.0) + a * b
            out = {k: v for k, v in nxt.items() if v}
        return out if max(out, default=0) <= 7 else None
    return None


def _linear_in(ctx, value: str, x: str) -> bool:
    """``value = k x`` for a scalar ``k`` (any sign, zero included)."""
    p = polynomial(ctx, value, x)
    return p is not None and set(p) <= {1}


# -- gates x * s * (c + g(p(x))) -------------------------------------------------------

def gate_range(ctx, gate: str, x: str, depth: int = 0) -> tuple[float, float, str] | None:
    """``(lo, hi, name)``: the range of ``d/dx [x * gate(x)]`` over the real line, or None."""
    if depth > _MAX_DEPTH:
        return None
    scale, inner = strip_scale(ctx, gate)
    node = producer(ctx, inner)
    if node is None:
        return None
    found = None
    if node.op in ("Add", "Sub") and len(node.inputs) == 2:
        a, b = node.inputs
        ca, cb = scalar(ctx, a), scalar(ctx, b)
        if cb is not None and ca is None:
            sub = gate_range(ctx, a, x, depth + 1)
            if sub is not None:
                shift = -cb if node.op == "Sub" else cb
                found = (sub[0] + shift, sub[1] + shift, sub[2])
        elif ca is not None and cb is None:
            sub = gate_range(ctx, b, x, depth + 1)
            if sub is not None:
                lo, hi = (-sub[1], -sub[0]) if node.op == "Sub" else sub[:2]
                found = (ca + lo, ca + hi, sub[2])
    elif node.op == "Sigmoid" and _linear_in(ctx, node.inputs[0], x):
        found = SIGMOID_GATE + ("x * sigmoid(k x) (SiLU family)",)
    elif node.op == "Erf" and _linear_in(ctx, node.inputs[0], x):
        found = ERF_GATE + ("x * erf(k x) (erf-GELU family)",)
    elif node.op == "HardSigmoid" and not node.attrs.keys() - {"alpha", "beta"} and _linear_in(ctx, node.inputs[0], x):
        beta = float(node.attrs.get("beta", 0.5))
        found = (min(0.0, -beta), max(1.0, 2.0 - beta), "x * hardsigmoid(k x) (HardSwish family)")
    elif node.op == "Tanh":
        found = _tanh_gate(ctx, node.inputs[0], x)
    elif node.op == "Clip":
        found = _clip_gate(ctx, node, x)
    if found is None:
        return None
    lo, hi = found[0] * scale, found[1] * scale
    return min(lo, hi), max(lo, hi), found[2]


def _clip_gate(ctx, node, x: str):
    """``x * clip(k x + b, m, M)`` (HardSwish as Paddle and relu6 exporters spell it: ``x * clip(x + 3, 0, 6) / 6``).

    Where the clip is linear the slope is ``2 (k x + b) - b`` with ``k x + b`` in ``[m, M]``; where it
    saturates the slope is ``m`` or ``M``: so it lies in ``hull{m, M, 2m - b, 2M - b}``, whatever ``k``.
    """
    if node.attrs.keys() - {"min", "max"}:
        return None
    p = polynomial(ctx, node.inputs[0], x)
    if p is None or not set(p) <= {0, 1}:
        return None
    b = p.get(0, 0.0)
    bounds = []
    for index, attr in ((1, "min"), (2, "max")):
        if len(node.inputs) > index and node.inputs[index]:
            bounds.append(scalar(ctx, node.inputs[index]))
        else:
            bounds.append(float(node.attrs[attr]) if attr in node.attrs else None)
    m, top = bounds
    if m is None or top is None or not (math.isfinite(m) and math.isfinite(top) and m <= top):
        return None  # an open side: x * relu(k x + b) has an unbounded slope
    ends = (m, top, 2 * m - b, 2 * top - b)
    return min(ends), max(ends), "x * clip(k x + b, m, M) (HardSwish as clip)"


def _tanh_gate(ctx, arg: str, x: str):
    # Mish's slope range holds for softplus itself: log(c + e^u) with c != 1 tends to u (a tanh gate) as c -> 0
    u = softplus_argument(ctx, arg, exact=True)
    if u is not None and _linear_in(ctx, u, x):
        return MISH_GATE + ("x * tanh(softplus(k x)) (Mish)",)
    p = polynomial(ctx, arg, x)
    if p is None:
        return None
    if set(p) <= {1}:
        return TANH_GATE + ("x * tanh(k x)",)
    if set(p) == {1, 3} and p[1] * p[3] > 0:
        ratio = p[3] / p[1] ** 3
        if abs(ratio / TANH_GELU_RATIO - 1) < 1e-5:
            return TANH_GELU_GATE + ("x * tanh(k (x + 0.044715 x^3)) (tanh-GELU)",)
        return TANH_CUBIC_GATE + ("x * tanh(k1 x + k3 x^3), k1 k3 > 0",)
    return None


def product_factors(ctx, value: str, depth: int = 0) -> tuple[float, list[str]] | None:
    """Flatten a tree of ``Mul`` (and ``Div``/``Neg`` by scalars) into ``(scale, input-dependent factors)``."""
    c = scalar(ctx, value)
    if c is not None:
        return c, []
    if not ctx.depends(value):
        return None  # a non-scalar constant: not a gate's scale
    node = producer(ctx, value)
    if node is not None and depth < _MAX_DEPTH:
        if node.op == "Mul" and len(node.inputs) == 2:
            left = product_factors(ctx, node.inputs[0], depth + 1)
            right = product_factors(ctx, node.inputs[1], depth + 1)
            if left is None or right is None:
                return None
            return left[0] * right[0], left[1] + right[1]
        if node.op == "Div" and len(node.inputs) == 2 and scalar(ctx, node.inputs[1]):
            inner = product_factors(ctx, node.inputs[0], depth + 1)
            return None if inner is None else (inner[0] / scalar(ctx, node.inputs[1]), inner[1])
        if node.op == "Neg":
            inner = product_factors(ctx, node.inputs[0], depth + 1)
            return None if inner is None else (-inner[0], inner[1])
    return 1.0, [value]


def gate_product(ctx, node) -> tuple[str, float, str] | None:
    """``(x, slope bound, name)`` when the ``Mul`` node computes ``s * x * g(x)`` for a recognised gate ``g``."""
    left = product_factors(ctx, node.inputs[0])
    right = product_factors(ctx, node.inputs[1])
    if left is None or right is None:
        return None
    scale, factors = left[0] * right[0], left[1] + right[1]
    if len(factors) != 2:
        return None
    for x, gate in (factors, factors[::-1]):
        found = gate_range(ctx, gate, x)
        if found is not None:
            lo, hi, name = found
            return x, abs(scale) * max(abs(lo), abs(hi)), name
    return None


# -- softplus, softsign ----------------------------------------------------------------

def softplus_argument(ctx, value: str, exact: bool = False) -> str | None:
    """``u`` when ``value = Softplus(u)`` or ``log(c + exp(u))`` (``exact``: only ``c = 1``, softplus itself)."""
    node = producer(ctx, value)
    if node is None:
        return None
    if node.op == "Softplus":
        return node.inputs[0]
    if node.op == "Log":
        return log_one_plus_exp(ctx, node, exact)
    return None


def log_one_plus_exp(ctx, node, exact: bool = False) -> str | None:
    """``u`` when the ``Log`` node computes ``log(c + exp(u))`` with a scalar ``c > 0`` (slope in (0, 1)); ``exact``: c = 1."""
    add = producer(ctx, node.inputs[0])
    if add is None or add.op != "Add" or len(add.inputs) != 2:
        return None
    for e, c in (add.inputs, add.inputs[::-1]):
        cv = scalar(ctx, c)
        exp = producer(ctx, e)
        if cv is not None and (cv == 1.0 if exact else cv > 0) and exp is not None and exp.op == "Exp":
            return exp.inputs[0]
    return None


def softsign(ctx, node) -> tuple[str, float] | None:
    """``(x, constant)`` when the ``Div`` node computes ``a x / (c + |b x|)``, ``c > 0``: slope ``a c / (c + |b x|)^2 <= |a| / c``."""
    a_scale, x = strip_scale(ctx, node.inputs[0])
    add = producer(ctx, node.inputs[1])
    if add is None or add.op != "Add" or len(add.inputs) != 2:
        return None
    for v, c in (add.inputs, add.inputs[::-1]):
        cv = scalar(ctx, c)
        ab = producer(ctx, v)
        if cv is not None and cv > 0 and ab is not None and ab.op == "Abs" and strip_scale(ctx, ab.inputs[0])[1] == x:
            return x, abs(a_scale) / cv * SAFETY
    return None


# -- standardisation (x - mean) / sqrt(var + eps) -------------------------------------

def _reduce_axes(ctx, node) -> tuple[int, ...] | None:
    from lipaudit.ops.pooling import _reduced_axes

    shape = ctx.graph.shapes.get(node.inputs[0])
    if shape is None or not node.attrs.get("keepdims", 1) or node.attrs.keys() - {"axes", "keepdims", "noop_with_empty_axes"}:
        return None
    return tuple(_reduced_axes(node, ctx, shape))


def centred(ctx, value: str):
    """``(x, axes, mean value)`` when ``value = x - ReduceMean(x, axes, keepdims=1)``."""
    sub = producer(ctx, value)
    if sub is None or sub.op != "Sub" or len(sub.inputs) != 2 or sub.attrs:
        return None
    x, mean = sub.inputs
    red = producer(ctx, mean)
    if red is None or red.op != "ReduceMean" or red.inputs[0] != x:
        return None
    axes = _reduce_axes(ctx, red)
    return None if axes is None else (x, axes, mean)


def _inverse_sqrt_argument(ctx, value: str, inverse: bool) -> str | None:
    """``w`` when ``value = sqrt(w)`` (``inverse=False``) or ``1 / sqrt(w)`` (``inverse=True``)."""
    node = producer(ctx, value)
    if node is None:
        return None
    want = -0.5 if inverse else 0.5
    if node.op == "Pow" and scalar(ctx, node.inputs[1]) == want:
        return node.inputs[0]
    if not inverse and node.op == "Sqrt":
        return node.inputs[0]
    if inverse and node.op == "Reciprocal":
        return _inverse_sqrt_argument(ctx, node.inputs[0], False)
    if inverse and node.op == "Div" and scalar(ctx, node.inputs[0]) == 1.0:
        return _inverse_sqrt_argument(ctx, node.inputs[1], False)
    return None


def _variance_plus_eps(ctx, value: str, x: str, axes) -> float | None:
    """The smallest ``eps`` when ``value = ReduceMean((x - mean)^2, axes) + eps`` (same ``x``, same axes)."""
    add = producer(ctx, value)
    if add is None or add.op != "Add" or len(add.inputs) != 2:
        return None
    for var, eps in (add.inputs, add.inputs[::-1]):
        e = ctx.const(eps)
        red = producer(ctx, var)
        if e is None or red is None or red.op != "ReduceMean" or _reduce_axes(ctx, red) != axes:
            continue
        e = np.asarray(e, dtype=np.float64)
        if e.size == 0 or not np.all(np.isfinite(e)) or not np.all(e > 0):
            return None
        sq = producer(ctx, red.inputs[0])
        if sq is None:
            return None
        if sq.op == "Pow" and scalar(ctx, sq.inputs[1]) == 2.0:
            d = sq.inputs[0]
        elif sq.op == "Mul" and sq.inputs[0] == sq.inputs[1]:
            d = sq.inputs[0]
        else:
            return None
        c = centred(ctx, d)
        if c is None or c[0] != x or c[1] != axes:
            return None
        return float(np.min(e))
    return None


def standardize(ctx, node):
    """``(x, eps, n, mean, centred)`` when the ``Div``/``Mul`` node computes ``(x - mean) / sqrt(var + eps)``."""
    if len(node.inputs) != 2:
        return None
    pairs = [node.inputs] if node.op == "Div" else [node.inputs, node.inputs[::-1]]
    for num, den in pairs:
        c = centred(ctx, num)
        if c is None:
            continue
        x, axes, mean = c
        w = _inverse_sqrt_argument(ctx, den, inverse=node.op == "Mul")
        if w is None:
            continue
        eps = _variance_plus_eps(ctx, w, x, axes)
        if eps is None:
            continue
        shape = ctx.graph.shapes.get(x)
        if shape is None or ctx.graph.shapes.get(node.outputs[0]) != shape:
            return None
        n = int(np.prod([shape[a] for a in axes])) if axes else 1
        return x, eps, n, mean, num
    return None


def standardize_lip(ctx, node):
    """The output constant of a recognised standardisation node, or None (see :func:`standardize`)."""
    found = standardize(ctx, node)
    if found is None:
        return None
    x, eps, n, mean, num = found
    for v in (mean, num):
        lip = ctx.lip(v)
        if isinstance(lip, Refusal):
            return lip  # e.g. a mean over the batch axis with a dynamic batch
    factor = (1.0 / math.sqrt(eps)) * SAFETY if n >= 2 else 0.0
    ctx.note_factor(node, factor, f"(x - mean) / sqrt(var + eps) over {n} entries: 1/sqrt(eps), eps={eps:g}")
    note_eps(ctx, node, factor, eps, "decomposed standardisation (ReduceMean/Sub/Pow/Sqrt/Div)")
    return ctx.scale(ctx.lip(x), factor)


def note_eps(ctx, node, factor: float, eps: float, what: str) -> None:
    """The LIP012 finding: how much an eps-based normalisation constant contributes."""
    if factor > 0:
        message = (f"{what} {node.name}: its global constant {factor:.6g} comes from eps={eps:g} (1/sqrt(eps) = "
                   f"{1 / math.sqrt(eps):.6g}); it multiplies every certificate through it by {factor:.6g} "
                   f"(10^{math.log10(factor):.2f})")
    else:
        message = f"{what} {node.name}: constant 0 (one entry per normalisation group)"
    ctx.note("LIP014", node, message)

