"""All values for one convolution layer: the entry point of ``lipaudit.bounds``.

Methods (names used in reports and on the command line):

========= ======================================================== ===========
method    what                                                     kind
========= ======================================================== ===========
tn        ``sqrt(prod k) ||K||_sigma`` by HOPM (Grishina et al.)    estimate, or
                                                                   upper once verified
f4        ``sqrt(prod k)`` x smallest unfolding norm (SVD)          upper
fro       ``sqrt(prod k) ||K||_F``                                  upper
symbol    symbol supremum from an FFT grid + Bernstein correction   upper (all sizes)
fft       circular conv of period ``N >= n + pads`` (FFT + SVD)     upper (size n)
exact     power iteration on the true operator, bracketed by fft    exact or estimate
certified the smallest guaranteed upper bound computed              upper / exact
========= ======================================================== ===========
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from lipaudit.bounds.certified import ALL_SIZES, certified_of, verify_tn
from lipaudit.bounds.conv import ConvSpec, canonical_kernels, padding_operator_norm, split_groups
from lipaudit.bounds.fft import fft_upper, symbol_sup_upper
from lipaudit.bounds.hopm import HopmSettings, tensor_spectral_norm
from lipaudit.bounds.linalg import singular_brackets
from lipaudit.bounds.power import PowerSettings, power_iteration
from lipaudit.bounds.unfold import f4_norm, fro_norm, matrix_like
from lipaudit.values import SAFETY, BoundResult, Kind

CONV_METHODS = ("tn", "f4", "fro", "symbol", "fft", "exact")
SIZE_METHODS = ("fft", "exact")  # need the layer's input size


@dataclass(frozen=True)
class BoundSettings:
    """Settings of every per-layer method.

    ``exact_rtol``: the power-iteration estimate and the FFT upper bound must
    agree within this relative gap for a value to be called ``exact``.
    """

    hopm: HopmSettings = field(default_factory=HopmSettings)
    power: PowerSettings = field(default_factory=PowerSettings)
    exact_rtol: float = 1e-4


def conv_bounds(
    spec: ConvSpec, methods=("tn", "f4", "fro"), settings: BoundSettings = BoundSettings()
) -> dict[str, BoundResult]:
    """Compute the requested values for one conv layer, plus ``certified``.

    Args:
        spec: the layer.
        methods: any of :data:`CONV_METHODS`; ``fft``/``exact`` need ``spec.input_size``.
        settings: solver settings.

    Returns:
        ``{method: BoundResult}`` including ``"certified"``, the smallest
        guaranteed upper bound computed (``fro`` is always computed, it is free,
        so a certificate always exists). ``tn`` is promoted to kind ``upper``
        when it is at least one of the guaranteed bounds.
    """
    unknown = set(methods) - set(CONV_METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {CONV_METHODS}")
    wanted = list(dict.fromkeys(list(methods) + ["fro"]))
    if spec.input_size is None:
        missing = [m for m in wanted if m in SIZE_METHODS]
        if missing:
            raise ValueError(f"{', '.join(missing)} need the layer's input size")
    kernels = canonical_kernels(spec)
    factor, note = padding_operator_norm(spec)
    scope = ALL_SIZES if factor == 1.0 or spec.input_size is None else f"input {_size(spec.input_size)}"
    out: dict[str, BoundResult] = {}
    f4 = None
    if "f4" in wanted or ("tn" in wanted and matrix_like(kernels)):
        t0 = time.perf_counter()
        value, unfolding = f4_norm(kernels)
        f4 = BoundResult(
            value * SAFETY, Kind.UPPER, "f4", time_s=time.perf_counter() - t0, valid_for=scope, detail={"unfolding": unfolding}
        ).scaled(factor, note)
        if "f4" in wanted:
            out["f4"] = f4
    if "tn" in wanted:
        if matrix_like(kernels):
            # at most two non-trivial modes: ||K||_sigma is a matrix norm, which F4's SVD computed exactly
            out["tn"] = BoundResult(
                f4.value, Kind.UPPER, "tn", time_s=f4.time_s, valid_for=scope,
                detail={"solver": "svd (kernel has two non-trivial modes)", **f4.detail},
            )
        else:
            # HOPM stops once it reaches the unfolding bound (F4 / sqrt(prod k), before the padding factor)
            ceiling = f4.value / factor / SAFETY if f4 is not None else None
            out["tn"] = _tn(kernels, settings.hopm, ceiling).scaled(factor, note)
    if "fro" in wanted:
        t0 = time.perf_counter()
        out["fro"] = BoundResult(
            fro_norm(kernels) * SAFETY, Kind.UPPER, "fro", time_s=time.perf_counter() - t0, valid_for=scope
        ).scaled(factor, note)
    if "symbol" in wanted:
        t0 = time.perf_counter()
        value, sampled = symbol_sup_upper(kernels)
        out["symbol"] = BoundResult(
            value * SAFETY, Kind.UPPER, "symbol", time_s=time.perf_counter() - t0, valid_for=scope,
            detail={"grid_max": sampled},
        ).scaled(factor, note)
    if "fft" in wanted or "exact" in wanted:
        t0 = time.perf_counter()
        value, info = fft_upper(spec)
        fft = BoundResult(
            value * SAFETY, Kind.UPPER, "fft", time_s=time.perf_counter() - t0,
            valid_for=f"input {_size(spec.input_size)}", detail=info,
        )
        out["fft"] = fft  # computed anyway for exact; a guaranteed bound worth keeping
        if "exact" in wanted:
            out["exact"] = _exact(spec, fft, settings)
    out = verify_tn(out)
    out["certified"] = certified_of(out)
    return out


def _tn(kernels: np.ndarray, hopm: HopmSettings, ceiling: float | None = None) -> BoundResult:
    t0 = time.perf_counter()
    taps = kernels.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if taps else 1.0
    res = tensor_spectral_norm(kernels, hopm, None if ceiling is None else ceiling / scale)
    return BoundResult(
        scale * float(res.values.max()), Kind.ESTIMATE, "tn", iterations=res.iterations,
        time_s=time.perf_counter() - t0,
        detail={"solver": "hopm", "converged": res.converged, "starts": hopm.restarts},
    )


def _exact(spec: ConvSpec, fft: BoundResult, settings: BoundSettings) -> BoundResult:
    """Bracket the true norm: power iteration from below, the FFT bound from above."""
    t0 = time.perf_counter()
    if all(k == 1 for k in spec.kernel_size) and spec.padding_mode == "zeros":
        # a 1x1 conv applies one matrix per position (per group): its norm is that matrix's, at any size
        lower, upper = singular_brackets(split_groups(np.asarray(spec.weight, dtype=np.float64), spec.groups)
                                         .reshape(spec.groups, spec.weight.shape[0] // spec.groups, -1))
        detail = {"lower_estimate": float(lower.max()), "upper": float(upper.max()) * SAFETY, "solver": "svd (1x1 kernel)"}
        return BoundResult(float(upper.max()) * SAFETY, Kind.EXACT, "exact", time_s=time.perf_counter() - t0,
                           valid_for=fft.valid_for, detail=detail)
    lower, iters, converged = power_iteration(spec, settings.power)
    elapsed = time.perf_counter() - t0 + fft.time_s
    upper = fft.value
    detail = {"lower_estimate": lower, "upper": upper, "power_converged": converged, "rtol": settings.exact_rtol}
    if upper - lower <= settings.exact_rtol * upper:
        return BoundResult(upper, Kind.EXACT, "exact", iterations=iters, time_s=elapsed, valid_for=fft.valid_for, detail=detail)
    # the bracket did not close: report the estimate from below, with the bound beside it
    return BoundResult(lower, Kind.ESTIMATE, "exact", iterations=iters, time_s=elapsed, detail=detail)


def _size(size) -> str:
    return "x".join(str(n) for n in size)
