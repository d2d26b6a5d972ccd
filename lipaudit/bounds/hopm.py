"""Tensor spectral norm over complex unit vectors, by the higher-order power method.

``||K||_sigma = sup |K(u_1, ..., u_D)|`` over complex unit vectors. HOPM
updates one vector at a time, ``u_m <- conj(g_m) / ||g_m||`` where ``g_m`` is
``K`` contracted with all the other vectors; every value it returns is attained
by actual unit vectors, so it is a value *from below* of ``||K||_sigma``.

Design, for speed and reliability:
- all restarts of all groups run together (one batch of matrix products);
- the channel modes are contracted by real GEMMs against ``[Re | Im]`` of the
  vectors, so the kernel is read twice per sweep whatever the number of restarts;
- restarts start from Fourier vectors on the spatial modes (where the symbol
  ``K^(w)`` lives, so HOPM starts at least as high as a sampled symbol's norm)
  and from random complex vectors;
- a convergence test on the best value stops early, an iteration cap bounds cost.
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
        prune_after, keep: after this many sweeps only the ``keep`` best starts of each group go on.
    """

    restarts: int = 4
    fourier_starts: int = 4
    max_iters: int = 300
    tol: float = 1e-6
    seed: int = 0
    prune_after: int = 10
    keep: int = 2


@dataclass(frozen=True)
class HopmResult:
    values: np.ndarray  # best value per group
    iterations: int
    converged: bool


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-30)


def _fourier_grid(sizes: tuple[int, ...], per_axis: int) -> list[tuple[float, ...]]:
    freqs = [np.arange(per_axis) * (2 * np.pi / per_axis) if k > 1 else np.zeros(1) for k in sizes]
    return list(itertools.product(*freqs))


def tensor_spectral_norm(kernels: np.ndarray, settings: HopmSettings = HopmSettings()) -> HopmResult:
    """HOPM estimate of ``||K_g||_sigma`` for every group ``g``.

    Args:
        kernels: real array ``(G, c_out, c_in, k_1, ..., k_d)``; the spatial
            modes are tensor modes of their own (not one joint mode).
        settings: solver settings.

    Returns:
        per-group values (each attained by unit vectors, hence ``<= ||K_g||_sigma``),
        the number of sweeps used and whether the convergence test was met.
    """
    K = np.asarray(kernels, dtype=np.float32)
    G, co, ci = K.shape[:3]
    sizes = tuple(K.shape[3:])
    S = int(np.prod(sizes)) if sizes else 1
    d = len(sizes)
    rng = np.random.default_rng(settings.seed)

    # -- starting points: Fourier vectors on the spatial modes, random channels
    starts: list[list[np.ndarray]] = []
    if settings.fourier_starts > 0 and d > 0:
        for w in _fourier_grid(sizes, settings.fourier_starts):
            starts.append([np.exp(-1j * wi * np.arange(k)) / math.sqrt(k) for wi, k in zip(w, sizes)])
    for _ in range(settings.restarts):
        starts.append([_normalize(rng.standard_normal(k) + 1j * rng.standard_normal(k)) for k in sizes])
    if not starts:
        starts.append([])
    B = len(starts)
    spatial = [np.broadcast_to(np.stack([s[a] for s in starts]), (G, B, sizes[a])).astype(np.complex64) for a in range(d)]
    u2 = _normalize(rng.standard_normal((G, B, ci)) + 1j * rng.standard_normal((G, B, ci))).astype(np.complex64)

    K_cs = K.reshape(G, co * ci, S)  # for contracting the spatial modes
    K_o = K.reshape(G, co, ci * S)  # for contracting the output-channel mode

    best = np.zeros(G)
    prev = None
    it = 0
    converged = False
    for it in range(1, settings.max_iters + 1):
        # M = K x_spatial (u_3, ..., u_D): (G, B, co, ci)
        outer = _spatial_outer(spatial, G, B)  # (G, B, S)
        M = _real_times_complex(K_cs, outer.transpose(0, 2, 1))  # (G, co*ci, B)
        M = np.ascontiguousarray(M.reshape(G, co, ci, B).transpose(0, 3, 1, 2))
        g1 = (M @ u2[..., None])[..., 0]
        u1 = _normalize(np.conj(g1))
        g2 = (u1[..., None, :] @ M)[..., 0, :]
        u2 = _normalize(np.conj(g2))
        # N = K x_1 u1 x_2 u2: (G, B, *sizes)
        T = _real_times_complex(K_o.transpose(0, 2, 1), u1.transpose(0, 2, 1))  # (G, ci*S, B)
        T = np.ascontiguousarray(T.reshape(G, ci, S, B).transpose(0, 3, 2, 1))  # (G, B, S, ci)
        N = (T @ u2[..., None])[..., 0].reshape((G, B) + sizes)
        for a in range(d):
            spatial[a] = _normalize(np.conj(_contract_spatial(N, spatial, skip=a)))
        vals = np.abs(_contract_spatial(N, spatial))  # (G, B)
        best = np.maximum(best, vals.max(axis=1).astype(np.float64))
        if prev is not None and np.all(best - prev <= settings.tol * np.maximum(best, 1e-30)):
            converged = True
            break
        prev = best.copy()
        if it == settings.prune_after and B > settings.keep:
            # restarts have separated: continue with the best few of each group only
            order = np.argsort(-vals, axis=1)[:, : settings.keep]
            pick = lambda v: np.take_along_axis(v, order.reshape(order.shape + (1,) * (v.ndim - 2)), axis=1)
            u1, u2 = pick(u1), pick(u2)
            spatial = [pick(v) for v in spatial]
            B = settings.keep
    # the float32 sweeps may round slightly up: report |K(u)| of the final vectors in float64,
    # a value attained by unit vectors and hence <= ||K||_sigma
    final = _value64(K, u1, u2, spatial)
    return HopmResult(values=final, iterations=it, converged=converged)


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


def _real_times_complex(A: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Batched ``A @ X`` for real ``A`` (G, m, n) and complex ``X`` (G, n, B) with real GEMMs."""
    B = X.shape[-1]
    Xr = np.concatenate([X.real, X.imag], axis=-1).astype(np.float32, copy=False)
    Y = A @ Xr
    return (Y[..., :B] + 1j * Y[..., B:]).astype(np.complex64, copy=False)
