"""Certified largest singular value of a matrix without an eigensolver.

Two steps, as in the verified-computing literature (Rump, BIT 2006):

1. *Estimate* ``sigma_max(R)`` by Lanczos on ``R^H R`` (or ``R R^H``, the smaller
   side), with float32 products and full reorthogonalisation. The estimate
   needs no guarantee; Lanczos reaches about 1e-8 relative in 30-60 steps even
   where the top of the spectrum is clustered, because a cluster's values are
   all within that accuracy of the top.
2. *Certify* ``mu >= sigma_max(R)`` in float64: ``mu^2 I - A`` is positive
   semidefinite for the Gram matrix ``A``, shown by a Cholesky factorisation.
   Floating point is accounted for with a-priori error bounds (Higham,
   *Accuracy and Stability of Numerical Algorithms*, Thm 3.5 and 10.3), with
   ``gamma_k = k u / (1 - k u)``, ``u = 2^-53``:

   - the computed Gram matrix ``Ah`` satisfies ``|A - Ah| <= gamma_m |R|^H |R|``,
     so ``||A - Ah||_2 <= gamma_m ||R||_F^2``;
   - forming ``Mh = fl(mu^2 I - Ah)`` rounds only the diagonal: ``|Mh_ii - (mu^2 - Ah_ii)| <= u |Mh_ii|``;
   - if Cholesky of ``Mh`` succeeds with factor ``L``, then ``Mh + E = L L^H`` with
     ``|E| <= gamma_{n+1} |L| |L|^H``, so ``Mh >= -gamma_{n+1} ||L||_F^2 I``.

   Together: ``lambda_max(A) <= mu^2 + slack`` with
   ``slack = gamma_m ||R||_F^2 + u max|Mh_ii| + gamma_{n+1} ||L||_F^2``; the
   constants are taken 4x larger than the theorems' (complex arithmetic,
   blocked BLAS). The returned value is ``sqrt(mu^2 + slack)``.

If the factorisation fails, ``mu`` was too small (the estimate missed the top):
the shift grows tenfold up to 1e-4, then a longer Lanczos run from another
start gives a new estimate; if that fails too the exact float64 eigensolver
decides. The certificate never depends on the estimate being right.

Why not the Gram iteration (Delattre et al., ICML 2023) alone: its bound
``||G_t||_F^(1/2^t)`` exceeds the norm by ``(sum_i (s_i/s_1)^(2^t))^(1/2^t)``;
on the clustered spectra of conv unfoldings that is still about 1 % after
6 squarings (measured in docs/performance.md), each squaring costing as much as
the Gram matrix and the Cholesky together.
"""

from __future__ import annotations

import numpy as np

_U64 = np.finfo(np.float64).eps / 2
SHIFTS = (1e-6, 1e-5, 1e-4)  # relative shifts of the estimate tried by the certificate


def _gamma(k: int) -> float:
    return 4 * k * _U64 / (1 - 4 * k * _U64)


def lanczos_top(
    mat: np.ndarray, steps: int = 80, tol: float = 1e-9, seed: int = 0, hermitian: bool = False
) -> tuple[float, np.ndarray]:
    """Estimate ``(sigma_max(R)^2, v)`` for one matrix: Lanczos on the smaller Gram operator.

    ``v`` is the Ritz vector in the smaller dimension (a right singular vector
    when ``n <= m``, else a left one). Products are float32 (complex64); the
    Lanczos basis is float64 and fully reorthogonalised. Stops when the top
    Ritz value changed by less than ``tol`` (relative) over 5 steps.
    ``hermitian``: ``mat`` already is the Gram matrix (positive semidefinite);
    its largest eigenvalue is estimated.
    """
    small_right = mat.shape[1] <= mat.shape[0]
    low = np.complex64 if np.iscomplexobj(mat) else np.float32
    R = mat.astype(low, copy=False)
    Rh = np.conj(R).T if np.iscomplexobj(R) else R.T  # a view for real matrices; BLAS reads it transposed
    if hermitian:
        def op(x):
            return R @ x.astype(low)
    elif small_right:
        def op(x):
            return Rh @ (R @ x.astype(low))
    else:
        def op(x):
            return R @ (Rh @ x.astype(low))
    n = min(mat.shape)
    k = max(1, min(steps, n))
    dtype = np.complex128 if np.iscomplexobj(mat) else np.float64
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(n).astype(dtype)
    if np.iscomplexobj(mat):
        q = q + 1j * rng.standard_normal(n)
    q /= np.linalg.norm(q)
    Q = np.zeros((k, n), dtype=dtype)
    alpha = np.zeros(k)
    beta = np.zeros(k)
    theta, prev, top_vec = 0.0, None, np.zeros(k)
    used = 0
    for j in range(k):
        Q[j] = q
        used = j + 1
        w = op(q).astype(dtype)
        alpha[j] = float(np.real(np.vdot(q, w)))
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - Q[:used].T @ (np.conj(Q[:used]) @ w)
        beta[j] = float(np.linalg.norm(w))
        if j == k - 1 or (j % 5 == 4) or beta[j] <= 1e-12 * max(abs(alpha[j]), 1e-300):
            T = np.diag(alpha[:used]) + np.diag(beta[: used - 1], 1) + np.diag(beta[: used - 1], -1)
            vals, vecs = np.linalg.eigh(T)
            theta, top_vec = float(vals[-1]), vecs[:, -1]
            if prev is not None and abs(theta - prev) <= tol * max(abs(theta), 1e-300):
                break
            prev = theta
        if beta[j] <= 1e-12 * max(abs(alpha[j]), 1e-300):
            # invariant subspace: continue from a fresh direction (the tridiagonal decouples, beta = 0)
            w = rng.standard_normal(n).astype(dtype)
            for _ in range(2):
                w = w - Q[:used].T @ (np.conj(Q[:used]) @ w)
            beta[j] = 0.0
            nw = np.linalg.norm(w)
            if nw == 0.0:
                break
            q = w / nw
            continue
        q = w / beta[j]
    vec = top_vec[:used] @ Q[:used]
    return max(theta, 0.0), vec / max(np.linalg.norm(vec), 1e-300)


def gram64(mat: np.ndarray) -> tuple[np.ndarray, float]:
    """The smaller Gram matrix in float64 (complex128) and the bound on its rounding error (2-norm)."""
    dtype = np.complex128 if np.iscomplexobj(mat) else np.float64
    R = np.asarray(mat, dtype=dtype)
    m, n = R.shape
    Rh = np.conj(R).T if np.iscomplexobj(R) else R.T  # real: a view of R, so numpy uses syrk (half the flops)
    if n <= m:
        A = Rh @ R
        inner = m
    else:
        A = R @ Rh
        inner = n
    flat = R.reshape(-1)
    fro2 = float(np.real(np.vdot(flat, flat)))  # no temporary copies of a large matrix
    return A, _gamma(inner) * fro2


def cholesky_certificate(A: np.ndarray, gram_error: float, mu2: float) -> float | None:
    """``mu2 + slack >= lambda_max(A_exact)`` if the Cholesky of ``mu2 I - A`` succeeds, else None.

    ``A`` is the computed Gram matrix and ``gram_error`` bounds ``||A_exact - A||_2``.
    """
    n = A.shape[0]
    M = -A
    idx = np.arange(n)
    M[idx, idx] += mu2
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(L)):
        return None
    diag = float(np.max(np.abs(np.real(M[idx, idx])))) if n else 0.0
    slack = gram_error + 4 * _U64 * diag + _gamma(n + 1) * float(np.sum(np.abs(L) ** 2))
    return mu2 + slack


def certified_top_singular(mat: np.ndarray, estimate: float | None = None, seed: int = 0) -> tuple[float, float, dict]:
    """``(lower, upper, info)`` around ``sigma_max`` of one matrix, ``upper`` guaranteed.

    ``estimate`` (of ``sigma_max^2``) skips the first Lanczos run when the
    caller already has one. ``lower`` is a Lanczos (Ritz) value, attained by a
    vector up to float32 rounding and deflated by 1e-6 for it: a value from
    below, not a guarantee. ``upper / lower - 1`` is about 2e-6 when the first
    shift certifies, and at most 1e-4 unless the exact eigensolver had to decide.
    """
    mat = np.asarray(mat)
    if mat.size == 0 or not np.any(mat):
        return 0.0, 0.0, {"solver": "zero matrix"}
    # entries far from 1: scale by a power of two (exact) so that the Gram matrix neither overflows nor underflows
    exponent = int(np.frexp(max(float(np.max(mat)), -float(np.min(mat))) if np.isrealobj(mat) else
                            float(np.max(np.abs(mat))))[1])
    if abs(exponent) > 200:
        unit = 2.0 ** -exponent
        lower, upper, info = certified_top_singular(mat * unit, None if estimate is None else estimate * unit**2, seed)
        return lower / unit, upper / unit, info
    A, err = gram64(mat)
    if estimate is None:
        estimate, _ = lanczos_top(A, seed=seed, hermitian=True)  # on the Gram: one n x n product per step
    top_diag = float(np.max(np.real(np.diagonal(A))))  # lambda_max >= every diagonal entry of a PSD matrix
    for attempt in range(2):
        base = max(estimate, top_diag, 1e-300)
        for shift in SHIFTS:
            bound = cholesky_certificate(A, err, base * (1 + shift))
            if bound is not None:
                lower = float(np.sqrt(max(estimate, 0.0))) * (1 - 1e-6)
                return lower, float(np.sqrt(bound)), {"solver": "lanczos+cholesky", "shift": shift}
        # the estimate missed the top (an unlucky start): a longer Lanczos run from another start
        estimate, _ = lanczos_top(A, steps=4 * 80, tol=1e-12, seed=seed + 1 + attempt, hermitian=True)
    top = float(np.linalg.eigvalsh(A)[-1])
    slack = err + _gamma(A.shape[0]) * A.shape[0] * abs(top)
    return float(np.sqrt(max(top - slack, 0.0))), float(np.sqrt(top + slack)), {"solver": "eigvalsh (fallback)"}


def stack_cholesky_bounds(mats: np.ndarray, rtol: float, floor: float = 0.0, power_steps: int = 30) -> float:
    """Guaranteed bound on the largest singular value over a stack ``(b, m, n)`` (see ``stack_max_singular``).

    ``floor``: a bound already certified for other matrices; the shift is at least that.
    """
    dtype = np.complex128 if np.iscomplexobj(mats) else np.float64
    R = np.asarray(mats, dtype=dtype)
    b, m, n = R.shape
    Rh = np.swapaxes(np.conj(R), 1, 2) if np.iscomplexobj(R) else np.swapaxes(R, 1, 2)  # a view BLAS reads transposed
    A = Rh @ R if n <= m else R @ Rh  # (b, k, k)
    inner = max(m, n)
    flat = R.reshape(b, -1)
    errs = _gamma(inner) * np.real(np.einsum("bi,bi->b", np.conj(flat), flat))
    # batched power steps in single precision: an estimate of every matrix's top eigenvalue
    low = np.complex64 if np.iscomplexobj(A) else np.float32
    A32 = A.astype(low)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((b, A.shape[1], 1)).astype(low)
    for _ in range(power_steps):
        v = A32 @ v
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)
    est = np.real(np.sum(np.conj(v) * (A32 @ v), axis=(1, 2))).astype(np.float64)
    # the few likeliest maxima are solved exactly, so the shared shift starts at the true top of one of them
    likely = np.argsort(-est)[:4]
    top = float(np.max(np.linalg.eigvalsh(A[likely])[:, -1]))
    mu2 = max(top * (1 + rtol), float(np.max(np.real(np.diagonal(A, axis1=1, axis2=2)))), floor**2, 1e-300)
    return float(np.sqrt(_certify_stack(A, errs, mu2)))


def _certify_stack(A: np.ndarray, errs: np.ndarray, mu2: float) -> float:
    """Largest certified bound on ``lambda_max`` over the stack: ``mu2`` plus slack, or exact where ``mu2`` is too small."""
    b, k, _ = A.shape
    idx = np.arange(k)
    M = -A
    M[:, idx, idx] += mu2
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        L = None
    if L is not None and np.all(np.isfinite(L)):
        diag = float(np.max(np.abs(np.real(M[:, idx, idx]))))
        fro = np.real(np.einsum("bij,bij->b", np.conj(L), L))
        return float(np.max(mu2 + errs + 4 * _U64 * diag + _gamma(k + 1) * fro))
    if b == 1:
        # this matrix's top is above the shift: solve it exactly (float64 eigensolver, backward stable)
        top = float(np.linalg.eigvalsh(A[0])[-1])
        return max(top + errs[0] + _gamma(k) * k * abs(top), mu2)
    half = b // 2  # find the failing matrices by halving; the others keep the shared shift
    return max(_certify_stack(A[:half], errs[:half], mu2), _certify_stack(A[half:], errs[half:], mu2))
