"""Dense layers (Gemm / MatMul / Linear with a constant weight): the matrix spectral norm."""

from __future__ import annotations

import time

import numpy as np

from lipaudit.bounds.certified import certified_of
from lipaudit.bounds.certify import certified_top_singular
from lipaudit.bounds.linalg import singular_brackets, frobenius
from lipaudit.values import SAFETY, BoundResult, Kind

# Matrices whose smaller side is at most this are solved by the float64 eigensolver (cheap
# there); larger ones by a Lanczos estimate and a float64 Cholesky certificate.
EXACT_DIM = 512


def dense_bounds(
    weight: np.ndarray, methods=("tn", "fro"), *, seed: int = 0
) -> dict[str, BoundResult]:
    """Values for a dense layer ``y = W x``: ``tn`` (= the matrix norm), ``fro`` and ``certified``.

    For a matrix the tensor spectral norm *is* the spectral norm, so ``tn``
    and ``f4`` coincide with it. It is ``exact``: a guaranteed upper
    bound within 1e-4 of a value from below (float64 eigensolver for small
    matrices, Lanczos and a Cholesky certificate for large ones), never the
    Frobenius norm.
    """
    w = np.asarray(weight)
    if w.dtype not in (np.float32, np.float64):
        w = w.astype(np.float64)
    if w.ndim != 2:
        raise ValueError(f"dense weight must be a matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("dense weight contains NaN or Inf")
    t0 = time.perf_counter()
    fro = frobenius(w) * SAFETY  # float64, scaled: tiny or huge weights neither underflow nor overflow
    t_fro = time.perf_counter() - t0
    out = {"fro": BoundResult(fro, Kind.UPPER, "fro", time_s=t_fro, valid_for="all input sizes")}
    if "tn" not in methods and "f4" not in methods:
        out["certified"] = certified_of(out)
        return out
    t0 = time.perf_counter()
    if min(w.shape) <= EXACT_DIM:
        lower, upper = singular_brackets(w.astype(np.float64)[None])
        lower, upper, solver = float(lower[0]), float(upper[0]), "svd"
    else:
        lower, upper, info = certified_top_singular(w, seed=seed)
        solver = info["solver"]
    # a bracket within 1e-4 (about 2e-6 in practice): the norm is known, kind exact
    kind = Kind.EXACT if upper * SAFETY - lower <= 1e-4 * upper else Kind.UPPER
    norm = BoundResult(
        upper * SAFETY, kind, solver, time_s=time.perf_counter() - t0, valid_for="all input sizes",
        detail={"lower": lower},
    )
    out["tn"] = BoundResult(norm.value, norm.kind, "tn", norm.iterations, norm.time_s, norm.valid_for, {"solver": norm.method, **norm.detail})
    out["f4"] = BoundResult(norm.value, norm.kind, "f4", norm.iterations, norm.time_s, norm.valid_for, {"solver": norm.method})
    out["certified"] = certified_of(out)
    return out
