"""Pooling: max pooling by window overlap, average pooling by its exact (separable) norm."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds.linalg import spectral_norm
from lipaudit.ops import CONST, DATA, rule
from lipaudit.ops.attrs import resolve_pads
from lipaudit.values import SAFETY


POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


@rule("MaxPool", inputs={"X": DATA}, attrs=POOL_ATTRS + ("storage_order",), outputs=("Y",), kind="nonlinear",
      constant="sqrt(largest number of windows one input lies in) = sqrt(prod_i min(k_i, ceil((d_i (k_i - 1) + 1) / s_i)))")
def max_pool(node, ctx):
    # |max(x_W) - max(y_W)| <= ||x - y||_W; one input lies in at most `count` windows, whatever the
    # padding (padded entries are -inf) or ceil_mode (extra windows start s apart like the others)
    k = node.attrs.get("kernel_shape")
    if not k:
        ctx.fail(node, "kernel_shape is required")
    count = windows_per_input(node)
    factor = math.sqrt(count)
    ctx.note_factor(node, factor, f"an input lies in at most {count} windows")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


def windows_per_input(node) -> int:
    """The largest number of pooling windows one input entry lies in, whatever the padding or ceil_mode."""
    k = node.attrs["kernel_shape"]
    s = node.attrs.get("strides", [1] * len(k))
    d = node.attrs.get("dilations", [1] * len(k))
    count = 1
    for kk, ss, dd in zip(k, s, d):
        count *= min(kk, math.ceil((dd * (kk - 1) + 1) / ss))
    return count


@rule("GlobalMaxPool", inputs={"X": DATA}, kind="nonlinear", constant="1 (a max over each channel)")
def global_max_pool(node, ctx):
    ctx.note_factor(node, 1.0)
    return [ctx.lip(node.inputs[0])]


@rule("GlobalAveragePool", inputs={"X": DATA}, kind="linear", constant="1/sqrt(n) for n spatial entries (exact)")
def global_average_pool(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    n = int(np.prod(shape[2:]))
    factor = 1.0 / math.sqrt(n)  # the mean of n entries: (1/n) 1^T has norm 1/sqrt(n)
    ctx.note_factor(node, factor, "mean of n entries, exact")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("AveragePool", inputs={"X": DATA}, attrs=POOL_ATTRS + ("count_include_pad",), kind="linear",
      constant="exact norm of the pooling operator (a Kronecker product of one matrix per axis)")
def average_pool(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    out_shape = ctx.shape(node.outputs[0], node)
    if not node.attrs.get("kernel_shape"):
        ctx.fail(node, "kernel_shape is required")
    try:
        factor = average_pool_norm(node.attrs, shape[2:], out_shape[2:])
    except ValueError as exc:
        ctx.fail(node, str(exc))
    ctx.note_factor(node, factor, "exact norm of the pooling matrix")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


def average_pool_norm(attrs, in_size, out_size) -> float:
    """Exact norm of ONNX AveragePool: a Kronecker product of one matrix per axis.

    The divisor (window size, or the count of non-pad entries) factors across
    axes, so the operator is separable and its norm is the product of the
    per-axis norms.
    """
    k = attrs["kernel_shape"]
    d = len(k)
    if len(in_size) != d or len(out_size) != d:
        raise ValueError(f"kernel_shape {list(k)} does not match the input's {len(in_size)} spatial axes")
    s = attrs.get("strides", [1] * d)
    dil = attrs.get("dilations", [1] * d)
    candidates = [resolve_pads(attrs, in_size, k, s, dil)]
    if attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER") and any(x != 1 for x in dil):
        # the specification sizes SAME pads with the dilated kernel, onnx's reference and onnxruntime with the
        # undilated one: the norm covers both
        candidates.append(resolve_pads(attrs, in_size, k, s, [1] * d))
    include_pad = bool(attrs.get("count_include_pad", 0))
    best = 0.0
    for pads in candidates:
        norm = 1.0
        for i in range(d):
            mat = _pool_matrix(in_size[i], out_size[i], k[i], s[i], dil[i], pads[i], pads[i + d], include_pad)
            norm *= spectral_norm(mat)
        best = max(best, norm)
    return best * SAFETY


def _pool_matrix(n, m, k, s, d, pb, pe, include_pad) -> np.ndarray:
    mat = np.zeros((m, n))
    for i in range(m):
        taps = [i * s - pb + a * d for a in range(k)]
        valid = [t for t in taps if 0 <= t < n]
        in_padded = [t for t in taps if -pb <= t < n + pe]
        divisor = len(in_padded) if include_pad else len(valid)
        for t in valid:
            mat[i, t] += 1.0 / max(divisor, 1)
    return mat


def _reduced_axes(node, ctx, shape) -> list[int]:
    """The axes a Reduce* op combines (attribute before opset 18, input after)."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = [int(a) for a in np.asarray(ctx.const(node.inputs[1])).ravel()]
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return []
        return list(range(len(shape)))
    return sorted({int(a) % len(shape) for a in axes})


def _reduced_count(node, ctx) -> int:
    """How many entries each output of a Reduce* op combines."""
    shape = ctx.shape(node.inputs[0], node)
    count = 1
    for a in _reduced_axes(node, ctx, shape):
        count *= shape[a]
    return count


REDUCE = dict(inputs={"data": DATA, "axes": CONST}, attrs=("axes", "keepdims", "noop_with_empty_axes"))


def _reduced_axes_of(node, ctx) -> set[int]:
    shape = ctx.graph.shapes.get(node.inputs[0])
    return set() if shape is None else set(_reduced_axes(node, ctx, shape))


@rule("ReduceMean", **REDUCE, kind="linear", batch_axes=_reduced_axes_of,
      constant="1/sqrt(n) for means of n entries (exact)")
def reduce_mean(node, ctx):
    factor = 1.0 / math.sqrt(_reduced_count(node, ctx))  # each output is the mean of n disjoint entries
    ctx.note_factor(node, factor, "mean of n entries, exact")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("ReduceSum", **REDUCE, kind="linear", batch_axes=_reduced_axes_of, constant="sqrt(n) for sums of n entries (exact)")
def reduce_sum(node, ctx):
    factor = math.sqrt(_reduced_count(node, ctx))
    ctx.note_factor(node, factor, "sum of n entries, exact")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1", **REDUCE, kind="nonlinear", batch_axes=_reduced_axes_of,
      constant="1 for max/min/L2 over disjoint groups; sqrt(n) for L1 of n entries")
def reduce_max(node, ctx):
    # max/min/l2 over disjoint groups: each is 1-Lipschitz in its group (l2); ReduceL1 is sqrt(n)
    factor = math.sqrt(_reduced_count(node, ctx)) if node.op == "ReduceL1" else 1.0
    ctx.note_factor(node, factor)
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]
