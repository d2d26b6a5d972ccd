"""The global Lipschitz constant of standardisation, ``gamma * (x - mean) / sqrt(var + eps) + beta``.

For one normalisation group ``x in R^n`` write ``P = I - 11^T/n`` (centring),
``y = P x``, ``s = sqrt(||y||^2 / n + eps)`` and ``f(x) = y / s``. Then

    J_f(x) = (1/s) (I - y y^T / (n s^2)) P = (1/s) P (I - c u u^T),   u = y/||y||, c = ||y||^2/(n s^2) in [0, 1).

With ``G = diag(gamma)``: ``||G J_f(x)|| <= ||G P|| / s <= ||G P|| / sqrt(eps)`` since
``||I - c u u^T|| <= 1`` and ``s >= sqrt(eps)``; at ``y = 0`` (a constant group)
``G J_f = G P / sqrt(eps)``, so the bound is attained: the global Lipschitz
constant of one group is exactly ``||diag(gamma) P|| / sqrt(eps)`` (``f`` is
smooth and R^n convex, so the supremum of ``||J||`` is the constant). Disjoint
groups combine as a block-diagonal map: the maximum over groups.

``||diag(d) P||`` for ``d`` that takes value ``d_k`` on ``m_k`` entries: a unit
vector orthogonal to ``1`` splits into a part constant on each class,
``sum_k a_k 1_k / sqrt(m_k)`` with ``sum_k a_k sqrt(m_k) = 0``, and a part
summing to zero inside each class. ``diag(d)^2`` keeps both parts, so
``||diag(d) P||^2`` is the larger of ``max{d_k^2 : m_k >= 2}`` and the top
eigenvalue of ``Q diag(d^2) Q`` with ``Q = I - w w^T``, ``w = sqrt(m / n)``.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.values import SAFETY

# Above this many classes the K x K eigenproblem is skipped for max|d| (a valid, slightly looser bound).
EIG_LIMIT = 2048


def centred_scale_norm(d: np.ndarray, m: np.ndarray | int) -> float:
    """Guaranteed upper bound on ``||diag(d) P||``, ``d_k`` repeated ``m_k`` times (``P`` centres all entries)."""
    d = np.abs(np.asarray(d, dtype=np.float64).ravel())
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), d.shape)
    n = float(m.sum())
    if d.size == 0 or n < 2:
        return 0.0  # one entry: x - mean(x) = 0
    if not np.all(np.isfinite(d)):
        return math.inf
    peak = float(np.max(d))
    if peak == 0.0:
        return 0.0
    if d.size > EIG_LIMIT:
        return peak * SAFETY
    d = d / peak  # scale-free: no underflow or overflow in d^2
    top = float(np.max(d[m >= 2], initial=0.0)) ** 2
    w = np.sqrt(m / n)
    q = np.eye(d.size) - np.outer(w, w)
    mat = q @ np.diag(d * d) @ q
    lam = float(np.linalg.eigvalsh(mat)[-1])
    lam += 8 * d.size * np.finfo(np.float64).eps * float(np.max(d * d))  # eigensolver slack
    return peak * math.sqrt(max(top, lam, 0.0)) * SAFETY


def standardize_constant(eps: float, d: np.ndarray, m: np.ndarray | int) -> float:
    """Global Lipschitz constant (upper bound) of ``diag(d) (x - mean) / sqrt(var + eps)`` on one group."""
    if not eps > 0:
        return math.inf
    return centred_scale_norm(d, m) / math.sqrt(eps) * SAFETY
