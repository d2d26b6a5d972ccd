"""The input domain a certificate may be restricted to: ``--input-range LO,HI`` (or one pair per channel).

Without a domain every certificate is global. With one, lipaudit also bounds
every value of the network on the box (interval arithmetic, :mod:`lipaudit.ops.box`)
and can certify products of input-dependent tensors, which have no global
constant; the network number then holds for inputs inside the box only, and
the report says so (``valid_on``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lipaudit.errors import UsageError

# torchvision's ImageNet normalisation of pixels in [0, 1]: (p - mean) / std, per channel
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMS = "LO,HI (e.g. -3,3), one LO,HI pair per channel separated by ';', or 'imagenet'"


@dataclass(frozen=True)
class InputDomain:
    """A box of inputs: ``lo <= x <= hi`` entry-wise, the same for every entry or one pair per channel (axis 1)."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    text: str = ""

    def __post_init__(self):
        if len(self.lo) != len(self.hi) or not self.lo:
            raise UsageError(f"--input-range {self.text!r}: expected {FORMS}")
        for a, b in zip(self.lo, self.hi):
            if not (math.isfinite(a) and math.isfinite(b)):
                raise UsageError(f"--input-range {self.text!r}: bounds must be finite numbers")
            if a > b:
                raise UsageError(f"--input-range {self.text!r}: LO {a:g} is above HI {b:g}")

    @property
    def per_channel(self) -> bool:
        return len(self.lo) > 1

    def bounds_for(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` arrays of ``shape``; a per-channel range must match axis 1."""
        if not self.per_channel:
            return np.full(shape, self.lo[0]), np.full(shape, self.hi[0])
        if len(shape) < 2 or shape[1] != len(self.lo):
            raise UsageError(f"--input-range gives {len(self.lo)} channel ranges, but the input's shape is "
                             f"{list(shape)} (channels on axis 1)")
        view = (1, len(self.lo)) + (1,) * (len(shape) - 2)
        lo = np.broadcast_to(np.asarray(self.lo, dtype=np.float64).reshape(view), shape).copy()
        hi = np.broadcast_to(np.asarray(self.hi, dtype=np.float64).reshape(view), shape).copy()
        return lo, hi

    def to_json(self) -> list:
        """``[lo, hi]``, or ``[[lo per channel], [hi per channel]]`` (channels on axis 1)."""
        if self.per_channel:
            return [list(self.lo), list(self.hi)]
        return [self.lo[0], self.hi[0]]

    def describe(self) -> str:
        if not self.per_channel:
            return f"[{self.lo[0]:g}, {self.hi[0]:g}]"
        return "per channel " + ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(self.lo, self.hi))


def parse_input_range(text: str) -> InputDomain:
    """``-3,3``; ``lo1,hi1;lo2,hi2;lo3,hi3`` (one pair per channel); ``imagenet`` (pixels in [0, 1], normalised)."""
    t = str(text).strip()
    if t.lower() == "imagenet":
        lo = tuple((0.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        hi = tuple((1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        return InputDomain(lo, hi, t)
    lo, hi = [], []
    for part in t.split(";"):
        pair = [p.strip() for p in part.split(",")]
        if len(pair) != 2:
            raise UsageError(f"--input-range {text!r}: expected {FORMS}")
        try:
            a, b = float(pair[0]), float(pair[1])
        except ValueError:
            raise UsageError(f"--input-range {text!r}: expected {FORMS}") from None
        lo.append(a)
        hi.append(b)
    return InputDomain(tuple(lo), tuple(hi), t)
