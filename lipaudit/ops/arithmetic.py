"""Add/Sum/Sub/Mul/Div/Max/Min/Where: sums of input constants, constant scales, known patterns."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import rule
from lipaudit.ops.activations import GELU_SLOPE, HARDSWISH_SLOPE, SILU_SLOPE


@rule("Add", "Sum", "Sub")
def add(node, ctx):
    # triangle inequality; a broadcast input is copied, which multiplies its norm by sqrt(copies)
    out = node.outputs[0]
    parts = [ctx.scale(ctx.lip(x), ctx.broadcast_factor(x, out, node)) for x in node.inputs if x]
    return [ctx.add(parts)]


@rule("Max", "Min")
def max_min(node, ctx):
    # |max(a,b) - max(a',b')| <= max(|da|, |db|), whose square is <= da^2 + db^2
    out = node.outputs[0]
    parts = [ctx.scale(ctx.lip(x), ctx.broadcast_factor(x, out, node)) for x in node.inputs if x]
    return [ctx.rss(parts)]


@rule("Where")
def where(node, ctx):
    if ctx.lip(node.inputs[0]) is not None:
        ctx.fail(node, "the condition depends on the input, so the output is not continuous")
    out = node.outputs[0]
    return [ctx.rss([ctx.scale(ctx.lip(x), ctx.broadcast_factor(x, out, node)) for x in node.inputs[1:]])]


@rule("Mul")
def mul(node, ctx):
    a, b = node.inputs[:2]
    la, lb = ctx.lip(a), ctx.lip(b)
    out = node.outputs[0]
    if la is not None and lb is not None:
        pattern = _gate_pattern(ctx, a, b) or _gate_pattern(ctx, b, a)
        if pattern is None:
            ctx.fail(node, "product of two input-dependent tensors has no global Lipschitz constant")
        x, factor, name = pattern
        ctx.note_factor(node, factor, name)
        return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, out, node))]
    x, c = (a, ctx.const(b)) if la is not None else (b, ctx.const(a))
    factor = float(np.max(np.abs(c))) if c.size else 0.0
    ctx.note_factor(node, factor, "multiplication by a constant")
    return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, out, node))]


@rule("Div")
def div(node, ctx):
    a, b = node.inputs[:2]
    if ctx.lip(b) is not None:
        ctx.fail(node, "division by an input-dependent tensor has no global Lipschitz constant")
    c = ctx.const(b)
    if c.size and np.any(c == 0):
        ctx.fail(node, "division by a constant that contains zero")
    factor = float(np.max(np.abs(1.0 / c))) if c.size else 0.0
    ctx.note_factor(node, factor, "division by a constant")
    return [ctx.scale(ctx.lip(a), factor * ctx.broadcast_factor(a, node.outputs[0], node))]


def _gate_pattern(ctx, x: str, gate: str):
    """``x * g(x)`` with a known gate: SiLU, HardSwish, erf-GELU. Returns ``(x, slope, name)``."""
    producers = ctx.graph.producers()
    scale, gate = _strip_constant_scale(ctx, producers, gate)
    node = producers.get(gate)
    if node is None:
        return None
    if node.op == "Sigmoid" and node.inputs[0] == x:
        return x, scale * SILU_SLOPE, "x * sigmoid(x) (SiLU)"
    if node.op == "HardSigmoid" and node.inputs[0] == x:
        alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
        if math.isclose(alpha, 1 / 6, rel_tol=1e-4) and math.isclose(beta, 0.5, rel_tol=1e-4):
            return x, scale * HARDSWISH_SLOPE, "x * hardsigmoid(x) (HardSwish)"
    if node.op == "Add":
        # 1 + erf(x / sqrt(2)) = 2 Phi(x): x * (1 + erf(x / sqrt 2)) = 2 GELU(x)
        one = [ctx.const(i) for i in node.inputs if ctx.const(i) is not None]
        rest = [i for i in node.inputs if ctx.const(i) is None]
        if len(one) == 1 and len(rest) == 1 and one[0].size == 1 and math.isclose(float(one[0].reshape(())), 1.0):
            erf = producers.get(rest[0])
            if erf is not None and erf.op == "Erf":
                inner_scale, inner = _strip_constant_scale(ctx, producers, erf.inputs[0])
                if inner == x and math.isclose(abs(inner_scale), 1 / math.sqrt(2), rel_tol=1e-3):
                    return x, scale * 2 * GELU_SLOPE, "x * (1 + erf(x / sqrt 2)) (GELU)"
    return None


def _strip_constant_scale(ctx, producers, name: str) -> tuple[float, str]:
    """Follow Mul/Div by scalar constants upstream; returns (|total scale|, source value)."""
    scale = 1.0
    while True:
        node = producers.get(name)
        if node is None or node.op not in ("Mul", "Div"):
            return scale, name
        a, b = node.inputs[:2]
        ca, cb = ctx.const(a), ctx.const(b)
        if node.op == "Mul" and ca is not None and ca.size == 1:
            scale, name = scale * abs(float(ca.reshape(()))), b
        elif cb is not None and cb.size == 1 and float(cb.reshape(())) != 0:
            v = float(cb.reshape(()))
            scale, name = scale * (abs(v) if node.op == "Mul" else 1 / abs(v)), a
        else:
            return scale, name
