"""Small float64 linear-algebra helpers shared by the bounds."""

from __future__ import annotations

import numpy as np

# Largest batch of matrices processed at once (bytes of the Gram stack).
_CHUNK_BYTES = 64 * 2**20


def max_singular_values(mats: np.ndarray) -> np.ndarray:
    """Largest singular value of each matrix in a stack ``(..., m, n)``, in float64.

    Uses the eigenvalues of the smaller Gram matrix (Hermitian, backward stable),
    processed in chunks so memory stays bounded.
    """
    mats = np.asarray(mats)
    lead = mats.shape[:-2]
    m, n = mats.shape[-2:]
    flat = mats.reshape((-1, m, n))
    dtype = np.complex128 if np.iscomplexobj(flat) else np.float64
    k = min(m, n)
    per = max(1, _CHUNK_BYTES // (k * k * np.dtype(dtype).itemsize))
    out = np.empty(flat.shape[0])
    for start in range(0, flat.shape[0], per):
        block = flat[start : start + per].astype(dtype, copy=False)
        if m <= n:
            gram = block @ np.conj(block.transpose(0, 2, 1))
        else:
            gram = np.conj(block.transpose(0, 2, 1)) @ block
        top = np.linalg.eigvalsh(gram)[:, -1]
        out[start : start + per] = np.sqrt(np.maximum(top, 0.0))
    return out.reshape(lead)


def spectral_norm(mat: np.ndarray) -> float:
    """Largest singular value of one matrix, float64."""
    return float(max_singular_values(np.asarray(mat)[None])[0])
