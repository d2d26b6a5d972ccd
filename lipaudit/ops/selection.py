"""GatherND and GatherElements with constant indices: selections with repeats.

Each output entry is one input entry, so the map is linear with a 0/1 matrix
having one 1 per row; its norm is ``sqrt(largest number of times one input
entry is read)``. Which entry each output reads is found by running the op
itself (onnx's reference evaluator) on the array of input positions, so the
ONNX semantics (negative indices, ``batch_dims``) are the specification's own.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import CONST, DATA, rule


def read_counts(node, ctx) -> np.ndarray:
    """How many output entries read each input entry."""
    from lipaudit.ops.box import NoInterval, evaluate

    shape = ctx.shape(node.inputs[0], node)
    positions = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    indices = np.asarray(ctx.const(node.inputs[1])).astype(np.int64)
    bad = _out_of_range(node, shape, indices)
    if bad:
        ctx.fail(node, bad)
    try:
        (picked,) = evaluate(node, ctx, {node.inputs[0]: positions, node.inputs[1]: indices}, outputs=node.outputs[:1])
    except NoInterval as exc:
        ctx.fail(node, f"the indices do not select entries of the data ({exc})")
    return np.bincount(np.asarray(picked, dtype=np.int64).ravel(), minlength=positions.size)


def _out_of_range(node, shape, indices) -> str | None:
    """Why the indices do not all address entries of the data (the reference kernel may wrap), or None."""
    if node.op == "GatherElements":
        if indices.ndim != len(shape):
            return "indices and data ranks differ"
        axis = int(node.attrs.get("axis", 0)) % len(shape)
        limits = np.array([shape[axis]])
        comps = indices.reshape(-1, 1)
    else:
        b = int(node.attrs.get("batch_dims", 0))
        k = indices.shape[-1] if indices.ndim else 0
        if indices.ndim < 1 or b + k > len(shape):
            return "the index tuples are longer than the data's rank"
        limits = np.array(shape[b:b + k])
        comps = indices.reshape(-1, k)
    if comps.size and (np.any(comps >= limits) or np.any(comps < -limits)):
        return "an index is out of range"
    return None


def _selection(node, ctx):
    counts = read_counts(node, ctx)
    copies = int(counts.max()) if counts.size else 0
    factor = math.sqrt(copies)
    ctx.note_factor(node, factor, f"a selection; one input entry is read at most {copies} time(s)")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


def _gather_nd_axes(node, ctx) -> set[int]:
    return set() if int(node.attrs.get("batch_dims", 0)) >= 1 else {0}


@rule("GatherND", inputs={"data": DATA, "indices": CONST}, attrs=("batch_dims",), kind="linear",
      batch_axes=_gather_nd_axes, constant="sqrt(largest number of times one input entry is read)")
def gather_nd(node, ctx):
    return _selection(node, ctx)


def _gather_elements_axes(node, ctx) -> set[int]:
    rank = len(ctx.graph.shapes.get(node.inputs[0], ())) or 1
    return {int(node.attrs.get("axis", 0)) % rank}


@rule("GatherElements", inputs={"data": DATA, "indices": CONST}, attrs=("axis",), kind="linear",
      batch_axes=_gather_elements_axes, constant="sqrt(largest number of times one input entry is read)")
def gather_elements(node, ctx):
    return _selection(node, ctx)
