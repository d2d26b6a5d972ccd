"""Gemm and MatMul with one constant operand: a dense layer, measured by its matrix norm."""

from __future__ import annotations

import numpy as np

from lipaudit.bounds import dense_bounds, fold_bn_into_dense
from lipaudit.ops import AFFINE, DATA, rule
from lipaudit.ops.context import LayerRecord
from lipaudit.ops.conv import nonfinite_values
from lipaudit.values import BoundResult, Kind


def dense_weight(node, ctx) -> tuple[str, np.ndarray] | None:
    """``(data input, W)``: the layer maps each vector along the data's contracted axis ``v`` to ``W v``.

    Gemm ``Y = alpha op(A) op(B) + beta C``: with data ``A`` every row of ``op(A)``
    maps by ``W = alpha op(B)^T`` (transA only changes which axis of ``A`` is
    contracted); with data ``B`` every column of ``op(B)`` maps by ``W = alpha op(A)``.
    MatMul ``A @ B`` with a 2-D constant: data ``A`` -> ``W = B^T`` on its last
    axis; data ``B`` -> ``W = A`` on its second-to-last axis. None if not dense.
    """
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
        return a, cb.T
    if ca is not None and cb is None and ca.ndim == 2:
        return b, ca
    # a 1-D constant is a vector: x @ v contracts x's last axis with v, v @ x x's second-to-last
    if cb is not None and ca is None and cb.ndim == 1:
        return a, cb.reshape(1, -1)
    if ca is not None and cb is None and ca.ndim == 1:
        return b, ca.reshape(1, -1)
    return None


BATCHED_LIMIT = 4096  # most distinct weight slices measured for a batched MatMul


def batched_weights(node, ctx) -> tuple[str, list[np.ndarray]] | None:
    """MatMul with a constant of rank >= 3: ``(data, [W_i])``, one matrix per slice of the data's batch dims.

    Slices of the data are disjoint, so the constant is the largest over them. A
    data slice broadcast against several weight slices maps each of its vectors
    to all of their products at once: ``v -> (W_1 v, W_2 v, ...)``, whose matrix
    stacks the ``W_j`` (``[B_1 | B_2 | ...]^T`` for ``x @ B``, ``[A_1; A_2; ...]``
    for ``A @ x``).
    """
    if node.op != "MatMul":
        return None
    a, b = node.inputs[:2]
    ca, cb = ctx.const(a), ctx.const(b)
    if (ca is None) == (cb is None):
        return None
    x, c = (a, np.asarray(cb)) if cb is not None else (b, np.asarray(ca))
    x_shape = ctx.shape(x, node)
    if c.ndim < 3 or len(x_shape) < 2:
        return None
    xb, cb_shape = tuple(x_shape[:-2]), tuple(c.shape[:-2])
    try:
        out_b = np.broadcast_shapes(xb, cb_shape)
    except ValueError:
        ctx.fail(node, f"batch dims {list(xb)} and {list(cb_shape)} do not broadcast")
    rank = len(out_b)
    xb_full, cb_full = (1,) * (rank - len(xb)) + xb, (1,) * (rank - len(cb_shape)) + cb_shape
    c_full = c.reshape(cb_full + c.shape[-2:])
    groups: dict[tuple, list[np.ndarray]] = {}
    for o in np.ndindex(*out_b):
        xi = tuple(i if n > 1 else 0 for i, n in zip(o, xb_full))
        ci = tuple(i if n > 1 else 0 for i, n in zip(o, cb_full))
        groups.setdefault(xi, []).append(c_full[ci])
        if len(groups) > BATCHED_LIMIT:
            ctx.fail(node, f"more than {BATCHED_LIMIT} weight slices")
    if x == a:  # rows of x_i map by [B_1 | B_2 | ...]^T
        mats = [np.concatenate(g, axis=1).T for g in groups.values()]
    else:  # columns of x_i map by [A_1; A_2; ...]
        mats = [np.concatenate(g, axis=0) for g in groups.values()]
    unique = {m.tobytes() + str(m.shape).encode(): m for m in mats}
    return x, list(unique.values())


def contracted_axis(node, ctx) -> int | None:
    """The axis of the data input that the layer contracts (None when unknown)."""
    found = dense_weight(node, ctx)
    if found is None:
        return None
    x = found[0]
    rank = len(ctx.graph.shapes.get(x, ()))
    if node.op == "Gemm":
        trans = node.attrs.get("transA" if x == node.inputs[0] else "transB", 0)
        if x == node.inputs[0]:
            return 0 if trans else 1
        return 1 if trans else 0
    return rank - 1 if x == node.inputs[0] else max(rank - 2, 0)


def _dense_batch_axes(node, ctx) -> set[int]:
    axis = contracted_axis(node, ctx)
    return {0} if axis is None else {axis}


@rule("Gemm", inputs={"A": DATA, "B": DATA, "C": AFFINE}, attrs=("alpha", "beta", "transA", "transB", "broadcast"),
      kind="linear", batch_axes=_dense_batch_axes,
      constant="spectral norm of alpha op(W) (exact, bracketed); an input-dependent C adds |beta| x its constant x sqrt(copies)")
def gemm(node, ctx):
    return _dense(node, ctx)


@rule("MatMul", inputs={"A": DATA, "B": DATA}, kind="linear", batch_axes=_dense_batch_axes,
      constant="spectral norm of the constant operand (exact, bracketed): a 1-D one as a 1-row matrix; for a batched "
               "one (rank >= 3) the largest over data slices of the stacked slice matrices it meets")
def matmul(node, ctx):
    return _dense(node, ctx)


def _dense(node, ctx):
    c = node.inputs[2] if node.op == "Gemm" and len(node.inputs) > 2 else ""
    if not (ctx.depends(node.inputs[0]) or ctx.depends(node.inputs[1])):
        return [_bias(node, ctx, c, None)]  # only C depends on the input
    found = dense_weight(node, ctx)
    if found is None:
        if ctx.depends(node.inputs[0]) and ctx.depends(node.inputs[1]):
            if node.op == "MatMul":
                from lipaudit.ops.products import bilinear

                return [bilinear(node, ctx, node.inputs[0], node.inputs[1])]  # on --input-range only
            ctx.fail(node, "product of two input-dependent tensors has no global Lipschitz constant",
                     hint="use --output/--until to certify up to a value before it")
        batched = batched_weights(node, ctx)
        if batched is None:
            ctx.fail(node, "the constant operand's shape is not supported")
        return [_batched(node, ctx, *batched)]
    x, w = found
    folded = []
    w = np.asarray(w, dtype=np.float64)
    for side, plan in (("after", ctx.fold_after), ("before", ctx.fold_before)):
        for bn_name, scale in plan.get(node.name, []):
            w = fold_bn_into_dense(w, scale, side=side)
            folded.append(bn_name)
    if np.all(np.isfinite(w)):
        try:
            values = dense_bounds(w, ctx.conv_methods, seed=ctx.settings.bounds.hopm.seed)
        except ValueError as exc:
            ctx.fail(node, str(exc))
        if "exact" in ctx.compositions or "exact" in ctx.conv_methods:
            values["exact"] = values["tn"]
    else:
        values = nonfinite_values(tuple(m for m in ctx.conv_methods if m in ("tn", "f4", "fro")) or ("tn",))
        ctx.note("LIP010", node, f"layer {node.name}: the weight (or a BatchNorm folded into it) holds NaN or inf")
    factors = ctx.record_layer(
        LayerRecord(
            name=node.name, op=node.op, values=values, weight_shape=list(w.shape),
            input_shape=list(ctx.graph.shapes.get(x, ())) or None, folded=folded,
        )
    )
    return [_bias(node, ctx, c, ctx.scale(ctx.lip(x), factors))]


def _batched(node, ctx, x: str, mats: list[np.ndarray]):
    """A batched MatMul: every method's value is the largest over the slices' matrices (a block-diagonal map)."""
    if ctx.fold_after.get(node.name) or ctx.fold_before.get(node.name):
        ctx.fail(node, "a BatchNorm fold into a batched MatMul is not supported")
    if not all(np.all(np.isfinite(m)) for m in mats):
        values = nonfinite_values(tuple(m for m in ctx.conv_methods if m in ("tn", "f4", "fro")) or ("tn",))
        ctx.note("LIP010", node, f"layer {node.name}: the weight holds NaN or inf")
    else:
        per = [dense_bounds(np.asarray(m, dtype=np.float64), ctx.conv_methods, seed=ctx.settings.bounds.hopm.seed)
               for m in mats]
        values = {}
        for method in per[0]:
            results = [p[method] for p in per]
            top = max(results, key=lambda r: r.value)
            sound = all(r.kind.is_sound_upper for r in results)
            values[method] = top if sound or not top.kind.is_sound_upper else BoundResult(
                top.value, Kind.ESTIMATE, top.method, top.iterations, top.time_s, None, dict(top.detail))
        if "exact" in ctx.compositions or "exact" in ctx.conv_methods:
            values["exact"] = values["tn"]
    factors = ctx.record_layer(LayerRecord(
        name=node.name, op=node.op, values=values, weight_shape=list(np.shape(ctx.const(node.inputs[1]) if ctx.const(node.inputs[1]) is not None else ctx.const(node.inputs[0]))),
        input_shape=list(ctx.graph.shapes.get(x, ())) or None, note=f"batched constant: largest of {len(mats)} slice matrices"))
    return ctx.scale(ctx.lip(x), factors)


def _bias(node, ctx, c: str, out):
    """Add beta * C's constant (broadcast copies counted) when C depends on the input."""
    if not ctx.depends(c):
        return out
    beta = abs(float(node.attrs.get("beta", 1.0)))
    return ctx.add([out, ctx.scale(ctx.lip(c), beta * ctx.broadcast_factor(c, node.outputs[0], node))])
