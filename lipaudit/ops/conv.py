"""Conv and ConvTranspose: the per-layer bounds of :mod:`lipaudit.bounds`, BatchNorm folded in."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds import ConvSpec, conv_bounds, fold_bn_into_conv
from lipaudit.ops import AFFINE, CONST, DATA, rule
from lipaudit.ops.attrs import resolve_pads, transpose_pads
from lipaudit.ops.context import LayerRecord
from lipaudit.values import BoundResult, Kind

CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
TRANSPOSE_ATTRS = CONV_ATTRS + ("output_padding", "output_shape")


def conv_layer(node, ctx) -> tuple[ConvSpec | None, LayerRecord]:
    """The layer's :class:`ConvSpec` (BN folded in) and a record without values yet.

    The spec is ``None`` when the kernel (or a folded BatchNorm) is not finite:
    the layer's values are then infinite (see :func:`nonfinite_values`).
    """
    transpose = node.op == "ConvTranspose"
    weight = ctx.const(node.inputs[1])
    if weight is None:
        ctx.fail(node, "the kernel is not a constant")
    if weight.ndim < 3:
        ctx.fail(node, f"kernel of rank {weight.ndim}: a conv kernel has rank >= 3")
    in_shape = ctx.shape(node.inputs[0], node)
    spatial = tuple(in_shape[2:])
    d = weight.ndim - 2
    if len(spatial) != d:
        ctx.fail(node, f"input of rank {len(in_shape)} for a kernel of rank {weight.ndim}")
    k = list(node.attrs.get("kernel_shape", weight.shape[2:]))
    if tuple(k) != tuple(weight.shape[2:]):
        ctx.fail(node, f"kernel_shape {k} differs from the weight's spatial shape {list(weight.shape[2:])}")
    s = list(node.attrs.get("strides", [1] * d))
    dil = list(node.attrs.get("dilations", [1] * d))
    groups = int(node.attrs.get("group", 1))
    output_padding = list(node.attrs.get("output_padding", [0] * d))
    if transpose:
        pads = transpose_pads(node.attrs, spatial, k, s, dil, output_padding)
    else:
        pads = resolve_pads(node.attrs, spatial, k, s, dil)
    if any(p < 0 for p in pads):
        ctx.fail(node, f"negative pads {pads} are not defined for {node.op}")
    w = np.asarray(weight, dtype=np.float64)
    folded = []
    for side, plan in (("after", ctx.fold_after), ("before", ctx.fold_before)):
        for bn_name, scale in plan.get(node.name, []):
            w = fold_bn_into_conv(w, scale, side=side, groups=groups, transpose=transpose)
            folded.append(bn_name)
    record = LayerRecord(
        name=node.name, op=node.op, values={}, kernel_shape=list(weight.shape[2:]), strides=s, pads=pads,
        dilations=dil, groups=groups, padding_mode="zeros", input_shape=list(in_shape),
        weight_shape=list(weight.shape), folded=folded,
    )
    if not np.all(np.isfinite(w)):
        return None, record
    try:
        spec = ConvSpec(
            w, tuple(s), tuple(dil), groups, tuple(pads), "zeros", transpose, spatial,
            tuple(output_padding) if transpose else None, name=node.name,
        )
    except ValueError as exc:
        ctx.fail(node, str(exc))
    return spec, record


def nonfinite_values(methods) -> dict[str, BoundResult]:
    """A layer whose weights hold NaN or inf: no finite bound exists; every value is inf (an upper bound)."""
    values = {m: BoundResult(math.inf, Kind.UPPER, m, detail={"nonfinite_weights": True}) for m in methods}
    values["certified"] = BoundResult(math.inf, Kind.UPPER, "certified", detail={"nonfinite_weights": True})
    return values


def layer_values(spec: ConvSpec, ctx) -> dict:
    try:
        return conv_bounds(spec, ctx.conv_methods, ctx.settings.bounds)
    except ValueError as exc:  # e.g. --device cuda without a GPU
        from lipaudit.errors import UsageError

        raise UsageError(f"layer {spec.name}: {exc}") from None


def _conv_batch_axes(node, ctx) -> set[int]:
    return set()  # acts on axes 1.. only; the batch axis is checked to stay axis 0 by the engine


@rule("Conv", inputs={"X": DATA, "W": CONST, "B": AFFINE}, attrs=CONV_ATTRS, kind="linear", batch_axes=_conv_batch_axes,
      constant="the layer's per-method bound (BN folded in); an input-dependent bias adds its constant x sqrt(copies)")
def conv(node, ctx):
    return _conv(node, ctx)


@rule("ConvTranspose", inputs={"X": DATA, "W": CONST, "B": AFFINE}, attrs=TRANSPOSE_ATTRS, kind="linear",
      batch_axes=_conv_batch_axes,
      constant="the adjoint conv's per-method bound (BN folded in); an input-dependent bias adds its constant x sqrt(copies)")
def conv_transpose(node, ctx):
    return _conv(node, ctx)


def _conv(node, ctx):
    x = node.inputs[0]
    spec, record = conv_layer(node, ctx)
    if spec is None:
        record.values = nonfinite_values(ctx.conv_methods)
        ctx.note("LIP010", node, f"layer {node.name}: the kernel (or a BatchNorm folded into it) holds NaN or inf")
    else:
        cached = ctx.precomputed.pop(node.name, None)
        record.values = cached if cached is not None else layer_values(spec, ctx)
    factors = ctx.record_layer(record)
    out = ctx.scale(ctx.lip(x), factors)
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if ctx.depends(bias):
        out = ctx.add([out, ctx.scale(ctx.lip(bias), ctx.broadcast_factor(bias, node.outputs[0], node))])
    return [out]
