"""Dense layers (Gemm / MatMul / Linear with a constant weight): the matrix spectral norm."""

from __future__ import annotations

import time

import numpy as np

from lipaudit.bounds.certified import certified_of
from lipaudit.bounds.linalg import singular_brackets
from lipaudit.values import SAFETY, BoundResult, Kind

# Above this many flops (m * n * min(m, n)) the float64 Gram eigensolver is
# skipped: the value becomes a power-iteration estimate plus a Frobenius bound.
EXACT_FLOP_LIMIT = 2e10


def dense_bounds(
    weight: np.ndarray, methods=("tn", "fro"), *, seed: int = 0, max_iters: int = 500, tol: float = 1e-7
) -> dict[str, BoundResult]:
    """Values for a dense layer ``y = W x``: ``tn`` (= the matrix norm), ``fro`` and ``certified``.

    For a matrix the tensor spectral norm *is* the spectral norm, so ``tn``
    and ``f4`` coincide with it. It is ``exact`` when the eigensolver runs; for
    huge matrices it is a power-iteration ``estimate`` and the certificate
    falls back to the Frobenius norm.
    """
    w = np.asarray(weight)
    if w.dtype not in (np.float32, np.float64):
        w = w.astype(np.float64)
    if w.ndim != 2:
        raise ValueError(f"dense weight must be a matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("dense weight contains NaN or Inf")
    t0 = time.perf_counter()
    fro = float(np.sqrt(np.sum(w * w, dtype=np.float64))) * SAFETY  # squares exact to 1 ulp, summed in float64
    t_fro = time.perf_counter() - t0
    out = {"fro": BoundResult(fro, Kind.UPPER, "fro", time_s=t_fro, valid_for="all input sizes")}
    if "tn" not in methods and "f4" not in methods:
        out["certified"] = certified_of(out)
        return out
    m, n = w.shape
    t0 = time.perf_counter()
    if m * n * min(m, n) <= EXACT_FLOP_LIMIT:
        lower, upper = singular_brackets(w.astype(np.float64)[None])
        norm = BoundResult(
            float(upper[0]) * SAFETY,
            Kind.EXACT,
            "svd",
            time_s=time.perf_counter() - t0,
            valid_for="all input sizes",
            detail={"lower": float(lower[0])},
        )
    else:
        sigma, iters = _power(w.astype(np.float32, copy=False), seed, max_iters, tol)
        norm = BoundResult(sigma, Kind.ESTIMATE, "power", iterations=iters, time_s=time.perf_counter() - t0)
    out["tn"] = BoundResult(norm.value, norm.kind, "tn", norm.iterations, norm.time_s, norm.valid_for, {"solver": norm.method, **norm.detail})
    out["f4"] = BoundResult(norm.value, norm.kind, "f4", norm.iterations, norm.time_s, norm.valid_for, {"solver": norm.method})
    out["certified"] = certified_of(out)
    return out


def _power(w: np.ndarray, seed: int, max_iters: int, tol: float) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(w.shape[1]).astype(np.float32)
    v /= np.linalg.norm(v)
    prev = 0.0
    it = 0
    for it in range(1, max_iters + 1):
        u = w @ v
        sigma = float(np.linalg.norm(u))
        g = w.T @ u
        gn = np.linalg.norm(g)
        if gn == 0:
            break
        v = g / gn
        if abs(sigma - prev) <= tol * max(sigma, 1e-30):
            break
        prev = sigma
    v64 = v.astype(np.float64)
    value = float(np.linalg.norm(w @ v64) / np.linalg.norm(v64))  # float32 w promotes: products are exact
    return value, it
