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
    per = max(1, _CHUNK_BYTES // (k * k * np.dtype(dtype).itemsize))
    lower = np.empty(flat.shape[0])
    upper = np.empty(flat.shape[0])
    for start in range(0, flat.shape[0], per):
        block = flat[start : start + per].astype(dtype, copy=False)
        if m <= n:
            gram = block @ np.conj(block.transpose(0, 2, 1))
        else:
            gram = np.conj(block.transpose(0, 2, 1)) @ block
        top = np.linalg.eigvalsh(gram)[:, -1]
        slack = 4 * k * _EPS * np.abs(top)
        lower[start : start + per] = np.sqrt(np.maximum(top - slack, 0.0))
        upper[start : start + per] = np.sqrt(np.maximum(top + slack, 0.0))
    return lower.reshape(lead), upper.reshape(lead)


def max_singular_values(mats: np.ndarray) -> np.ndarray:
    """Guaranteed upper bound on the largest singular value of each matrix in ``(..., m, n)``."""
    return singular_brackets(mats)[1]


def spectral_norm(mat: np.ndarray) -> float:
    """Guaranteed upper bound on the largest singular value of one matrix."""
    return float(max_singular_values(np.asarray(mat)[None])[0])
