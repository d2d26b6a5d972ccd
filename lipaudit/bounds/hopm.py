"""Tensor spectral norm over complex unit vectors, by the higher-order power method.

``||K||_sigma = sup |K(u_1, ..., u_D)|`` over complex unit vectors. HOPM
updates one vector at a time, ``u_m <- conj(g_m) / ||g_m||`` where ``g_m`` is
``K`` contracted with all the other vectors; every value it returns is attained
by actual unit vectors, so it is a value *from below* of ``||K||_sigma``.

Design, for speed and reliability (measured in docs/performance.md):
- the multilinear form has many local maxima on unstructured kernels, so many
  starts matter more than anything else: 16 Fourier starts on the spatial modes
  (where the symbol ``K^(w)`` lives) plus 128 random complex starts;
- all starts of all groups run together: a sweep is two real GEMMs against
  ``[Re | Im]`` of the vectors, with small outputs;
- successive halving keeps the best 32, then 8, then 2 starts after a few
  sweeps, so the wide phase is short;
- with two spatial modes these are updated jointly and exactly (top singular
  pair of a ``k_1 x k_2`` matrix);
- a convergence test on the best value stops early, an iteration cap bounds cost;
  the final value is recomputed in float64 from the final vectors.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HopmSettings:
    """Knobs of the HOPM solver.

    Attributes:
        restarts: number of random complex starts per group (in addition to the Fourier starts).
        fourier_starts: per spatial axis, how many frequencies seed the Fourier starts (0: none).
        max_iters: iteration cap (sweeps over all modes).
        tol: stop when the best value changed by less than ``tol`` (relative) over one sweep.
        seed: seed of the random starts.
        schedule: successive halving, ``(sweep, keep)``: after that sweep only the ``keep`` best
            starts of each group go on (many starts are cheap while the kernel read dominates).
        refine_below: with two spatial modes, once the schedule is done and at most this many
            starts are left, they go on by block coordinate ascent (:func:`_refine`).
        inner_steps: power steps per block update of the channel vectors in :func:`_refine`.
    """

    restarts: int = 128
    fourier_starts: int = 4
    max_iters: int = 300
    tol: float = 1e-6
    seed: int = 0
    schedule: tuple[tuple[int, int], ...] = ((4, 32), (16, 8), (45, 2))
    refine_below: int = 2
    inner_steps: int = 8


@dataclass(frozen=True)
class HopmResult:
    values: np.ndarray  # best value per group
    iterations: int
    converged: bool
    vectors: tuple[np.ndarray, ...] | None = None  # final (u1, u2, *spatial) of every start, (G, B, n) each


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-30)


def _fourier_grid(sizes: tuple[int, ...], per_axis: int) -> list[tuple[float, ...]]:
    freqs = [np.arange(per_axis) * (2 * np.pi / per_axis) if k > 1 else np.zeros(1) for k in sizes]
    return list(itertools.product(*freqs))


def tensor_spectral_norm(
    kernels: np.ndarray, settings: HopmSettings = HopmSettings(), ceiling: float | None = None
) -> HopmResult:
    """HOPM estimate of ``||K_g||_sigma`` for every group ``g``.

    Args:
        kernels: real array ``(G, c_out, c_in, k_1, ..., k_d)``; the spatial
            modes are tensor modes of their own (not one joint mode).
        settings: solver settings.
        ceiling: a guaranteed upper bound on ``max_g ||K_g||_sigma`` (e.g. F4 / sqrt(prod k)):
            once the best value is within ``tol`` of it nothing better exists, and the search stops.

    Returns:
        per-group values (each attained by unit vectors, hence ``<= ||K_g||_sigma``),
        the number of sweeps used and whether the convergence test was met.

    One sweep reads the kernel twice, as two real GEMMs whose outputs are small
    (``B x c_out`` and ``B x c_in*S``): ``u_1`` from all other vectors, then
    ``K x_1 u_1`` from which ``u_2`` and the spatial vectors follow. With two
    spatial modes these are updated together, exactly, as the top singular pair
    of a small ``k_1 x k_2`` matrix. Cheap sweeps allow many starts, which is
    what matters on kernels whose tensor norm has many local maxima.
    """
    K64 = np.asarray(kernels, dtype=np.float64)
    if not np.all(np.isfinite(K64)):
        return HopmResult(values=np.full(K64.shape[0], np.inf), iterations=0, converged=False)
    # scale by a power of two (exact) so the float32 sweeps neither overflow nor underflow
    peak = float(np.abs(K64).max()) if K64.size else 0.0
    exponent = -math.frexp(peak)[1] if peak > 0 else 0
    K64 = np.ldexp(K64, exponent)
    top = math.ldexp(ceiling, exponent) if ceiling is not None and math.isfinite(ceiling) else math.inf
    K = K64.astype(np.float32)
    G, co, ci = K.shape[:3]
    sizes = tuple(K.shape[3:])
    S = int(np.prod(sizes)) if sizes else 1
    d = len(sizes)
    rng = np.random.default_rng(settings.seed)

    starts = _starts(sizes, settings, rng)
    B = len(starts)
    spatial = [np.ascontiguousarray(np.broadcast_to(np.stack([s[a] for s in starts]), (G, B, sizes[a]))).astype(np.complex64)
               for a in range(d)]
    u2 = _normalize(rng.standard_normal((G, B, ci)) + 1j * rng.standard_normal((G, B, ci))).astype(np.complex64)

    K_oT = np.ascontiguousarray(K.reshape(G, co, ci * S).transpose(0, 2, 1))  # (G, ci*S, co), once per layer
    K_o = K.reshape(G, co, ci * S)

    best = np.zeros(G)
    prev = None
    it = 0
    converged = False
    for it in range(1, settings.max_iters + 1):
        w = _spatial_outer(spatial, G, B)  # (G, B, S)
        # u1 <- conj(K x_2 u2 x_spatial w): one real GEMM with a (B x c_out) output
        X = (u2[:, :, :, None] * w[:, :, None, :]).reshape(G, B, ci * S)
        u1 = _normalize(np.conj(_complex_left(X, K_oT)))
        # T = K x_1 u1: (G, B, c_in, S), one real GEMM; then u2 and the spatial vectors from it
        T = _complex_left(u1, K_o).reshape(G, B, ci, S)
        u2 = _normalize(np.conj((T @ w[..., None])[..., 0]))
        N = (u2[:, :, None, :] @ T)[:, :, 0, :].reshape((G, B) + sizes)
        spatial = _best_spatial(N, spatial)
        vals = np.abs(_contract_spatial(N, spatial))  # (G, B)
        best = np.maximum(best, vals.max(axis=1).astype(np.float64))
        if (prev is not None and np.all(best - prev <= settings.tol * np.maximum(best, 1e-30))) or \
                best.max() >= top * (1 - settings.tol):
            converged = True  # no better value exists above the ceiling
            break
        prev = best.copy()
        keep = dict(settings.schedule).get(it)
        if d == 2 and B <= settings.refine_below and it >= max(dict(settings.schedule), default=0):
            break  # the few remaining starts: block coordinate ascent (_refine) converges in far fewer sweeps
        if keep is not None and B > keep:
            # the starts have separated: only the best few of each group go on
            order = np.argsort(-vals, axis=1)[:, :keep]

            def pick(v):
                return np.ascontiguousarray(np.take_along_axis(v, order.reshape(order.shape + (1,) * (v.ndim - 2)), axis=1))

            u1, u2 = pick(u1), pick(u2)
            spatial = [pick(v) for v in spatial]
            B = keep
    if not converged and d == 2 and B <= settings.refine_below and it < settings.max_iters:
        u1, u2, spatial, extra, converged = _refine(K, u1, u2, spatial, settings.max_iters - it, settings.tol,
                                                    settings.inner_steps)
        it += extra
    # the float32 sweeps may round slightly up: report |K(u)| of the final vectors in float64,
    # a value attained by unit vectors and hence <= ||K||_sigma
    final = np.ldexp(_value64(K64, u1, u2, spatial), -exponent)
    return HopmResult(values=final, iterations=it, converged=converged and bool(np.all(np.isfinite(final))),
                      vectors=(u1, u2, *spatial))


def _refine(K: np.ndarray, u1, u2, spatial, max_sweeps: int, tol: float, inner_steps: int = 8):
    """Block coordinate ascent on the last few starts (two spatial modes).

    Two blocks, each maximised for the other fixed: the channel pair ``(u1, u2)``
    is the top singular pair of ``M = K x_3 w_1 x_4 w_2`` (``c_out x c_in``),
    approached by power steps on ``M^H M`` from the current ``u2`` (each step
    never lowers ``|u1^T M u2|``); the spatial pair is the exact top singular
    pair of the ``k_1 x k_2`` matrix ``K x_1 u1 x_2 u2``. Plain HOPM moves one
    vector at a time and needs hundreds of sweeps on slowly converging kernels;
    the channel block is where the coupling is, so solving it jointly converges
    in tens. Every value is still attained by unit vectors.
    """
    G, co, ci = K.shape[:3]
    sizes = K.shape[3:]
    S = int(np.prod(sizes))
    B = u1.shape[1]
    K_sT = np.ascontiguousarray(K.reshape(G, co * ci, S).transpose(0, 2, 1))  # (G, S, co*ci): spatial taps first
    K_o = K.reshape(G, co, ci * S)
    best = None
    converged = False
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        w = _spatial_outer(spatial, G, B)  # (G, B, S)
        M = _complex_left(w, K_sT).reshape(G, B, co, ci)  # sum_s K[:, :, s] w_s
        Mh = np.conj(M).transpose(0, 1, 3, 2)
        for _ in range(inner_steps):
            x = (M @ u2[..., None])[..., 0]
            u2 = _normalize((Mh @ x[..., None])[..., 0])
        u1 = _normalize(np.conj((M @ u2[..., None])[..., 0]))
        T = _complex_left(u1, K_o).reshape(G, B, ci, S)
        N = (u2[:, :, None, :] @ T)[:, :, 0, :].reshape((G, B) + tuple(sizes))
        spatial = _best_spatial(N, spatial)
        vals = np.abs(_contract_spatial(N, spatial)).max(axis=1).astype(np.float64)
        if best is not None and np.all(vals - best <= tol * np.maximum(vals, 1e-30)):
            converged = True
            break
        best = vals if best is None else np.maximum(best, vals)
    return u1, u2, spatial, sweeps, converged


def _best_spatial(N: np.ndarray, spatial: list[np.ndarray]) -> list[np.ndarray]:
    """Update the spatial vectors for fixed channel vectors.

    Two spatial modes: ``N`` is a small matrix per start and the best pair is
    its top singular pair (an exact block update). Otherwise one HOPM step per mode.
    """
    d = len(spatial)
    if d == 2:
        U, _, Vh = np.linalg.svd(N)
        return [np.ascontiguousarray(np.conj(U[..., :, 0])), np.ascontiguousarray(np.conj(Vh[..., 0, :]))]
    for a in range(d):
        spatial[a] = _normalize(np.conj(_contract_spatial(N, spatial, skip=a)))
    return spatial


def _starts(sizes, settings: HopmSettings, rng) -> list[list[np.ndarray]]:
    """Fourier vectors on the spatial modes (where the symbol lives), then random complex vectors."""
    starts: list[list[np.ndarray]] = []
    if settings.fourier_starts > 0 and sizes:
        for w in _fourier_grid(sizes, settings.fourier_starts):
            starts.append([np.exp(-1j * wi * np.arange(k)) / math.sqrt(k) for wi, k in zip(w, sizes)])
    for _ in range(settings.restarts):
        starts.append([_normalize(rng.standard_normal(k) + 1j * rng.standard_normal(k)) for k in sizes])
    return starts or [[]]


def _value64(K: np.ndarray, u1, u2, spatial) -> np.ndarray:
    """``max_b |K_g(u1, u2, u3, ...)|`` per group, in float64 with normalised vectors."""
    vecs = [_normalize(v.astype(np.complex128)) for v in [u1, u2] + list(spatial)]
    G, B = u1.shape[:2]
    K64 = K.astype(np.float64).reshape(G, K.shape[1], -1)  # (G, co, ci*S)
    t = np.einsum("gbo,goj->gbj", vecs[0], K64).reshape((G, B, K.shape[2]) + K.shape[3:])
    for v in vecs[1:]:
        t = np.einsum("gbk...,gbk->gb...", t, v)
    return np.abs(t).max(axis=1)


def _spatial_outer(spatial: list[np.ndarray], G: int, B: int) -> np.ndarray:
    if not spatial:
        return np.ones((G, B, 1), dtype=np.complex64)
    out = spatial[0]
    for v in spatial[1:]:
        out = (out[..., :, None] * v[..., None, :]).reshape(G, B, -1)
    return out


_LETTERS = "cdefhijklm"


def _contract_spatial(N: np.ndarray, spatial: list[np.ndarray], skip: int | None = None) -> np.ndarray:
    """Contract the spatial axes of ``N`` (G, B, k_1..k_d) with the vectors, except axis ``skip``."""
    d = len(spatial)
    letters = _LETTERS[:d]
    operands = [N]
    subs = ["gb" + letters]
    for a in range(d):
        if a != skip:
            operands.append(spatial[a])
            subs.append("gb" + letters[a])
    out = "gb" + (letters[skip] if skip is not None else "")
    return np.einsum(",".join(subs) + "->" + out, *operands)


def _complex_left(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Batched ``X @ A`` for complex ``X`` (G, B, n) and real ``A`` (G, n, m), as one real GEMM."""
    B = X.shape[1]
    Xr = np.concatenate([X.real, X.imag], axis=1).astype(np.float32, copy=False)  # (G, 2B, n)
    Y = Xr @ A  # (G, 2B, m)
    out = np.empty((Y.shape[0], B, Y.shape[2]), dtype=np.complex64)
    out.real = Y[:, :B]
    out.imag = Y[:, B:]
    return out
