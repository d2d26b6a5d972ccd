"""Ops that move, copy or select entries: reshapes (1), slices (<= 1), copies (sqrt of copies), concat (RSS)."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds.conv import max_copies
from lipaudit.ops import rule

PERMUTATIONS = {
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast",
    "DepthToSpace", "SpaceToDepth", "CastLike",
}
SELECTIONS = {"Slice", "Split", "Crop"}  # every output entry is a distinct input entry


@rule(*PERMUTATIONS)
def permutation(node, ctx):
    lip = ctx.lip(node.inputs[0])
    return [lip] + [None] * (len(node.outputs) - 1)  # Dropout's mask output is constant-shaped, unused


@rule(*SELECTIONS)
def selection(node, ctx):
    lip = ctx.lip(node.inputs[0])
    return [lip for _ in node.outputs]


@rule("Gather")
def gather(node, ctx):
    if ctx.lip(node.inputs[1]) is not None:
        ctx.fail(node, "indices depend on the input: the selection is not continuous")
    idx = ctx.const(node.inputs[1])
    shape = ctx.shape(node.inputs[0], node)
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    wrapped = np.mod(idx.astype(np.int64).ravel(), shape[axis])
    copies = int(np.bincount(wrapped).max()) if wrapped.size else 1
    factor = math.sqrt(copies)
    if copies > 1:
        ctx.note_factor(node, factor, "gather repeats indices")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("Expand", "Tile")
def copies(node, ctx):
    factor = ctx.broadcast_factor(node.inputs[0], node.outputs[0], node)
    ctx.note_factor(node, factor, "copies of the input")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("Concat")
def concat(node, ctx):
    # ||(da, db)|| = sqrt(||da||^2 + ||db||^2)
    return [ctx.rss([ctx.lip(x) for x in node.inputs])]


@rule("Pad")
def pad(node, ctx):
    mode = node.attrs.get("mode", "constant")
    if mode == "constant":
        return [ctx.lip(node.inputs[0])]  # an embedding plus a constant: norm 1
    shape = ctx.shape(node.inputs[0], node)
    pads = node.attrs.get("pads")
    if pads is None and len(node.inputs) > 1:
        p = ctx.const(node.inputs[1])
        if p is None:
            ctx.fail(node, "pads depend on the input")
        pads = [int(v) for v in p]
    axes = list(range(len(shape)))
    if len(node.inputs) > 3 and node.inputs[3]:
        axes = [int(a) % len(shape) for a in ctx.const(node.inputs[3])]
    k = len(axes)
    mode_name = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if mode_name is None:
        ctx.fail(node, f"unknown pad mode {mode!r}")
    counts = [max_copies(mode_name, shape[a], max(pads[i], 0), max(pads[i + k], 0)) for i, a in enumerate(axes)]
    factor = math.sqrt(float(np.prod(counts)))
    ctx.note_factor(node, factor, f"{mode} padding copies entries")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]
