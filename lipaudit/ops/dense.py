"""Gemm and MatMul with one constant operand: a dense layer, measured by its matrix norm."""

from __future__ import annotations

import numpy as np

from lipaudit.bounds import dense_bounds, fold_bn_into_dense
from lipaudit.ops import rule
from lipaudit.ops.context import LayerRecord


def dense_weight(node, ctx) -> tuple[str, np.ndarray] | None:
    """``(data input, W)`` with the layer acting as ``x -> W x`` on vectors; None if not dense."""
    a, b = node.inputs[:2]
    ca, cb = ctx.const(a), ctx.const(b)
    if node.op == "Gemm":
        alpha = float(node.attrs.get("alpha", 1.0))
        if cb is not None and ca is None:
            bm = cb.T if node.attrs.get("transB", 0) else cb
            return a, (bm.T if alpha == 1.0 else alpha * bm.T)
        if ca is not None and cb is None:
            am = ca.T if node.attrs.get("transA", 0) else ca
            return b, (am if alpha == 1.0 else alpha * am)
        return None
    if cb is not None and ca is None and cb.ndim == 2:
        return a, cb.T  # x @ W acts on rows
    if ca is not None and cb is None and ca.ndim == 2:
        return b, ca  # W @ x acts on columns
    return None


@rule("Gemm", "MatMul")
def dense(node, ctx):
    found = dense_weight(node, ctx)
    if found is None:
        if ctx.lip(node.inputs[0]) is not None and ctx.lip(node.inputs[1]) is not None:
            ctx.fail(node, "product of two input-dependent tensors has no global Lipschitz constant")
        ctx.fail(node, "only a 2-D constant weight is supported")
    x, w = found
    if node.op == "Gemm" and node.attrs.get("transA", 0) and x == node.inputs[0]:
        ctx.fail(node, "transA on the data input is not supported")
    folded = []
    for side, plan in (("after", ctx.fold_after), ("before", ctx.fold_before)):
        for bn_name, scale in plan.get(node.name, []):
            w = fold_bn_into_dense(w, scale, side=side)
            folded.append(bn_name)
    try:
        values = dense_bounds(w, ctx.conv_methods, seed=ctx.settings.bounds.hopm.seed)
    except ValueError as exc:
        ctx.fail(node, str(exc))
    if "exact" in ctx.compositions or "exact" in ctx.conv_methods:
        values["exact"] = values["tn"]
    factors = ctx.record_layer(
        LayerRecord(
            name=node.name, op=node.op, values=values, weight_shape=list(w.shape),
            input_shape=list(ctx.graph.shapes.get(x, ())) or None, folded=folded,
        )
    )
    return [ctx.scale(ctx.lip(x), factors)]
