"""Bounds from matrix unfoldings of the kernel: Fantastic Four and Frobenius.

Both are guaranteed upper bounds on the stride-1 conv norm: the paper's lemma
gives ``||K||_sigma <= ||R||_2`` for every unfolding ``R`` and
``TN = sqrt(prod k) ||K||_sigma``; Frobenius bounds every unfolding.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lipaudit.bounds.certify import certified_top_singular, lanczos_top
from lipaudit.bounds.linalg import max_singular_values, frobenius

# Unfoldings whose smaller side is at most this are solved by the exact eigensolver (cheap there).
EXACT_DIM = 256


def _layouts(shape: tuple[int, ...]):
    """``(name, axis order, rows, cols)`` of every unfolding of a ``(G, c_out, c_in, *taps)`` stack."""
    co, ci = shape[1:3]
    taps = shape[3:]
    d = len(taps)
    # an axis with one tap gives the same matrix on either side: enumerate the others only
    movable = [a for a in range(d) if taps[a] > 1]
    for r in range(len(movable) + 1):
        for rows in itertools.combinations(movable, r):
            cols = [a for a in range(d) if a not in rows]
            order = [0, 1] + [3 + a for a in rows] + [2] + [3 + a for a in cols]
            m = co * int(np.prod([taps[a] for a in rows]))
            n = ci * int(np.prod([taps[a] for a in cols]))
            name = "c_out" + "".join(f"*k{a + 1}" for a in rows) + " x c_in" + "".join(f"*k{a + 1}" for a in cols)
            yield name, order, m, n


def unfoldings(kernels: np.ndarray):
    """Yield ``(name, stack)`` for every unfolding ``(c_out x S_A) x (c_in x S_rest)``.

    ``kernels`` is ``(G, c_out, c_in, *taps)``. For a 2-D kernel these are the
    four unfoldings of Singla & Feizi; a d-D kernel has ``2^d`` of them.
    """
    for name, order, m, n in _layouts(kernels.shape):
        yield name, kernels.transpose(order).reshape(kernels.shape[0], m, n)


def f4_norm(kernels: np.ndarray) -> tuple[float, str]:
    """``sqrt(prod taps) * max_g min_R ||R_g||_2`` and the name of the best unfolding.

    Every value that enters the minimum is a guaranteed upper bound on the norm
    of an actual unfolding, so the result is always a bound on TN. Small
    unfoldings are solved exactly (float64 eigensolver). Larger ones get a
    Lanczos estimate each (float32 products); they are then visited smallest
    estimate first, and each is certified (a float64 Cholesky certificate,
    :mod:`lipaudit.bounds.certify`) only while its estimate, a value from
    below, is under the best certified value: the others cannot be the minimum.
    The result is the exact F4 up to the certificate's 1e-6.
    """
    taps = kernels.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if taps else 1.0
    k64 = np.asarray(kernels, dtype=np.float64)
    layouts = {name: (order, m, n) for name, order, m, n in _layouts(k64.shape)}
    if max(min(m, n) for _, m, n in layouts.values()) <= EXACT_DIM:
        return _f4_exact(list(unfoldings(k64)), scale)
    k32 = k64.astype(np.float32)  # the estimates need no float64; only the certified unfoldings do
    best = np.full(k64.shape[0], np.inf)
    names = [""] * k64.shape[0]
    for g in range(k64.shape[0]):
        estimates = [(lanczos_top(stack[0])[0], name) for name, stack in unfoldings(k32[g : g + 1])]
        for estimate, name in sorted(estimates):
            if math.sqrt(estimate) * (1 - 1e-5) >= best[g]:
                continue  # a value from below already above the best bound: not the minimum
            order, m, n = layouts[name]
            mat = k64[g : g + 1].transpose(order).reshape(m, n)  # float64 only for the unfoldings certified
            if min(mat.shape) <= EXACT_DIM:
                upper = float(max_singular_values(mat[None])[0])
            else:
                upper = certified_top_singular(mat, estimate=estimate)[1]
            if upper < best[g]:
                best[g], names[g] = upper, name
    worst = int(np.argmax(best))
    return scale * float(best[worst]), names[worst]


def _f4_exact(candidates, scale: float) -> tuple[float, str]:
    """F4 for small unfoldings: the exact (float64 eigensolver) norm of every unfolding."""
    best = None
    best_name = ""
    for name, stack in candidates:
        per_group = max_singular_values(stack)
        if best is None or per_group.max() < best.max():
            best_name = name
        best = per_group if best is None else np.minimum(best, per_group)
    assert best is not None
    return scale * float(best.max()), best_name


def fro_norm(kernels: np.ndarray) -> float:
    """``sqrt(prod taps) * max_g ||K_g||_F``."""
    taps = kernels.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if taps else 1.0
    k = np.asarray(kernels, dtype=np.float64)
    per_group = frobenius(k.reshape(k.shape[0], -1), axis=1)
    return scale * float(per_group.max())


def matrix_like(kernels: np.ndarray) -> bool:
    """True when at most two tensor modes exceed size 1.

    Then ``||K||_sigma`` is the spectral norm of that matrix, which one of the
    unfoldings computes exactly: TN equals F4 and is a guaranteed bound.
    """
    return sum(1 for s in kernels.shape[1:] if s > 1) <= 2
