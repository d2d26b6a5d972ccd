"""Interval rules: bounds of every output on the input domain, one rule per op (see :mod:`lipaudit.ops.box`).

Most ops are monotone in each input-dependent input, so their bounds are the op
itself, run by onnx's reference evaluator, at the lower and upper corners.
Linear layers use center and radius; products use the four corners; element-wise
functions with an interior minimum use it. An op not listed here has no
interval rule: its outputs have no bounds, and a product that needs them is refused.
"""

from __future__ import annotations

import numpy as np

from lipaudit.ops.box import (
    APPROX, ROUNDING, Box, NoInterval, add_with_rounding, affine, checked, interval, matmul_boxes, monotone, mul_boxes,
    reciprocal_box, unimodal,
)

# ops that only move, select, copy or compare entries, or apply one element-wise monotone function:
# the corners give the bounds, and relative widening covers the one rounding per entry
EXACT_INCREASING = [
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split", "Gather",
    "GatherElements", "GatherND", "Concat", "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Pad",
    "Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Erf", "Exp", "Log", "Sqrt", "Add", "Max", "Min", "Clip",
    "MaxPool", "GlobalMaxPool", "ReduceMax", "ReduceMin", "Dropout", "Cast", "CastLike",
]
# sums with non-negative coefficients: widened by the rounding of a sum of magnitudes
SUMMING_INCREASING = ["Sum", "Mean", "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceSum", "Resize", "Upsample",
                      "ReduceLogSumExp"]


def _first_output(node, ctx):
    outs = [o for o in node.outputs if o]
    return outs[:1]


# bounded whatever their input: the bounds when the input has none
BOUNDED = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "Softsign": (-1.0, 1.0), "Erf": (-1.0, 1.0)}


@interval(*EXACT_INCREASING)
def exact_increasing(node, ctx):
    if node.op in BOUNDED:
        try:
            return monotone(node, ctx, exact=True)
        except NoInterval:
            lo, hi = BOUNDED[node.op]
            return [Box(np.array(lo), np.array(hi))]
    if node.op in ("MaxPool", "Dropout"):
        return monotone(node, ctx, exact=True, outputs=_first_output(node, ctx))
    if node.op in ("Cast", "CastLike") and not _float_cast(node, ctx):
        raise NoInterval("not a cast to a float type")
    return monotone(node, ctx, exact=True)


def _float_cast(node, ctx) -> bool:
    if node.op == "Cast":
        return int(node.attrs.get("to", 0)) in (1, 11)
    return np.issubdtype(np.asarray(ctx.const(node.inputs[1])).dtype, np.floating)


@interval(*SUMMING_INCREASING)
def summing_increasing(node, ctx):
    if node.op in ("Resize", "Upsample"):
        if str(node.attrs.get("mode", "nearest")) == "cubic":
            raise NoInterval("cubic interpolation has negative coefficients: no interval rule")
        if node.attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
            raise NoInterval("tf_crop_and_resize: no interval rule")
    return monotone(node, ctx)


@interval("Sub")
def sub(node, ctx):
    return monotone(node, ctx, signs={node.inputs[1]: -1} if node.inputs[1] != node.inputs[0] else None, exact=True)


@interval("Neg")
def neg(node, ctx):
    return monotone(node, ctx, signs={node.inputs[0]: -1}, exact=True)


@interval("LeakyRelu", "Elu", "Celu", "Selu", "HardSigmoid", "PRelu", "ThresholdedRelu")
def sloped(node, ctx):
    """Monotone when every slope parameter is >= 0; non-increasing when HardSigmoid's alpha < 0."""
    a = node.attrs
    if node.op == "HardSigmoid":
        alpha = float(a.get("alpha", 0.2))
        try:
            return monotone(node, ctx, signs={node.inputs[0]: 1 if alpha >= 0 else -1}, exact=True)
        except NoInterval:
            return [Box(np.array(0.0), np.array(1.0))]  # a clip to [0, 1]
    if node.op == "PRelu":
        slope = np.asarray(ctx.const(node.inputs[1]), dtype=np.float64)
        if np.any(slope < 0):
            return [_with_zero(node, ctx)]
        return monotone(node, ctx, exact=True)
    if node.op == "ThresholdedRelu":
        raise NoInterval("not continuous")
    params = {"LeakyRelu": [a.get("alpha", 0.01)], "Elu": [a.get("alpha", 1.0)], "Celu": [a.get("alpha", 1.0)],
              "Selu": [a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)]}[node.op]
    if any(float(p) < 0 for p in params):
        if node.op in ("LeakyRelu",):
            return [_with_zero(node, ctx)]
        raise NoInterval("a negative slope parameter: no interval rule")
    return monotone(node, ctx, exact=True)


def _with_zero(node, ctx) -> Box:
    """A function monotone on each side of 0: extremes at the interval's ends or at 0."""
    x = node.inputs[0]
    b = checked(ctx.known_box(node, x), ctx.graph.shapes.get(x))
    from lipaudit.ops.box import evaluate

    feeds = {n: np.asarray(ctx.const(n), dtype=np.float64) for n in node.inputs[1:] if n}
    out = _first_output(node, ctx)
    vals = [evaluate(node, ctx, {x: np.ascontiguousarray(p), **feeds}, out)[0]
            for p in (b.lo, b.hi, np.clip(0.0, b.lo, b.hi))]
    lo, hi = np.minimum.reduce(vals), np.maximum.reduce(vals)
    return checked(Box(lo, hi).widened(APPROX * (np.maximum(np.abs(lo), np.abs(hi)) + 1.0)))


@interval("Abs")
def abs_(node, ctx):
    x = node.inputs[0]
    b = checked(ctx.known_box(node, x), ctx.graph.shapes.get(x))
    lo = np.where((b.lo <= 0) & (b.hi >= 0), 0.0, np.minimum(np.abs(b.lo), np.abs(b.hi)))
    return [Box(lo, b.mag())]


# element-wise functions with one minimum (t*, and a lower bound of f(t*)); t* to 1e-4
UNIMODAL = {
    "HardSwish": (-1.5, -0.375),
    "Mish": (-1.19240, -0.30885),
}
GELU = {"none": (-0.75179, -0.16998), "tanh": (-0.75236, -0.17005)}


@interval("HardSwish", "Mish", "Gelu")
def one_minimum(node, ctx):
    if node.op == "Gelu":
        approx = node.attrs.get("approximate", "none")
        if approx not in GELU:
            raise NoInterval(f"unknown approximate={approx!r}")
        t, m = GELU[approx]
    else:
        t, m = UNIMODAL[node.op]
    return [unimodal(node, ctx, t, m)]


@interval("Mul")
def mul(node, ctx):
    if "broadcast" in node.attrs:
        raise NoInterval("legacy broadcast attributes: no interval rule")
    a, b = node.inputs[:2]
    return [mul_boxes(ctx.known_box(node, a), ctx.known_box(node, b))]


@interval("Div")
def div(node, ctx):
    if "broadcast" in node.attrs:
        raise NoInterval("legacy broadcast attributes: no interval rule")
    a, b = node.inputs[:2]
    return [mul_boxes(ctx.known_box(node, a), reciprocal_box(ctx.known_box(node, b)))]


@interval("Reciprocal")
def reciprocal(node, ctx):
    return [reciprocal_box(ctx.known_box(node, node.inputs[0]), "input")]


@interval("Pow")
def pow_(node, ctx):
    from lipaudit.ops.domain_elementwise import pow_exponent

    p = pow_exponent(node, ctx)
    if p is None:
        raise NoInterval("the exponent is not one constant number")
    b = ctx.known_box(node, node.inputs[0])
    if p == int(p) and int(p) % 2 == 0 and p > 0:  # even power: |x|^p
        lo = np.where((b.lo <= 0) & (b.hi >= 0), 0.0, np.minimum(np.abs(b.lo), np.abs(b.hi)))
        return [checked(Box(lo ** p, b.mag() ** p).widened())]
    if p == int(p) and p > 0:  # odd power: increasing
        return [checked(Box(b.lo ** p, b.hi ** p).widened())]
    if p == 0:
        return [Box.point(np.ones_like(b.lo))]
    if np.any(b.lo <= 0) and (p < 0 or p != int(p)):
        if p > 0 and np.all(b.lo >= 0):
            return [checked(Box(b.lo ** p, b.hi ** p).widened())]
        raise NoInterval(f"x^{p:g} is not bounded (or not defined) on the input's interval")
    ends = [b.lo ** p, b.hi ** p]
    return [checked(Box(np.minimum(*ends), np.maximum(*ends)).widened())]


@interval("Where")
def where(node, ctx):
    cond, x, y = node.inputs[:3]
    bx, by = ctx.known_box(node, x), ctx.known_box(node, y)
    if not ctx.depends(cond):
        c = np.asarray(ctx.const(cond)).astype(bool)
        return [Box(np.where(c, bx.lo, by.lo), np.where(c, bx.hi, by.hi))]
    return [Box(np.minimum(bx.lo, by.lo), np.maximum(bx.hi, by.hi))]


@interval("Conv", "ConvTranspose")
def conv(node, ctx):
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    weight = ctx.const(w)
    if weight is None:
        raise NoInterval("the kernel is not a constant")
    box = affine(node, ctx, x, {w: weight}, drop=(bias,) if bias else ())
    if bias:
        bb = ctx.known_box(node, bias)
        view = (1, -1) + (1,) * (box.lo.ndim - 2)
        box = add_with_rounding(box, Box(np.reshape(bb.lo, view), np.reshape(bb.hi, view)))
    return [checked(box)]


@interval("MatMul")
def matmul(node, ctx):
    a, b = node.inputs[:2]
    return [checked(matmul_boxes(ctx.known_box(node, a), ctx.known_box(node, b)))]


@interval("Gemm")
def gemm(node, ctx):
    a, b = node.inputs[:2]
    ba, bb = ctx.known_box(node, a), ctx.known_box(node, b)
    if node.attrs.get("transA", 0):
        ba = Box(np.swapaxes(ba.lo, -1, -2), np.swapaxes(ba.hi, -1, -2))
    if node.attrs.get("transB", 0):
        bb = Box(np.swapaxes(bb.lo, -1, -2), np.swapaxes(bb.hi, -1, -2))
    alpha = float(node.attrs.get("alpha", 1.0))
    out = matmul_boxes(ba, bb)
    out = mul_boxes(out, Box.point(alpha))
    if len(node.inputs) > 2 and node.inputs[2]:
        beta = float(node.attrs.get("beta", 1.0))
        c = mul_boxes(ctx.known_box(node, node.inputs[2]), Box.point(beta))
        out = add_with_rounding(out, c)
    return [checked(out)]


@interval("BatchNormalization")
def batch_norm(node, ctx):
    from lipaudit.ops.normalization import training_mode_reason

    if training_mode_reason(node, ctx.opset()):
        raise NoInterval("not the inference-mode affine map")
    x = node.inputs[0]
    gamma, beta, mean, var = (np.asarray(ctx.const(n), dtype=np.float64) if ctx.const(n) is not None else None
                              for n in node.inputs[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        raise NoInterval("BatchNorm parameters are not constants")
    eps = float(node.attrs.get("epsilon", 1e-5))
    b = ctx.known_box(node, x)
    rank = len(ctx.shape(x, node))
    view = (1, -1) + (1,) * (rank - 2)
    scale = gamma / np.sqrt(var + eps)
    shift = (beta - mean * scale).reshape(view)
    shift_error = ROUNDING * (np.abs(beta) + np.abs(mean * scale)).reshape(view)  # the shift may cancel to ~0
    out = mul_boxes(b, Box.point(scale.reshape(view)))
    return [checked(add_with_rounding(out, Box.point(shift)).widened(shift_error))]


@interval("Softmax", "LogSoftmax")
def softmax(node, ctx):
    """p_i in [e^lo_i / (e^lo_i + sum_{j != i} e^hi_j), e^hi_i / (e^hi_i + sum_{j != i} e^lo_j)] along the axis."""
    from lipaudit.ops.activations import _axis_of

    x = node.inputs[0]
    axes = sorted(_axis_of(node, ctx))
    try:
        b = checked(ctx.known_box(node, x), ctx.graph.shapes.get(x))
    except NoInterval:
        if node.op == "Softmax":
            return [Box(np.zeros(()), np.ones(()))]  # always in [0, 1]
        raise
    shape = b.lo.shape
    # move the softmax axes to the end and flatten them (legacy: all axes from `axis` on)
    keep = [a for a in range(len(shape)) if a not in axes]
    perm = keep + axes
    lo = np.transpose(b.lo, perm).reshape([shape[a] for a in keep] + [-1])
    hi = np.transpose(b.hi, perm).reshape([shape[a] for a in keep] + [-1])
    # log p_i <= -log(1 + sum_{j != i} e^(lo_j - hi_i)) and >= -log(1 + sum_{j != i} e^(hi_j - lo_i)). Each
    # leave-one-out log-sum-exp is the logaddexp of a prefix and a suffix log-sum-exp: sums of positive terms
    # only (no cancellation), whose rounding is at most a few n ulp of the result; the margin covers it.
    n = lo.shape[-1]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        loo_of_lo, loo_of_hi = _leave_one_out_lse(lo), _leave_one_out_lse(hi)
        loo_lo = loo_of_lo - hi
        loo_hi = loo_of_hi - lo
        ulp = np.finfo(np.float64).eps
        loo_lo = loo_lo - 8 * (n + 4) * ulp * (np.abs(loo_of_lo) + np.abs(hi) + 1.0)
        loo_hi = loo_hi + 8 * (n + 4) * ulp * (np.abs(loo_of_hi) + np.abs(lo) + 1.0)
        log_hi = -np.logaddexp(0.0, np.where(np.isnan(loo_lo), -np.inf, loo_lo))
        log_lo = -np.logaddexp(0.0, np.where(np.isnan(loo_hi), np.inf, loo_hi))
    if node.op == "Softmax":
        out_lo, out_hi = np.exp(log_lo), np.minimum(np.exp(log_hi), 1.0)
    else:
        out_lo, out_hi = log_lo, log_hi
    inverse = np.argsort(perm)
    to_shape = [shape[a] for a in perm]
    out_lo = np.transpose(out_lo.reshape(to_shape), inverse)
    out_hi = np.transpose(out_hi.reshape(to_shape), inverse)
    return [checked(Box(out_lo, out_hi).widened(1e-12))]


def _leave_one_out_lse(v: np.ndarray) -> np.ndarray:
    """``log sum_{j != i} e^(v_j)`` along the last axis, for every i (-inf for a single entry)."""
    pad = np.full(v.shape[:-1] + (1,), -np.inf)
    prefix = np.logaddexp.accumulate(np.concatenate([pad, v[..., :-1]], axis=-1), axis=-1)
    suffix = np.flip(np.logaddexp.accumulate(np.flip(np.concatenate([v[..., 1:], pad], axis=-1), axis=-1), axis=-1),
                     axis=-1)
    return np.logaddexp(prefix, suffix)


@interval("ReduceL1", "ReduceL2", "LpPool", "GlobalLpPool")
def reduce_norm(node, ctx):
    """Norms of magnitudes: increasing in each |entry|, so the bounds of |x| give the bounds."""
    x = node.inputs[0]
    b = checked(ctx.known_box(node, x), ctx.graph.shapes.get(x))
    from lipaudit.ops.box import ROUNDING, evaluate

    feeds = {n: np.asarray(ctx.const(n)) for n in node.inputs[1:] if n}
    low = np.where((b.lo <= 0) & (b.hi >= 0), 0.0, np.minimum(np.abs(b.lo), np.abs(b.hi)))
    if node.op == "GlobalLpPool":  # no reference implementation: (sum over spatial axes of |x|^p)^(1/p)
        p = float(node.attrs.get("p", 2))
        axes = tuple(range(2, b.lo.ndim))
        with np.errstate(over="ignore"):
            lo, hi = (np.sum(v ** p, axis=axes, keepdims=True) ** (1 / p) for v in (low, b.mag()))
        return [checked(Box(lo, hi).widened(1e-9 * np.abs(hi)))]
    out = _first_output(node, ctx)
    lo = evaluate(node, ctx, {x: np.ascontiguousarray(low), **feeds}, out)[0]
    hi = evaluate(node, ctx, {x: np.ascontiguousarray(b.mag()), **feeds}, out)[0]
    return [checked(Box(lo, hi).widened(ROUNDING * np.abs(hi)))]
