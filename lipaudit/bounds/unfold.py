"""Bounds from matrix unfoldings of the kernel: Fantastic Four and Frobenius.

Both are guaranteed upper bounds on the stride-1 conv norm: the paper's lemma
gives ``||K||_sigma <= ||R||_2`` for every unfolding ``R`` and
``TN = sqrt(prod k) ||K||_sigma``; Frobenius bounds every unfolding.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lipaudit.bounds.linalg import max_singular_values


def unfoldings(kernels: np.ndarray):
    """Yield ``(name, stack)`` for every unfolding ``(c_out x S_A) x (c_in x S_rest)``.

    ``kernels`` is ``(G, c_out, c_in, *taps)``. For a 2-D kernel these are the
    four unfoldings of Singla & Feizi; a d-D kernel has ``2^d`` of them.
    """
    G, co, ci = kernels.shape[:3]
    taps = kernels.shape[3:]
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
            yield name, kernels.transpose(order).reshape(G, m, n)


def f4_norm(kernels: np.ndarray) -> tuple[float, str]:
    """``sqrt(prod taps) * max_g min_R ||R_g||_2`` and the name of the best unfolding.

    Unfoldings are visited cheapest first (smallest Gram matrix). Before an
    expensive one is solved exactly, a few power iterations give a value from
    below of its norm; if that already reaches the best norm found, it cannot
    be the minimum and is skipped. The result is the same minimum, and it is
    always the exact (SVD) norm of an actual unfolding, so always a bound.
    """
    taps = kernels.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if taps else 1.0
    k64 = np.asarray(kernels, dtype=np.float64)
    candidates = sorted(unfoldings(k64), key=lambda item: min(item[1].shape[1:]))
    best = None
    best_name = ""
    for name, stack in candidates:
        if best is not None and min(stack.shape[1:]) > 256:
            lower = _power_lower(stack)
            if np.all(lower >= best):
                continue
        per_group = max_singular_values(stack)
        if best is None or per_group.max() < best.max():
            best_name = name
        best = per_group if best is None else np.minimum(best, per_group)
    assert best is not None
    return scale * float(best.max()), best_name


def _power_lower(stack: np.ndarray, iters: int = 12) -> np.ndarray:
    """Per-matrix ``||R v|| / ||v||`` after a few power iterations: a value from below of ``||R||_2``."""
    rng = np.random.default_rng(0)
    m = stack.astype(np.float32)
    v = rng.standard_normal((m.shape[0], m.shape[2], 1)).astype(np.float32)
    for _ in range(iters):
        v = m.transpose(0, 2, 1) @ (m @ v)
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-30
    # slightly deflated so float32 rounding cannot push it above the true norm
    return np.linalg.norm(m @ v, axis=(1, 2)) * (1 - 1e-4)


def fro_norm(kernels: np.ndarray) -> float:
    """``sqrt(prod taps) * max_g ||K_g||_F``."""
    taps = kernels.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if taps else 1.0
    k = np.asarray(kernels, dtype=np.float64)
    per_group = np.sqrt((k.reshape(k.shape[0], -1) ** 2).sum(axis=1))
    return scale * float(per_group.max())


def matrix_like(kernels: np.ndarray) -> bool:
    """True when at most two tensor modes exceed size 1.

    Then ``||K||_sigma`` is the spectral norm of that matrix, which one of the
    unfoldings computes exactly: TN equals F4 and is a guaranteed bound.
    """
    return sum(1 for s in kernels.shape[1:] if s > 1) <= 2
