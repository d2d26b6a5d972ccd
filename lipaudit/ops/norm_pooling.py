"""LpPool, GlobalLpPool and ReduceLogSumExp: norms and soft maxima over groups of entries.

- ``v -> ||v||_p`` on ``n`` entries: ``| ||a||_p - ||b||_p | <= ||a - b||_p``, and
  ``||w||_p <= ||w||_2`` for ``p >= 2``, ``<= n^(1/p - 1/2) ||w||_2`` for ``1 <= p < 2``.
  Zero padding adds zeros to a window, which changes no norm. When windows
  overlap, one input lies in at most ``count`` windows (as for MaxPool), so the
  squared output differences add up to at most ``count`` times the input's.
- ``log sum exp`` over a group has gradient ``softmax``, a probability vector of
  l2 norm at most 1; disjoint groups keep the constant 1.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import CONST, DATA, rule
from lipaudit.ops.pooling import POOL_ATTRS, REDUCE, _reduced_axes_of, windows_per_input
from lipaudit.values import SAFETY


def _p_factor(node, ctx, n: int) -> float:
    p = node.attrs.get("p", 2)
    p = float(p)
    if not p >= 1 or not math.isfinite(p):
        ctx.fail(node, f"p={p:g} is not a norm (p >= 1 is needed)")
    return 1.0 if p >= 2 else n ** (1.0 / p - 0.5) * SAFETY


@rule("LpPool", inputs={"X": DATA}, attrs=POOL_ATTRS + ("p",), kind="nonlinear",
      constant="sqrt(largest number of windows one input lies in) x (1 for p >= 2, k^(1/p - 1/2) for 1 <= p < 2, "
               "k entries per window)")
def lp_pool(node, ctx):
    k = node.attrs.get("kernel_shape")
    if not k:
        ctx.fail(node, "kernel_shape is required")
    count = windows_per_input(node)
    factor = math.sqrt(count) * _p_factor(node, ctx, int(np.prod(k)))
    ctx.note_factor(node, factor, f"p-norm of each window; an input lies in at most {count} windows")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("GlobalLpPool", inputs={"X": DATA}, attrs=("p",), kind="nonlinear",
      constant="1 for p >= 2, n^(1/p - 1/2) for 1 <= p < 2 (n spatial entries per channel)")
def global_lp_pool(node, ctx):
    shape = ctx.shape(node.inputs[0], node)
    factor = _p_factor(node, ctx, int(np.prod(shape[2:])))
    ctx.note_factor(node, factor, "p-norm over each channel")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule("ReduceLogSumExp", inputs={"data": DATA, "axes": CONST}, attrs=REDUCE["attrs"], kind="nonlinear",
      batch_axes=_reduced_axes_of, constant="1 (the gradient of log-sum-exp is a probability vector)")
def reduce_log_sum_exp(node, ctx):
    ctx.note_factor(node, 1.0, "log-sum-exp: gradient softmax, l2 norm <= 1")
    return [ctx.lip(node.inputs[0])]
