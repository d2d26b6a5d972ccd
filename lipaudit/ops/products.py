"""Products of two input-dependent tensors, certified on the input domain.

There is no global constant for ``a(x) * b(x)``, but on a box of inputs, with
``x, y`` in it::

    a(x) b(x) - a(y) b(y) = a(x) (b(x) - b(y)) + (a(x) - a(y)) b(y)

so ``||a b (x) - a b (y)|| <= sup|a| L_b ||x - y|| + sup|b| L_a ||x - y||``, with the
sups taken from the interval bounds (:mod:`lipaudit.ops.box`). With broadcasting
the factors are sharper: a broadcast operand ``b`` multiplies a group of
entries of ``a`` per entry, so its factor is ``max_j sqrt(sum_{i in group j} sup|a_i|^2)``.

- division ``a / b`` with ``b`` bounded away from 0 is ``a * (1/b)``, where
  ``|1/b(x) - 1/b(y)| <= |b(x) - b(y)| / min|b|^2`` entry-wise;
- a matrix product ``A(x) @ B(x)`` (attention, Softmax-weighted sums) uses
  ``||A dB||_F <= ||A||_2 ||dB||_F``, with ``||A||_2 <= || |A| ||_2 <= ||sup|A| ||_2``
  (the spectral norm is monotone on non-negative matrices), per matrix of the batch.
"""

from __future__ import annotations

import numpy as np

from lipaudit.values import SAFETY


def _grouped_sup(weights: np.ndarray, operand_shape, out_shape) -> float:
    """``max_j sqrt(sum_{i in copies of j} weights_i^2)`` over the entries ``j`` of a broadcast operand.

    ``weights`` is broadcast to ``out_shape``; the operand's entry ``j`` is used by
    every output entry along the axes where the operand has size 1 (or is missing).
    """
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), out_shape)
    if w.size == 0:
        return 0.0
    operand = (1,) * (len(out_shape) - len(operand_shape)) + tuple(operand_shape)
    axes = tuple(a for a, (n, m) in enumerate(zip(operand, out_shape)) if n == 1 and m != 1)
    sq = np.sum(np.square(w), axis=axes) if axes else np.square(w)
    return float(np.sqrt(np.max(sq))) * SAFETY


def _lipschitz_grouped(ctx, other: str, operand_shape, out_shape) -> float:
    """The grouped factor from the center and a Lipschitz constant instead of entry-wise bounds.

    For a group ``G`` of entries of ``other`` (the copies one entry of the operand multiplies),
    ``||other_G(x)|| <= ||other_G(x0)|| + ||other(x) - other(x0)|| <= ||other_G(x0)|| + L R`` on the
    domain (center ``x0``, l2 radius ``R``). Entry-wise bounds would count the deviation once per
    entry of the group (sqrt(|G|) times). Only when ``other`` is not broadcast (each entry once).
    """
    import math

    from lipaudit.ops.box import Box

    center = ctx.centers.get(other)
    lip = ctx.lips.get(other)
    if tuple(ctx.graph.shapes.get(other, ())) != tuple(out_shape) or not isinstance(center, Box) \
            or not isinstance(lip, dict):
        return math.inf
    L = lip.get("certified", math.inf)
    if not math.isfinite(L):
        return math.inf
    found = _grouped_sup(center.mag(), operand_shape, out_shape) + L * ctx.domain_radius * SAFETY
    return found if math.isfinite(found) else math.inf  # 0 x an infinite radius is NaN


def product(node, ctx, a: str, b: str):
    """Lipschitz constant of ``a * b`` (both input-dependent) on the domain."""
    out = node.outputs[0]
    what = "a product of two input-dependent tensors"
    ba, bb = ctx.domain_box(node, a, what), ctx.domain_box(node, b, what)
    out_shape = ctx.shape(out, node)
    fa = min(_grouped_sup(bb.mag(), ctx.shape(a, node), out_shape),  # multiplies L_a
             _lipschitz_grouped(ctx, b, ctx.shape(a, node), out_shape))
    fb = min(_grouped_sup(ba.mag(), ctx.shape(b, node), out_shape),
             _lipschitz_grouped(ctx, a, ctx.shape(b, node), out_shape))
    ctx.used_domain(node, f"product on the domain: sup|{b}| x L_a + sup|{a}| x L_b (grouped by broadcast)",
                    max(fa, fb))
    ctx.note_factor(node, max(fa, fb), "product certified on the input domain")
    return ctx.add([ctx.scale(ctx.lip(a), fa), ctx.scale(ctx.lip(b), fb)])


def quotient(node, ctx, a: str, b: str):
    """Lipschitz constant of ``a / b`` with an input-dependent divisor bounded away from 0 on the domain."""
    out = node.outputs[0]
    what = "a division by an input-dependent tensor"
    bb = ctx.domain_box(node, b, what)
    min_abs = np.where((bb.lo > 0) | (bb.hi < 0), np.minimum(np.abs(bb.lo), np.abs(bb.hi)), 0.0)
    if np.any(min_abs <= 0):
        ctx.fail(node, f"the divisor {b!r} is not bounded away from 0 on the input domain "
                       f"(its bounds reach {bb.describe()}), so the division has no Lipschitz constant there",
                 hint="narrow --input-range, or use --output/--until to certify up to a value before it")
    out_shape = ctx.shape(out, node)
    inv = 1.0 / min_abs  # sup |1/b|
    if ctx.depends(a):
        ba = ctx.domain_box(node, a, what)
        mag_a = ba.mag()
    else:
        mag_a = np.abs(np.asarray(ctx.const(a), dtype=np.float64))
    fa = _grouped_sup(inv, ctx.shape(a, node) if ctx.depends(a) else np.shape(mag_a), out_shape)
    fb = _grouped_sup(np.broadcast_to(mag_a, out_shape) * np.broadcast_to(inv * inv, out_shape), ctx.shape(b, node),
                      out_shape)
    ctx.used_domain(node, f"division on the domain: sup|1/{b}| x L_a + sup|{a}| / min|{b}|^2 x L_b", max(fa, fb))
    ctx.note_factor(node, max(fa, fb), "division certified on the input domain")
    parts = [ctx.scale(ctx.lip(b), fb)]
    if ctx.depends(a):
        parts.append(ctx.scale(ctx.lip(a), fa))
    return ctx.add(parts)


def _spectral_per_batch(mag: np.ndarray) -> np.ndarray:
    """``||M_t||_2`` for every matrix of a stack (non-negative entries), rounded up."""
    if mag.size == 0:
        return np.zeros(mag.shape[:-2])
    return np.linalg.norm(mag, ord=2, axis=(-2, -1)) * SAFETY


def bilinear(node, ctx, a: str, b: str):
    """Lipschitz constant of ``MatMul(A, B)`` with both operands input-dependent, on the domain."""
    what = "a matrix product of two input-dependent tensors"
    ba, bb = ctx.domain_box(node, a, what), ctx.domain_box(node, b, what)
    sa, sb = ctx.shape(a, node), ctx.shape(b, node)
    ma = np.broadcast_to(ba.mag(), sa)
    mb = np.broadcast_to(bb.mag(), sb)
    if ma.ndim == 1:
        ma = ma[None, :]
    if mb.ndim == 1:
        mb = mb[:, None]
    na, nb = _spectral_per_batch(ma), _spectral_per_batch(mb)  # per matrix of each operand's batch
    batch = np.broadcast_shapes(na.shape, nb.shape)
    fa = _grouped_sup(np.broadcast_to(nb, batch), na.shape, batch) if batch else float(nb.max(initial=0.0)) * SAFETY
    fb = _grouped_sup(np.broadcast_to(na, batch), nb.shape, batch) if batch else float(na.max(initial=0.0)) * SAFETY
    ctx.used_domain(node, f"matrix product on the domain: ||sup|{b}| ||_2 x L_A + ||sup|{a}| ||_2 x L_B", max(fa, fb))
    ctx.note_factor(node, max(fa, fb), "matrix product certified on the input domain")
    return ctx.add([ctx.scale(ctx.lip(a), fa), ctx.scale(ctx.lip(b), fb)])
