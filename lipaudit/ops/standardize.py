"""LayerNormalization, GroupNormalization, InstanceNormalization: a global constant through ``eps``.

Each normalisation group maps ``x -> gamma * (x - mean) / sqrt(var + eps) + beta``,
whose global Lipschitz constant is exactly ``||diag(gamma) P|| / sqrt(eps)``
(:mod:`lipaudit.bounds.normalization`); groups are disjoint, so the node's
constant is the largest over groups. It is attained at inputs that are constant
on a group, so no global bound can be smaller: with the usual ``eps`` of 1e-5 or
1e-6 it is large, and finding LIP012 says how much it contributes.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds.normalization import standardize_constant
from lipaudit.ops import AFFINE, CONST, DATA, rule
from lipaudit.ops.box import Box, NoInterval, checked, interval
from lipaudit.ops.patterns import note_eps


def _eps(node, ctx, default=1e-5) -> float:
    eps = float(node.attrs.get("epsilon", default))
    if not eps > 0 or not math.isfinite(eps):
        ctx.fail(node, f"epsilon={eps:g}: without a positive eps, (x - mean) / sqrt(var + eps) has no global "
                       f"Lipschitz constant")
    return eps


def _const(node, ctx, index: int) -> np.ndarray:
    c = np.asarray(ctx.const(node.inputs[index]), dtype=np.float64)
    return c


def _finish(node, ctx, factor: float, eps: float, bias_index: int, what: str):
    """Scale the data's constant, add an input-dependent bias's, record the factor and the LIP012 finding."""
    ctx.note_factor(node, factor, f"||diag(gamma) P|| / sqrt(eps), eps={eps:g}")
    note_eps(ctx, node, factor, eps, what)
    out = ctx.scale(ctx.lip(node.inputs[0]), factor)
    if len(node.inputs) > bias_index and ctx.depends(node.inputs[bias_index]):
        b = node.inputs[bias_index]
        # Y has X's shape by definition (a declared output shape may be missing or wrong): copies of each bias entry
        copies = np.prod(ctx.shape(node.inputs[0], node)) / max(np.prod(ctx.shape(b, node)), 1)
        out = ctx.add([out, ctx.scale(ctx.lip(b), math.sqrt(max(copies, 1.0)))])
    return [out] + [None] * (len(node.outputs) - 1)


def _layer_axes(node, ctx) -> set[int]:
    shape = ctx.graph.shapes.get(node.inputs[0])
    if shape is None:
        return {0}
    return set(range(int(node.attrs.get("axis", -1)) % len(shape), len(shape)))


@rule("LayerNormalization", inputs={"X": DATA, "Scale": CONST, "B": AFFINE}, attrs=("axis", "epsilon", "stash_type"),
      outputs=("Y",), kind="nonlinear", batch_axes=_layer_axes,
      constant="||diag(Scale) P|| / sqrt(epsilon) (P centres each group; exact global constant); an input-dependent "
               "B adds its constant x sqrt(copies)")
def layer_norm(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    eps = _eps(node, ctx)
    axis = int(node.attrs.get("axis", -1)) % len(shape)
    group = tuple(shape[axis:])
    n = int(np.prod(group))
    scale = _const(node, ctx, 1)
    # Scale broadcasts to the normalised shape: each of its entries repeats n / size times in a group
    trimmed = scale.reshape(scale.shape[max(scale.ndim - len(group), 0):]) if scale.size else scale
    try:
        fits = scale.size > 0 and trimmed.size == scale.size and np.broadcast_shapes(trimmed.shape, group) == group
    except ValueError:
        fits = False
    if not fits:
        ctx.fail(node, f"Scale of shape {list(scale.shape)} does not broadcast to the normalised shape {list(group)}")
    factor = standardize_constant(eps, trimmed.ravel(), n // trimmed.size)
    return _finish(node, ctx, factor, eps, 2, "LayerNormalization")


@rule("GroupNormalization", inputs={"X": DATA, "scale": CONST, "bias": AFFINE},
      attrs=("epsilon", "num_groups", "stash_type"), kind="nonlinear",
      constant="max over groups of ||diag(scale) P|| / sqrt(epsilon) (scale per group before opset 21, per channel "
               "from 21); an input-dependent bias adds its constant x sqrt(copies)")
def group_norm(node, ctx):
    from lipaudit.ops.contract import schema

    shape = ctx.shape(node.inputs[0], node)
    eps = _eps(node, ctx)
    groups = int(node.attrs.get("num_groups", 0))
    channels = shape[1] if len(shape) > 1 else 0
    if groups < 1 or channels % groups:
        ctx.fail(node, f"num_groups={groups} does not divide the {channels} channels")
    spatial = int(np.prod(shape[2:]))
    per = channels // groups
    scale = _const(node, ctx, 1).ravel()
    version = schema(node.op, ctx.opset()).since_version
    if version < 21:
        if scale.size != groups:
            ctx.fail(node, f"GroupNormalization-{version} expects one scale per group, got {scale.size}")
        factor = max(standardize_constant(eps, scale[g:g + 1], per * spatial) for g in range(groups))
    else:
        if scale.size != channels:
            ctx.fail(node, f"GroupNormalization-{version} expects one scale per channel, got {scale.size}")
        factor = max(standardize_constant(eps, scale[g * per:(g + 1) * per], spatial) for g in range(groups))
    return _finish(node, ctx, factor, eps, 2, "GroupNormalization")


@rule("InstanceNormalization", inputs={"input": DATA, "scale": CONST, "B": AFFINE}, attrs=("epsilon", "consumed_inputs"),
      kind="nonlinear",
      constant="max|scale| / sqrt(epsilon) (0 for a single spatial entry); an input-dependent B adds its constant x sqrt(copies)")
def instance_norm(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    eps = _eps(node, ctx)
    spatial = int(np.prod(shape[2:]))
    scale = _const(node, ctx, 1).ravel()
    if len(shape) < 2 or scale.size != shape[1]:
        ctx.fail(node, f"expects one scale per channel, got {scale.size}")
    factor = max((standardize_constant(eps, scale[c:c + 1], spatial) for c in range(scale.size)), default=0.0)
    return _finish(node, ctx, factor, eps, 2, "InstanceNormalization")


# -- interval bounds on a domain: bounded whatever the input -------------------------------------
# |x_i - mean| <= sqrt((n - 1) var): sum_j (x_j - m)^2 >= (x_i - m)^2 + (x_i - m)^2 / (n - 1) (the others sum
# to -(x_i - m)), so each standardised entry lies in [-sqrt(n - 1), sqrt(n - 1)] and the output in
# beta +- |gamma| sqrt(n - 1).

def _per_channel(c: np.ndarray, rank: int) -> np.ndarray:
    return c.reshape((1, -1) + (1,) * (rank - 2))


@interval("LayerNormalization", "GroupNormalization", "InstanceNormalization")
def standardized_box(node, ctx):
    from lipaudit.ops.contract import schema

    x = node.inputs[0]
    shape = ctx.shape(x, node)
    scale = np.asarray(ctx.const(node.inputs[1]), dtype=np.float64)
    bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if bias_name and ctx.depends(bias_name):
        raise NoInterval("an input-dependent bias: no interval rule")
    bias = np.asarray(ctx.const(bias_name), dtype=np.float64) if bias_name else np.zeros(())
    if node.op == "LayerNormalization":
        axis = int(node.attrs.get("axis", -1)) % len(shape)
        n = int(np.prod(shape[axis:]))
    elif node.op == "InstanceNormalization":
        n = int(np.prod(shape[2:]))
        scale, bias = _per_channel(scale, len(shape)), _per_channel(bias, len(shape)) if bias.ndim else bias
    else:
        groups = int(node.attrs.get("num_groups", 1))
        n = shape[1] // max(groups, 1) * int(np.prod(shape[2:]))
        if schema(node.op, ctx.opset()).since_version < 21:
            raise NoInterval("GroupNormalization-18: no interval rule")
        scale, bias = _per_channel(scale, len(shape)), _per_channel(bias, len(shape)) if bias.ndim else bias
    half = np.abs(scale) * math.sqrt(max(n - 1, 0))
    try:
        lo, hi = np.broadcast_to(bias - half, shape), np.broadcast_to(bias + half, shape)
    except ValueError:
        raise NoInterval("scale or bias does not broadcast to the input") from None
    return [checked(Box(lo, hi).widened(), shape)] + [None] * (len(node.outputs) - 1)
