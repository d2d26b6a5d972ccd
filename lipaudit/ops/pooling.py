"""Pooling: max pooling by window overlap, average pooling by its exact (separable) norm."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds.linalg import spectral_norm
from lipaudit.ops import rule
from lipaudit.ops.attrs import resolve_pads
from lipaudit.values import SAFETY


@rule("MaxPool")
def max_pool(node, ctx):
    # |max(x_W) - max(y_W)| <= ||x - y||_W; one input lies in at most `count` windows
    k = node.attrs["kernel_shape"]
    s = node.attrs.get("strides", [1] * len(k))
    d = node.attrs.get("dilations", [1] * len(k))
    count = 1
    for kk, ss, dd in zip(k, s, d):
        count *= min(kk, math.ceil((dd * (kk - 1) + 1) / ss))
    factor = math.sqrt(count)
    ctx.note_factor(node, factor, f"an input lies in at most {count} windows")
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.fail(node, "MaxPool indices output is not continuous")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("GlobalMaxPool")
def global_max_pool(node, ctx):
    ctx.note_factor(node, 1.0)
    return [ctx.lip(node.inputs[0])]


@rule("GlobalAveragePool")
def global_average_pool(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    n = int(np.prod(shape[2:]))
    factor = 1.0 / math.sqrt(n)  # the mean of n entries: (1/n) 1^T has norm 1/sqrt(n)
    ctx.note_factor(node, factor, "mean of n entries, exact")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("AveragePool")
def average_pool(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    out_shape = ctx.shape(node.outputs[0], node)
    factor = average_pool_norm(node.attrs, shape[2:], out_shape[2:])
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
    s = attrs.get("strides", [1] * d)
    dil = attrs.get("dilations", [1] * d)
    pads = resolve_pads(attrs, in_size, k, s, dil)
    include_pad = bool(attrs.get("count_include_pad", 0))
    norm = 1.0
    for i in range(d):
        mat = _pool_matrix(in_size[i], out_size[i], k[i], s[i], dil[i], pads[i], pads[i + d], include_pad)
        norm *= spectral_norm(mat)
    return norm * SAFETY


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


def _reduced_count(node, ctx) -> int:
    """How many entries each output of a Reduce* op combines."""
    shape = ctx.shape(node.inputs[0], node)
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        const = ctx.const(node.inputs[1])
        if const is None:
            ctx.fail(node, "reduction axes depend on the input")
        axes = [int(a) for a in const.ravel()]
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return 1
        axes = list(range(len(shape)))
    count = 1
    for a in axes:
        count *= shape[int(a) % len(shape)]
    return count


@rule("ReduceMean")
def reduce_mean(node, ctx):
    factor = 1.0 / math.sqrt(_reduced_count(node, ctx))  # each output is the mean of n disjoint entries
    ctx.note_factor(node, factor, "mean of n entries, exact")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("ReduceSum")
def reduce_sum(node, ctx):
    factor = math.sqrt(_reduced_count(node, ctx))
    ctx.note_factor(node, factor, "sum of n entries, exact")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1")
def reduce_max(node, ctx):
    # max/min/l2 over disjoint groups: each is 1-Lipschitz in its group (l2); ReduceL1 is sqrt(n)
    factor = math.sqrt(_reduced_count(node, ctx)) if node.op == "ReduceL1" else 1.0
    ctx.note_factor(node, factor)
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]
