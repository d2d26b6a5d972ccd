"""BatchNorm (inference mode) as a per-channel scale, and folding it into a kernel.

``BN(x)_c = gamma_c (x_c - mean_c) / sqrt(var_c + eps) + beta_c``: an affine
map whose linear part is ``diag(gamma / sqrt(var + eps))``. Shifts do not
change a Lipschitz constant, so only that scale matters.
"""

from __future__ import annotations

import numpy as np

from lipaudit.values import SAFETY, BoundResult, Kind


def bn_scale(gamma, var, eps: float = 1e-5) -> np.ndarray:
    """Per-channel scale ``gamma / sqrt(var + eps)`` in float64."""
    var = np.asarray(var, dtype=np.float64)
    if np.any(var + eps < 0):
        raise ValueError("BatchNorm variance + eps is negative")
    return np.asarray(gamma, dtype=np.float64) / np.sqrt(var + eps)


def bn_norm(scale: np.ndarray) -> BoundResult:
    """A BatchNorm standing alone: a diagonal map, norm ``max |scale|`` (exact)."""
    value = float(np.max(np.abs(scale))) if np.size(scale) else 0.0
    return BoundResult(value=value * SAFETY, kind=Kind.EXACT, method="diag", valid_for="all input sizes")


def _scale_axis0(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return w * scale.reshape((-1,) + (1,) * (w.ndim - 1))


def _scale_grouped_axis1(w: np.ndarray, scale: np.ndarray, groups: int) -> np.ndarray:
    # axis 1 holds the channels of one group; the group of a row is row // (rows / groups)
    rows, per = w.shape[:2]
    blocks = w.reshape((groups, rows // groups, per) + w.shape[2:])
    s = scale.reshape((groups, 1, per) + (1,) * (w.ndim - 2))
    return (blocks * s).reshape(w.shape)


def fold_bn_into_conv(weight, scale, *, side: str, groups: int = 1, transpose: bool = False) -> np.ndarray:
    """Kernel of ``BN o conv`` (``side="after"``) or ``conv o BN`` (``side="before"``).

    ``weight`` uses the ONNX/PyTorch layout: ``(c_out, c_in/g, *k)`` for a conv,
    ``(c_in, c_out/g, *k)`` for a transposed conv.
    """
    w = np.asarray(weight, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if side not in ("after", "before"):
        raise ValueError("side must be 'after' or 'before'")
    on_axis0 = (side == "after") != transpose  # conv outputs / transpose-conv inputs live on axis 0
    expected = w.shape[0] if on_axis0 else w.shape[1] * groups
    if scale.shape != (expected,):
        raise ValueError(f"BatchNorm has {scale.shape[0]} channels, the kernel side has {expected}")
    return _scale_axis0(w, scale) if on_axis0 else _scale_grouped_axis1(w, scale, groups)


def fold_bn_into_dense(weight, scale, *, side: str) -> np.ndarray:
    """``(out, in)`` matrix of ``BN o W`` (after) or ``W o BN`` (before)."""
    w = np.asarray(weight, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    return w * scale[:, None] if side == "after" else w * scale[None, :]
