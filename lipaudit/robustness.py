"""Certified robustness from logits and a Lipschitz constant: pure computation, no I/O.

For a classifier whose logits ``z(x)`` are ``L``-Lipschitz in the l2 norm, every
difference ``z_i - z_j`` is ``sqrt(2) L``-Lipschitz (Tsuzuku, Sato & Sugiyama,
NeurIPS 2018, Prop. 2), so the top-1 class cannot change within the l2 ball of
radius ``margin / (sqrt(2) L)`` around ``x``, where ``margin`` is the gap between
the largest and second-largest logit. A sample is *certified at eps* when it is
classified correctly **and** its radius is strictly larger than eps.

``L`` must be a guaranteed upper bound (kind ``upper`` or ``exact``); with an
estimate the radii would not be certificates, so :func:`summarise` refuses it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from lipaudit.errors import DataError, UsageError

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def eps_key(eps: float) -> str:
    """The JSON key of an eps: the shortest text that reads back as the same float (``0.1``, ``0.05``)."""
    return repr(float(eps))


def check_labels(y: Any, n: int) -> np.ndarray:
    """``y`` as int64 of length ``n``; DataError for anything but integer labels."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"y has shape {tuple(y.shape)}: expected one integer label per sample, shape ({n},)")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            return y.astype(np.int64)
        raise DataError(f"y has dtype {y.dtype}: expected integer class labels")
    return y.astype(np.int64)


def check_inputs(x: Any, sample_shape: Sequence[int]) -> np.ndarray:
    """``x`` as float32 with samples of ``sample_shape``; DataError for other shapes or non-finite values."""
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == bool:
        raise DataError(f"x has dtype {x.dtype}: expected numbers")
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(sample_shape):
        want = "(N, " + ", ".join(map(str, sample_shape)) + ")"
        raise DataError(f"x has shape {tuple(x.shape)}: the model was certified for inputs of shape {want}")
    if x.shape[0] == 0:
        raise DataError("x holds no samples")
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if bad.any():
        raise DataError(f"x holds NaN or infinite values ({int(bad.sum())} sample(s), first at index {int(np.argmax(bad))})")
    return x.astype(np.float32, copy=False)


def check_inside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """DataError unless every sample lies in the box ``lo <= x <= hi`` (shape ``(1, *sample)``), where L holds."""
    outside = ((x < lo) | (x > hi)).reshape(x.shape[0], -1).any(axis=1)
    if outside.any():
        raise DataError(f"{int(outside.sum())} sample(s) lie outside the input range (first at index "
                        f"{int(np.argmax(outside))}); the Lipschitz bound holds on that domain only")


def top1_margins(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and the gap between the largest and the second-largest logit, per sample."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise DataError(f"the model's output has shape {tuple(logits.shape)}: certify needs logits of shape (N, classes >= 2)")
    pred = np.argmax(logits, axis=1)
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    return pred, (top2[:, 1] - top2[:, 0]).astype(np.float64)


def summarise(logits: np.ndarray, y: np.ndarray, lipschitz: Mapping[str, Any], eps: Sequence[float]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The ``robustness`` JSON section and the per-sample arrays.

    Args:
        logits: (N, C) model outputs.
        y: (N,) integer labels in ``[0, C)``.
        lipschitz: ``{"value", "kind", "composition", ...}``: a guaranteed bound on the logits' l2 constant.
        eps: l2 radii at which to report certified accuracy.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(logits).all():
        bad = int(np.argmax(~np.isfinite(logits).all(axis=1)))
        raise DataError(f"the model's logits are NaN or infinite for sample {bad}")
    n, classes = logits.shape if logits.ndim == 2 else (len(logits), 0)
    pred, margin = top1_margins(logits)
    if y.min() < 0 or y.max() >= classes:
        raise DataError(f"labels must be in [0, {classes}) for {classes} logits; found {int(y.min())}..{int(y.max())}")
    L, kind = float(lipschitz["value"]), str(lipschitz["kind"])
    if kind not in ("upper", "exact"):
        raise UsageError(f"the Lipschitz value is {kind!r}; radii need a guaranteed upper bound")
    if not (L >= 0) or math.isnan(L):
        raise UsageError(f"the Lipschitz bound {L!r} is not a non-negative number")
    correct = pred == y
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = margin / (math.sqrt(2.0) * L) if L > 0 else np.where(margin > 0, np.inf, 0.0)
    radius = np.where(np.isnan(radius), 0.0, radius)
    certified_radius = np.where(correct, radius, 0.0)  # a wrong prediction certifies nothing
    section = {
        "lipschitz": dict(lipschitz),
        "n": int(n),
        "clean_accuracy": float(correct.mean()),
        "certified_accuracy": {eps_key(e): float(np.mean(certified_radius > e)) for e in sorted(set(map(float, eps)))},
        "radius_quantiles": {repr(q): float(np.quantile(certified_radius, q)) for q in QUANTILES},
        "radius": "margin / (sqrt(2) L), margin = top-1 minus top-2 logit; quantiles over all samples, "
                  "0 for misclassified ones",
    }
    samples = {"margins": margin, "radii": radius, "certified_radii": certified_radius, "predictions": pred,
               "labels": y, "correct": correct}
    return section, samples


def parse_eps(text: str) -> list[float]:
    """``0.05,0.1,0.2`` -> floats, each finite and >= 0."""
    try:
        values = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--eps {text!r}: expected comma-separated numbers, e.g. 0.05,0.1,0.2") from None
    check_eps(values)
    return values


def check_eps(values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise UsageError("eps: give at least one radius")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UsageError(f"eps {values}: every radius must be a finite number >= 0")
    return values


def parse_gate(text: str) -> tuple[float, float]:
    """``ACC@EPS`` (``0.6@0.1``, or ``60%@0.1``) -> (accuracy, eps)."""
    acc_text, sep, eps_text = str(text).partition("@")
    try:
        if not sep:
            raise ValueError
        acc = float(acc_text[:-1]) / 100 if acc_text.endswith("%") else float(acc_text)
        eps = float(eps_text)
    except ValueError:
        raise UsageError(f"--min-certified-accuracy {text!r}: expected ACC@EPS, e.g. 0.6@0.1") from None
    if not (0 <= acc <= 1) or not math.isfinite(eps) or eps < 0:
        raise UsageError(f"--min-certified-accuracy {text!r}: accuracy in [0, 1] and a finite eps >= 0")
    return acc, eps
