"""Conv and ConvTranspose: the per-layer bounds of :mod:`lipaudit.bounds`, BatchNorm folded in."""

from __future__ import annotations

import numpy as np

from lipaudit.bounds import ConvSpec, conv_bounds, fold_bn_into_conv
from lipaudit.ops import rule
from lipaudit.ops.attrs import resolve_pads, transpose_pads
from lipaudit.ops.context import LayerRecord


def conv_layer(node, ctx) -> tuple[ConvSpec, LayerRecord]:
    """The layer's :class:`ConvSpec` (BN folded in) and a record without values yet."""
    transpose = node.op == "ConvTranspose"
    weight = ctx.const(node.inputs[1])
    if weight is None:
        ctx.fail(node, "the kernel is not a constant")
    in_shape = ctx.shape(node.inputs[0], node)
    spatial = tuple(in_shape[2:])
    d = weight.ndim - 2
    k = list(node.attrs.get("kernel_shape", weight.shape[2:]))
    s = list(node.attrs.get("strides", [1] * d))
    dil = list(node.attrs.get("dilations", [1] * d))
    groups = int(node.attrs.get("group", 1))
    output_padding = list(node.attrs.get("output_padding", [0] * d))
    if transpose:
        pads = transpose_pads(node.attrs, spatial, k, s, dil, output_padding)
    else:
        pads = resolve_pads(node.attrs, spatial, k, s, dil)
    w = np.asarray(weight, dtype=np.float64)
    folded = []
    for side, plan in (("after", ctx.fold_after), ("before", ctx.fold_before)):
        for bn_name, scale in plan.get(node.name, []):
            w = fold_bn_into_conv(w, scale, side=side, groups=groups, transpose=transpose)
            folded.append(bn_name)
    try:
        spec = ConvSpec(
            w, tuple(s), tuple(dil), groups, tuple(pads), "zeros", transpose, spatial,
            tuple(output_padding) if transpose else None, name=node.name,
        )
    except ValueError as exc:
        ctx.fail(node, str(exc))
    record = LayerRecord(
        name=node.name, op=node.op, values={}, kernel_shape=list(weight.shape[2:]), strides=s, pads=pads,
        dilations=dil, groups=groups, padding_mode="zeros", input_shape=list(in_shape),
        weight_shape=list(weight.shape), folded=folded,
    )
    return spec, record


def layer_values(spec: ConvSpec, ctx) -> dict:
    try:
        return conv_bounds(spec, ctx.conv_methods, ctx.settings.bounds)
    except ValueError as exc:  # e.g. --device cuda without a GPU
        from lipaudit.errors import UsageError

        raise UsageError(f"layer {spec.name}: {exc}") from None


@rule("Conv", "ConvTranspose")
def conv(node, ctx):
    x = node.inputs[0]
    if ctx.lip(x) is None:
        return [None]
    spec, record = conv_layer(node, ctx)
    cached = ctx.precomputed.pop(node.name, None)
    record.values = cached if cached is not None else layer_values(spec, ctx)
    factors = ctx.record_layer(record)
    return [ctx.scale(ctx.lip(x), factors)]
