"""Largest singular values with a guarantee, in float64.

``sigma_max(R)^2 = lambda_max(G)`` for the smaller Gram matrix ``G``, from the
symmetric eigensolver (LAPACK ``syevd``, backward stable: the computed
eigenvalue is within ``c n eps ||G||`` of the true one; that slack is added).
A Cholesky-certified shortcut (block power estimate, then ``mu I - G``
factored) was measured slower and looser: top eigenvalues of conv unfoldings
cluster, so the estimate converges slowly (see docs/performance.md).
"""

from __future__ import annotations

import numpy as np

# Largest batch of matrices processed at once (bytes of the Gram stack).
_CHUNK_BYTES = 64 * 2**20
_EPS = np.finfo(np.float64).eps


def singular_brackets(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` around the largest singular value of each matrix in ``(..., m, n)``, float64."""
    mats = np.asarray(mats)
    lead = mats.shape[:-2]
    m, n = mats.shape[-2:]
    flat = mats.reshape((-1, m, n))
    dtype = np.complex128 if np.iscomplexobj(flat) else np.float64
    k = min(m, n)
    per = max(1, _CHUNK_BYTES // (max(m * n, k * k) * np.dtype(dtype).itemsize))
    lower = np.empty(flat.shape[0])
    upper = np.empty(flat.shape[0])
    for start in range(0, flat.shape[0], per):
        block = flat[start : start + per].astype(dtype, copy=False)
        # each matrix scaled by a power of two (exact), so its Gram matrix neither underflows nor overflows
        exponents = _exponents(np.abs(block).max(axis=(1, 2)) if block.size else np.zeros(block.shape[0]))
        block = np.ldexp(block.real, -exponents[:, None, None]) + (
            1j * np.ldexp(block.imag, -exponents[:, None, None]) if np.iscomplexobj(block) else 0)
        if m <= n:
            gram = block @ np.conj(block.transpose(0, 2, 1))
        else:
            gram = np.conj(block.transpose(0, 2, 1)) @ block
        top = np.linalg.eigvalsh(gram)[:, -1]
        slack = 4 * k * _EPS * np.abs(top)
        lower[start : start + per] = np.ldexp(np.sqrt(np.maximum(top - slack, 0.0)), exponents)
        upper[start : start + per] = np.ldexp(np.sqrt(np.maximum(top + slack, 0.0)), exponents)
    return lower.reshape(lead), upper.reshape(lead)


def _exponents(peaks: np.ndarray) -> np.ndarray:
    """Per entry, the binary exponent e with peak = m * 2^e, 0.5 <= m < 1 (0 for zero or non-finite peaks)."""
    peaks = np.asarray(peaks, dtype=np.float64)
    ok = np.isfinite(peaks) & (peaks > 0)
    return np.where(ok, np.frexp(np.where(ok, peaks, 1.0))[1], 0).astype(np.int64)


def frobenius(a: np.ndarray, axis=None) -> np.ndarray | float:
    """``||a||_F`` in float64 without underflow or overflow of the squares (scaled by a power of two first)."""
    a = np.asarray(a, dtype=np.float64)
    peak = np.abs(a).max(axis=axis, keepdims=True) if a.size else np.zeros(())
    e = _exponents(peak)
    scaled = np.ldexp(a, -e)
    norm = np.sqrt(np.sum(scaled * scaled, axis=axis, keepdims=True))
    out = np.ldexp(norm, e)
    return float(out.reshape(())) if axis is None else np.squeeze(out, axis=axis)


def max_singular_values(mats: np.ndarray) -> np.ndarray:
    """Guaranteed upper bound on the largest singular value of each matrix in ``(..., m, n)``."""
    return singular_brackets(mats)[1]


def spectral_norm(mat: np.ndarray) -> float:
    """Guaranteed upper bound on the largest singular value of one matrix."""
    return float(max_singular_values(np.asarray(mat)[None])[0])


# Stacks of matrices at least this large (smaller side) use the shared-shift certificate below.
_SHARED_SHIFT_DIM = 48


def stack_max_singular(mats: np.ndarray, rtol: float = 1e-6) -> float:
    """Guaranteed upper bound on ``max_i sigma_max(mats[i])`` for a stack ``(..., m, n)``.

    Callers that need only the maximum over many matrices (the frequencies of
    a symbol) need not solve each one exactly. A few batched power steps
    (complex64) estimate every matrix's top eigenvalue of the Gram matrix; one
    shift ``mu = max estimate * (1 + rtol)`` is then certified for all of them
    at once by batched float64 Cholesky factorisations of ``mu I - A_i``
    (:func:`lipaudit.bounds.certify.cholesky_certificate`'s rounding argument).
    Matrices whose factorisation fails (their top is above ``mu``) are solved
    exactly, and the result is the largest of the certified values. Always a
    bound; within ``rtol`` (plus rounding slack) of the exact maximum.
    """
    from lipaudit.bounds.certify import stack_cholesky_bounds

    mats = np.asarray(mats)
    m, n = mats.shape[-2:]
    if mats.size == 0:
        return 0.0
    flat = mats.reshape((-1, m, n))
    if min(m, n) < _SHARED_SHIFT_DIM:
        return float(max_singular_values(flat).max())
    dtype = np.complex128 if np.iscomplexobj(flat) else np.float64
    # a chunk's matrices, their conjugate copy and Gram matrices stay within a few _CHUNK_BYTES
    per = max(1, _CHUNK_BYTES // (max(m * n, min(m, n) ** 2) * np.dtype(dtype).itemsize))
    best = 0.0
    for start in range(0, flat.shape[0], per):
        best = max(best, stack_cholesky_bounds(flat[start : start + per], rtol, floor=best))
    return best
