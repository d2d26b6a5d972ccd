"""Ops that move, copy or select entries: reshapes (1), slices (<= 1), copies (sqrt of copies), concat (RSS)."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds.conv import max_copies
from lipaudit.ops import AFFINE, CONST, DATA, rule

FLOAT_IDENTITY = {1, 11}  # float32, float64: no rounding beyond the model's own arithmetic
FLOAT_NARROW = {10: "float16", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2",
                20: "float8e5m2fnuz", 23: "float4e2m1"}


def _rank(ctx, name) -> int:
    return len(ctx.graph.shapes.get(name, ()))


def _axis(node, ctx, name="axis", default=0) -> set[int]:
    rank = _rank(ctx, node.inputs[0])
    return {int(node.attrs.get(name, default)) % max(rank, 1)}


@rule("Flatten", "Squeeze", "Unsqueeze", "Identity", "DepthToSpace", "SpaceToDepth",
      inputs={"input": DATA, "data": DATA, "axes": CONST},
      attrs=("axis", "axes", "blocksize", "mode"), kind="linear",
      constant="1 (the output is a permutation of the input's entries; the engine checks the batch axis)")
def permutation(node, ctx):
    return [ctx.lip(node.inputs[0])]


@rule("Reshape", inputs={"data": DATA, "shape": CONST}, attrs=("allowzero", "shape", "consumed_inputs"), kind="linear",
      constant="1 (same entries, new shape)")
def reshape(node, ctx):
    return [ctx.lip(node.inputs[0])]


def _transpose_axes(node, ctx) -> set[int]:
    perm = node.attrs.get("perm")
    return set() if perm is not None and int(perm[0]) == 0 else {0}


@rule("Transpose", inputs={"data": DATA}, attrs=("perm",), kind="linear", batch_axes=_transpose_axes,
      constant="1 (a permutation of the entries)")
def transpose(node, ctx):
    return [ctx.lip(node.inputs[0])]


@rule("Dropout", inputs={"data": DATA, "ratio": CONST, "training_mode": CONST},
      attrs=("seed", "ratio", "is_test", "consumed_inputs"), outputs=("output",), kind="linear",
      constant="1 in inference mode (the identity); training mode refused")
def dropout(node, ctx):
    reason = dropout_training_reason(node, ctx.const, ctx.opset())
    if reason:
        ctx.fail(node, reason, hint=None)
    return [ctx.lip(node.inputs[0])]


def dropout_training_reason(node, const, opset: int) -> str | None:
    """Why this Dropout draws a random mask (training mode), or None; ``const(name)`` gives a constant's value."""
    from lipaudit.ops.contract import schema

    sch = schema("Dropout", opset)
    version = sch.since_version if sch is not None else opset
    if version < 7 and not node.attrs.get("is_test", 0):
        return f"Dropout-{version} with is_test=0 (the default) drops entries at random (training mode)"
    if len(node.inputs) > 2 and node.inputs[2]:
        mode = const(node.inputs[2])
        if mode is None:
            return "training_mode is not a constant: entries may be dropped at random"
        mode = np.asarray(mode)
        if mode.size != 1 or bool(mode.reshape(())):
            return "training_mode is true: entries are dropped at random"
    return None


@rule("Cast", "CastLike", inputs={"input": DATA, "target_type": CONST}, attrs=("to", "saturate", "round_mode"),
      kind="linear", constant="1 for casts to float32/float64; casts that round to a narrower float, to an integer "
                              "or to bool are refused (not continuous)")
def cast(node, ctx):
    if node.op == "Cast":
        to = int(node.attrs.get("to", 0))
    else:
        from onnx import helper

        target = ctx.const(node.inputs[1])
        to = helper.np_dtype_to_tensor_dtype(np.asarray(target).dtype)
    if to in FLOAT_IDENTITY:
        return [ctx.lip(node.inputs[0])]
    if to in FLOAT_NARROW:
        ctx.fail(node, f"rounds to {FLOAT_NARROW[to]}: rounding is not continuous, so it has no Lipschitz constant "
                       f"(lipaudit certifies exact-arithmetic maps)")
    ctx.fail(node, "casts to an integer, bool or non-float type, which is not continuous")


@rule("Slice", inputs={"data": DATA, "starts": CONST, "ends": CONST, "axes": CONST, "steps": CONST},
      attrs=("axes", "starts", "ends"), kind="linear",
      batch_axes=lambda node, ctx: _slice_axes(node, ctx),
      constant="1 (every output entry is a distinct input entry)")
def slice_(node, ctx):
    return [ctx.lip(node.inputs[0])]


def _slice_axes(node, ctx) -> set[int]:
    rank = _rank(ctx, node.inputs[0])
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 3 and node.inputs[3]:
        axes = np.asarray(ctx.const(node.inputs[3])).ravel().tolist()
    if axes is None:
        starts = node.attrs.get("starts")
        count = len(starts) if starts is not None else np.asarray(ctx.const(node.inputs[1])).size
        axes = list(range(count))
    return {int(a) % max(rank, 1) for a in axes}


@rule("Split", inputs={"input": DATA, "split": CONST}, attrs=("axis", "split", "num_outputs"), kind="linear",
      batch_axes=_axis, constant="1 for each output (each is a selection of distinct entries)")
def split(node, ctx):
    lip = ctx.lip(node.inputs[0])
    return [lip for _ in node.outputs]


@rule("Gather", inputs={"data": DATA, "indices": CONST}, attrs=("axis",), kind="linear", batch_axes=_axis,
      constant="sqrt(largest number of times one index repeats)")
def gather(node, ctx):
    idx = np.asarray(ctx.const(node.inputs[1]))
    shape = ctx.shape(node.inputs[0], node)
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    flat = idx.astype(np.int64).ravel()
    if flat.size and (flat.max() >= shape[axis] or flat.min() < -shape[axis]):
        ctx.fail(node, "an index is out of range")
    wrapped = np.mod(flat, shape[axis])
    copies = int(np.bincount(wrapped).max()) if wrapped.size else 1
    factor = math.sqrt(copies)
    if copies > 1:
        ctx.note_factor(node, factor, "gather repeats indices")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


def _grown_axes(node, ctx) -> set[int]:
    src, dst = ctx.graph.shapes.get(node.inputs[0]), ctx.graph.shapes.get(node.outputs[0])
    if src is None or dst is None:
        return {0}
    src = (1,) * (len(dst) - len(src)) + tuple(src)
    return {a for a, (n, m) in enumerate(zip(src, dst)) if n != m}


@rule("Expand", "Tile", inputs={"input": DATA, "shape": CONST, "repeats": CONST}, kind="linear", batch_axes=_grown_axes,
      min_version=6, constant="sqrt(copies): every entry is copied the same number of times")
def copies(node, ctx):
    factor = ctx.broadcast_factor(node.inputs[0], node.outputs[0], node)
    ctx.note_factor(node, factor, "copies of the input")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("Concat", inputs={"inputs": DATA}, attrs=("axis",), kind="linear", batch_axes=_axis,
      constant="root-sum-square of the inputs' constants: ||(da, db)|| = sqrt(||da||^2 + ||db||^2)")
def concat(node, ctx):
    return [ctx.rss([ctx.lip(x) for x in node.inputs])]


def _pad_amounts(node, ctx, rank) -> tuple[list[int], list[int]] | None:
    """``(axes, pads)`` with pads ``(begin..., end...)`` over those axes."""
    pads = node.attrs.get("pads", node.attrs.get("paddings"))
    if pads is None and len(node.inputs) > 1 and node.inputs[1]:
        pads = np.asarray(ctx.const(node.inputs[1])).ravel().tolist()
    if pads is None:
        return None
    axes = list(range(rank))
    if len(node.inputs) > 3 and node.inputs[3]:
        axes = [int(a) % rank for a in np.asarray(ctx.const(node.inputs[3])).ravel()]
    if len(pads) != 2 * len(axes):
        return None
    return axes, [int(p) for p in pads]


def _pad_axes(node, ctx) -> set[int]:
    rank = _rank(ctx, node.inputs[0])
    found = _pad_amounts(node, ctx, rank)
    if found is None:
        return {0}
    axes, pads = found
    k = len(axes)
    return {a for i, a in enumerate(axes) if pads[i] or pads[i + k]}


@rule("Pad", inputs={"data": DATA, "pads": CONST, "constant_value": AFFINE, "axes": CONST},
      attrs=("mode", "pads", "paddings", "value"), kind="linear", batch_axes=_pad_axes,
      constant="constant mode: 1 (crop and embed); reflect/edge/wrap: sqrt of the largest copy count of the cropped "
               "axis; an input-dependent constant_value adds its constant x sqrt(padded entries)")
def pad(node, ctx):
    mode = node.attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    shape = ctx.shape(node.inputs[0], node)
    found = _pad_amounts(node, ctx, len(shape))
    if found is None:
        ctx.fail(node, "pads do not match the input's rank")
    axes, pads = found
    k = len(axes)
    lip = ctx.lip(node.inputs[0])
    if mode == "constant":
        out = lip  # crop (negative pads) then embed: a selection, norm <= 1
        value = node.inputs[2] if len(node.inputs) > 2 else ""
        if ctx.depends(value):
            added = int(np.prod(ctx.shape(node.outputs[0], node))) - int(np.prod(
                [max(n + min(pads[axes.index(a)], 0) + min(pads[axes.index(a) + k], 0), 0) if a in axes else n
                 for a, n in enumerate(shape)]))
            out = ctx.add([out, ctx.scale(ctx.lip(value), math.sqrt(max(added, 0)))])
        return [out]
    mode_name = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if mode_name is None:
        ctx.fail(node, f"unknown pad mode {mode!r}")
    counts = []
    for i, a in enumerate(axes):
        begin, end = pads[i], pads[i + k]
        n = shape[a] + min(begin, 0) + min(end, 0)  # negative pads crop first
        if n < 1:
            ctx.fail(node, f"axis {a} is cropped to nothing")
        counts.append(max_copies(mode_name, n, max(begin, 0), max(end, 0)))
    factor = math.sqrt(float(np.prod(counts)))
    ctx.note_factor(node, factor, f"{mode} padding copies entries")
    return [ctx.scale(lip, factor)]
