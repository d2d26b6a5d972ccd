"""Add/Sum/Sub/Mean/Mul/Div/Max/Min/Where: sums of input constants, constant scales, known patterns."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import CONST, DATA, patterns, rule

LEGACY_BROADCAST = ("broadcast", "axis", "consumed_inputs")  # opset 1-6 broadcasting: copies stay uniform


def _broadcast_parts(node, ctx, inputs):
    out = node.outputs[0]
    return [ctx.scale(ctx.lip(x), ctx.broadcast_factor(x, out, node)) for x in inputs if x]


@rule("Add", "Sum", "Sub", inputs={"A": DATA, "B": DATA, "data_0": DATA}, attrs=LEGACY_BROADCAST, kind="linear",
      constant="sum of the inputs' constants; a broadcast input counts sqrt(copies); constants only shift")
def add(node, ctx):
    return [ctx.add(_broadcast_parts(node, ctx, node.inputs))]


@rule("Mean", inputs={"data_0": DATA}, attrs=("consumed_inputs",), kind="linear",
      constant="sum of the inputs' constants (broadcast copies counted) divided by the number of inputs")
def mean(node, ctx):
    k = sum(1 for x in node.inputs if x)
    ctx.note_factor(node, 1.0 / k, f"mean of {k} inputs")
    return [ctx.scale(ctx.add(_broadcast_parts(node, ctx, node.inputs)), 1.0 / k)]


@rule("Max", "Min", inputs={"data_0": DATA}, attrs=("consumed_inputs",), kind="nonlinear",
      constant="root-sum-square of the inputs' constants (|max(a,b) - max(a',b')| <= max(|da|, |db|))")
def max_min(node, ctx):
    return [ctx.rss(_broadcast_parts(node, ctx, node.inputs))]


@rule("Where", inputs={"condition": CONST, "X": DATA, "Y": DATA}, kind="nonlinear",
      constant="root-sum-square of X's and Y's constants; the condition must be a constant")
def where(node, ctx):
    return [ctx.rss(_broadcast_parts(node, ctx, node.inputs[1:]))]


@rule("Mul", inputs={"A": DATA, "B": DATA}, attrs=LEGACY_BROADCAST, kind="nonlinear",
      constant="max|c| x sqrt(copies) for a constant c; s x g(x) gates (SiLU, HardSwish, erf/tanh-GELU, Mish) by the "
               "slope range of the matched gate; (x - mean) x (var + eps)^-1/2 by 1/sqrt(eps); any other product of "
               "input-dependent tensors on --input-range only (refused without it)")
def mul(node, ctx):
    a, b = node.inputs[:2]
    out = node.outputs[0]
    if ctx.depends(a) and ctx.depends(b):
        standardized = patterns.standardize_lip(ctx, node)
        if standardized is not None:
            return [standardized]
        pattern = patterns.gate_product(ctx, node)
        if pattern is None:
            from lipaudit.ops.products import product

            return [product(node, ctx, a, b)]  # on --input-range only (refused without it)
        x, factor, name = pattern
        ctx.note_factor(node, factor, name)
        return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, out, node))]
    x, c = (a, ctx.const(b)) if ctx.depends(a) else (b, ctx.const(a))
    factor = _max_abs(c)
    ctx.note_factor(node, factor, "multiplication by a constant")
    return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, out, node))]


@rule("Div", inputs={"A": DATA, "B": DATA}, attrs=LEGACY_BROADCAST, kind="linear",
      constant="max|1/c| x sqrt(copies) for a constant divisor c without zeros; (x - mean) / sqrt(var + eps) by "
               "1/sqrt(eps); a x / (c + |b x|) (Softsign) by |a|/c; any other input-dependent divisor bounded away from "
               "0 on --input-range: sup|1/b| L_a + sup|a|/min|b|^2 L_b (refused without a domain)")
def div(node, ctx):
    a, b = node.inputs[:2]
    if ctx.depends(b):
        from lipaudit.ops.products import quotient

        standardized = patterns.standardize_lip(ctx, node)
        if standardized is not None:
            return [standardized]
        found = patterns.softsign(ctx, node)
        if found is not None:
            x, factor = found
            ctx.note_factor(node, factor, "a x / (c + |b x|) (Softsign family)")
            return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, node.outputs[0], node))]

        return [quotient(node, ctx, a, b)]
    c = np.asarray(ctx.const(b), dtype=np.float64)
    if c.size and np.any(c == 0):
        ctx.fail(node, "division by a constant that contains zero")
    factor = _max_abs(1.0 / c) if c.size else 0.0
    ctx.note_factor(node, factor, "division by a constant")
    return [ctx.scale(ctx.lip(a), factor * ctx.broadcast_factor(a, node.outputs[0], node))]


def _max_abs(c) -> float:
    c = np.asarray(c, dtype=np.float64)
    if not c.size:
        return 0.0
    return float(np.max(np.abs(c))) if np.all(np.isfinite(c)) else math.inf
