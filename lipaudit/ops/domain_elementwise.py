"""Element-wise functions with no global Lipschitz constant, certified on the input domain.

``exp``, ``log``, ``sqrt``, ``1/x`` and ``x^p`` have unbounded slopes on the real line,
but each input entry stays in its interval ``[lo, hi]`` on the domain, and the
interval is convex, so ``|f(u) - f(v)| <= sup_{[lo, hi]} |f'| |u - v|`` per entry.
The factor is the largest such sup over the entries. Without ``--input-range``
these ops are refused, saying so.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import CONST, DATA, rule
from lipaudit.values import SAFETY

WHAT = {
    "Exp": "exp",
    "Log": "log (unbounded slope near 0)",
    "Sqrt": "sqrt (unbounded slope near 0)",
    "Reciprocal": "1/x",
    "Pow": "x^p",
}


def _min_abs(lo, hi):
    return np.where((lo > 0) | (hi < 0), np.minimum(np.abs(lo), np.abs(hi)), 0.0)


def _slope_sup(node, ctx, lo, hi) -> float | str:
    """``max over entries of sup |f'|`` on ``[lo, hi]``, or why there is none."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if node.op == "Exp":
            return float(np.max(np.exp(hi), initial=0.0))
        if node.op == "Log":
            return "the input's interval reaches 0 or below" if np.any(lo <= 0) else float(np.max(1.0 / lo, initial=0.0))
        if node.op == "Sqrt":
            return ("the input's interval reaches 0 or below" if np.any(lo <= 0)
                    else float(np.max(0.5 / np.sqrt(lo), initial=0.0)))
        if node.op == "Reciprocal":
            m = _min_abs(lo, hi)
            return "the input's interval contains 0" if np.any(m <= 0) else float(np.max(1.0 / (m * m), initial=0.0))
        # Pow with a constant scalar exponent p: |f'| = |p| |x|^(p-1)
        p = pow_exponent(node, ctx)
        if p is None:
            return "the exponent is not one constant number"
        if p == 0:
            return 0.0
        if p == 1:
            return 1.0
        if p != int(p) and np.any(lo < 0):
            return f"a non-integer power (p={p:g}) of an interval that reaches below 0 is not defined"
        if p > 1:
            return float(abs(p) * np.max(np.maximum(np.abs(lo), np.abs(hi)) ** (p - 1), initial=0.0))
        m = _min_abs(lo, hi)
        if np.any(m <= 0):
            return f"x^{p:g} has an unbounded slope near 0 and the input's interval reaches 0"
        return float(abs(p) * np.max(m ** (p - 1), initial=0.0))


def pow_exponent(node, ctx) -> float | None:
    c = ctx.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if c is None or np.asarray(c).size != 1 or not np.isfinite(np.asarray(c, dtype=np.float64)).all():
        return None
    return float(np.asarray(c, dtype=np.float64).reshape(()))


@rule("Exp", "Log", "Sqrt", "Reciprocal", inputs={"input": DATA, "X": DATA}, attrs=("consumed_inputs",), kind="domain",
      constant="on --input-range only: the largest |slope| over the input's interval (exp(hi), 1/lo, 1/(2 sqrt(lo)), "
               "1/min|x|^2); refused without a domain. Globally 1 for log(c + exp(u)), c > 0 (Softplus spelled out)")
def unbounded_slope(node, ctx):
    if node.op == "Log":
        from lipaudit.ops.patterns import log_one_plus_exp

        u = log_one_plus_exp(ctx, node)
        if u is not None:  # slope exp(u) / (c + exp(u)) in (0, 1) on the whole line
            ctx.note_factor(node, SAFETY, "log(c + exp(u)) (Softplus)")
            return [ctx.scale(ctx.lip(u), SAFETY)]
    return _domain_slope(node, ctx)


@rule("Pow", inputs={"X": DATA, "Y": CONST}, kind="domain", min_version=7,
      constant="on --input-range only, for a constant scalar exponent p: |p| x the largest |x|^(p-1) over the input's "
               "interval; refused without a domain")
def power(node, ctx):
    return _domain_slope(node, ctx)


def _domain_slope(node, ctx):
    x = node.inputs[0]
    box = ctx.domain_box(node, x, WHAT[node.op])
    shape = ctx.shape(x, node)
    lo, hi = np.broadcast_to(box.lo, shape), np.broadcast_to(box.hi, shape)
    factor = _slope_sup(node, ctx, lo, hi)
    if isinstance(factor, str):
        ctx.fail(node, f"{WHAT[node.op]} on the input domain: {factor}",
                 hint="narrow --input-range, or use --output/--until to certify up to a value before it")
    factor = factor * SAFETY if math.isfinite(factor) else math.inf
    ctx.used_domain(node, f"largest |slope| of {node.op} over its input's interval", factor)
    ctx.note_factor(node, factor, "largest slope on the input domain")
    return [ctx.scale(ctx.lip(x), factor)]
