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
    for r in range(d + 1):
        for rows in itertools.combinations(range(d), r):
            cols = [a for a in range(d) if a not in rows]
            order = [0, 1] + [3 + a for a in rows] + [2] + [3 + a for a in cols]
            m = co * int(np.prod([taps[a] for a in rows]))
            n = ci * int(np.prod([taps[a] for a in cols]))
            name = "c_out" + "".join(f"*k{a + 1}" for a in rows) + " x c_in" + "".join(f"*k{a + 1}" for a in cols)
            yield name, kernels.transpose(order).reshape(G, m, n)


def f4_norm(kernels: np.ndarray) -> tuple[float, str]:
    """``sqrt(prod taps) * max_g min_R ||R_g||_2`` and the name of the best unfolding."""
    taps = kernels.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if taps else 1.0
    best = None
    best_name = ""
    for name, stack in unfoldings(np.asarray(kernels, dtype=np.float64)):
        # per group; the layer's value is the max over groups
        per_group = max_singular_values(stack)
        if best is None:
            best = per_group
            best_name = name
        else:
            if per_group.max() < best.max():
                best_name = name
            best = np.minimum(best, per_group)
    assert best is not None
    return scale * float(best.max()), best_name


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
