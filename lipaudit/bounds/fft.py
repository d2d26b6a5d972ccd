"""Guaranteed upper bounds from the symbol of the kernel, computed by FFT.

- ``circular_norm``: the exact norm of the circular convolution of period
  ``N`` (Sedghi et al. 2019): the largest singular value of the symbol over
  the ``N``-grid of frequencies. A stride is handled by the polyphase form
  (Senderovich et al. 2022): the strided circular conv of period ``N`` is a
  stride-1 circular conv of period ``N / s`` on the polyphase components.
- ``fft_upper``: a layer at a given input size. A zero-padded layer on an
  ``n``-input is a compression of the circular conv of period
  ``N >= n + pad_begin + pad_end``, so ``circular_norm`` there bounds it.
- ``symbol_sup_upper``: a bound on the symbol supremum (hence on the layer
  at *every* input size) from an ``N``-grid and Bernstein's inequality:
  ``sup <= max_grid / sqrt(1 - 0.5 (pi sum_i (k_i - 1) / N)^2)``.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds.conv import ConvSpec, dilate, max_copies, polyphase, split_groups
from lipaudit.bounds.linalg import max_singular_values, stack_max_singular

_CHUNK_ELEMS = 8 * 2**20


def circular_norm(kernels: np.ndarray, grid: tuple[int, ...]) -> float:
    """Max over the frequency grid and the groups of ``||K_g^(w)||_2``, float64.

    ``kernels`` is ``(G, c_out, c_in, *taps)`` with ``taps[i] <= grid[i]``.
    Only half of the grid is evaluated: a real kernel's symbol satisfies
    ``K^(-w) = conj(K^(w))``, which has the same singular values.
    """
    k = np.asarray(kernels, dtype=np.float64)
    d = k.ndim - 3
    G, co, ci = k.shape[:3]
    if any(t > n for t, n in zip(k.shape[3:], grid)):
        raise ValueError(f"kernel taps {k.shape[3:]} exceed FFT grid {grid}")
    if d == 0:
        return float(max_singular_values(k).max())
    axes = tuple(range(3, 3 + d))
    # the symbol is constant along an axis with a single tap: evaluate one frequency there
    grid = tuple(1 if t == 1 else n for t, n in zip(k.shape[3:], grid))
    sym = np.fft.rfftn(k, s=grid, axes=axes)  # e^{-i w a}: the symbol's convention
    sym = np.moveaxis(sym, (1, 2), (-2, -1)).reshape(-1, co, ci)
    best = 0.0
    per = max(1, _CHUNK_ELEMS // (co * ci))
    for start in range(0, sym.shape[0], per):
        best = max(best, stack_max_singular(sym[start : start + per]))
    return best


def fft_upper(spec: ConvSpec) -> tuple[float, dict]:
    """Guaranteed upper bound on the layer's norm at its input size, and details.

    Raises ``ValueError`` when the input size is unknown.
    """
    n = spec.operator_input_size()
    if n is None:
        raise ValueError("the FFT bound needs the layer's input size")
    w = np.asarray(spec.weight, dtype=np.float64)
    # at a finite size the real (dilated) taps matter: dilate, then polyphase
    kernels = split_groups(polyphase(dilate(w, spec.dilation), spec.stride), spec.groups)
    taps = kernels.shape[3:]
    pads = spec.pads_per_axis()
    period_grid = tuple(ni // s for ni, s in zip(n, spec.stride))
    if (
        spec.padding_mode == "circular"
        and all(pb + pe <= k - 1 for (pb, pe), k in zip(pads, spec.dilated_kernel_size))
        and all(ni % s == 0 for ni, s in zip(n, spec.stride))
        and all(t <= g for t, g in zip(taps, period_grid))
    ):
        # the output rows are distinct rows of the circular conv of period n itself
        grid, factor = period_grid, 1.0
    else:
        # valid conv on the padded input: a compression of a circular conv of period N >= n + pads
        grid = tuple(
            max(math.ceil(max(ni + pb + pe, k) / s), t)
            for ni, (pb, pe), k, s, t in zip(n, pads, spec.dilated_kernel_size, spec.stride, taps)
        )
        factor = math.sqrt(
            float(np.prod([max_copies(spec.padding_mode, ni, pb, pe) for ni, (pb, pe) in zip(n, pads)]))
        )
    value = factor * circular_norm(kernels, grid)
    return value, {
        "period": [g * s for g, s in zip(grid, spec.stride)],
        "padding_factor": factor,
    }


def bernstein_factor(taps: tuple[int, ...], grid: int) -> float:
    """Correction from a sampled symbol maximum to the symbol supremum (inf if too coarse)."""
    x = 0.5 * (math.pi * sum(t - 1 for t in taps) / grid) ** 2
    return math.inf if x >= 1 else 1.0 / math.sqrt(1.0 - x)


def symbol_sup_upper(kernels: np.ndarray, grid: int = 32) -> tuple[float, float]:
    """Guaranteed bound on ``sup_w ||K_g^(w)||_2`` over groups: ``(bound, grid maximum)``.

    ``kernels`` are canonical (stride-1) kernels. The grid is enlarged until
    the Bernstein correction is below 1.01.
    """
    taps = kernels.shape[3:]
    while bernstein_factor(taps, grid) > 1.01:
        grid *= 2
    sampled = circular_norm(kernels, (grid,) * len(taps))
    return sampled * bernstein_factor(taps, grid), sampled
