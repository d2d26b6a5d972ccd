"""Circulant operators on a torus, in polyphase form: their symbols per frequency.

Conventions (checked against dense matrices in tests/certificate/test_symbols.py):

- A value at torus period ``N_u = q N`` (per axis) is written on the reference
  torus of period ``N`` by its polyphase components ``u_p(a) = u(q a + p)``,
  ``p`` in ``[0, q)``; channel ``c`` and phase ``p`` become channel
  ``c * Q + flat(p)`` with ``Q = prod(q)`` and ``flat`` in C order.
- The DFT is ``x^(w) = sum_a x(a) e^{-i w.a}``, ``w = 2 pi k / N``; only the
  half grid ``k_last <= N_last // 2`` is stored (real maps: ``X^(-w) = conj X^(w)``).
- A stride-``s`` circular conv ``w(i) = sum_t W_t u(s i + t dil - pb)`` from
  period ``s q N`` to ``q N`` is, on the reference torus, a stride-1 conv
  ``w_b(a) = sum_delta K_delta u(a + delta)`` whose symbol is
  ``sum_delta K_delta e^{+i w.delta}``: an exact identity, for any period.
"""

from __future__ import annotations

import itertools

import numpy as np


def half_grid(period: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(omega (F, d), weight (F,))`` over the stored half grid; ``weight`` counts conjugate pairs twice."""
    axes = [np.arange(n) for n in period[:-1]] + [np.arange(period[-1] // 2 + 1)]
    ks = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(period))
    omega = 2 * np.pi * ks / np.asarray(period, dtype=np.float64)
    last, n = ks[:, -1], period[-1]
    weight = np.where((last == 0) | ((n % 2 == 0) & (last == n // 2)), 1.0, 2.0)
    return omega, weight


def coarse_conv_taps(weight: np.ndarray, stride, dilation, pads_begin, q_out) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``(T, d)`` and matrices ``(T, Co*Qo, Ci*Qi)`` of the conv on the reference torus.

    ``weight`` is dense ``(Co, Ci, *k)`` (groups expanded); the input has phases
    ``q_in = stride * q_out``.
    """
    co, ci = weight.shape[:2]
    k = weight.shape[2:]
    d = len(k)
    q_in = tuple(s * q for s, q in zip(stride, q_out))
    qo, qi = int(np.prod(q_out)), int(np.prod(q_in))
    blocks: dict[tuple[int, ...], np.ndarray] = {}
    for beta in itertools.product(*(range(q) for q in q_out)):
        b_flat = int(np.ravel_multi_index(beta, q_out)) if d else 0
        for t in itertools.product(*(range(kk) for kk in k)):
            m = [stride[a] * beta[a] + t[a] * dilation[a] - pads_begin[a] for a in range(d)]
            p = tuple(m[a] % q_in[a] for a in range(d))
            delta = tuple(m[a] // q_in[a] for a in range(d))
            p_flat = int(np.ravel_multi_index(p, q_in))
            mat = blocks.get(delta)
            if mat is None:
                mat = blocks[delta] = np.zeros((co, qo, ci, qi))
            mat[:, b_flat, :, p_flat] += weight[(slice(None), slice(None)) + t]
    offsets = np.array(list(blocks), dtype=np.float64).reshape(len(blocks), d)
    mats = np.stack([m.reshape(co * qo, ci * qi) for m in blocks.values()])
    return offsets, mats


def symbol(offsets: np.ndarray, mats: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """``(F, rows, cols)``: ``sum_delta K_delta e^{i w.delta}`` at every frequency."""
    phase = np.exp(1j * (omega @ offsets.T))  # (F, T)
    t, r, c = mats.shape
    return (phase @ mats.reshape(t, r * c)).reshape(-1, r, c)


def grid_rows_to_symbol(rows: np.ndarray, n: tuple[int, ...], q: tuple[int, ...], period: tuple[int, ...]) -> np.ndarray:
    """Real rows on a value's grid ``(R, C, *n)`` -> ``(F, R, C*Q)`` with ``rows . u = sum_w A(w) u^(w)``.

    The grid sits at ``[0, n)`` of the value's torus of period ``q * period``;
    the sum runs over the full grid (the stored half plus conjugates).
    """
    r, c = rows.shape[:2]
    d = len(n)
    full = tuple(qq * p for qq, p in zip(q, period))
    torus = np.zeros((r, c) + full)
    torus[(slice(None), slice(None)) + tuple(slice(0, nn) for nn in n)] = rows
    # index q a + p -> (a, p)
    split = torus.reshape((r, c) + tuple(x for pair in zip(period, q) for x in pair))
    a_axes = tuple(2 + 2 * i for i in range(d))
    p_axes = tuple(3 + 2 * i for i in range(d))
    poly = split.transpose((0, 1) + p_axes + a_axes).reshape((r, c * int(np.prod(q))) + tuple(period))
    spec = np.conj(np.fft.rfftn(poly, axes=tuple(range(2, 2 + d)))) / float(np.prod(period))
    return np.moveaxis(spec.reshape(r, spec.shape[1], -1), 2, 0)


def dense_weight_of_groups(weight: np.ndarray, groups: int) -> np.ndarray:
    """``(Co, Ci/g, *k)`` -> block-diagonal dense ``(Co, Ci, *k)``."""
    if groups == 1:
        return weight
    co, cig = weight.shape[:2]
    cog = co // groups
    out = np.zeros((co, cig * groups) + weight.shape[2:], dtype=weight.dtype)
    for g in range(groups):
        out[g * cog:(g + 1) * cog, g * cig:(g + 1) * cig] = weight[g * cog:(g + 1) * cog]
    return out
