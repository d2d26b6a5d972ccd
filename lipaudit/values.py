"""The vocabulary every number in lipaudit is reported in.

A value is never a bare float: it carries its *kind*, which says what it is
allowed to be used for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# Multiplied into every value computed in float64 that is claimed to be a
# guaranteed upper bound: covers the rounding error of SVD / eigensolvers
# (backward-stable, error ~ dim * 1e-16 relative) with a very wide margin.
SAFETY = 1.0 + 1e-6


class Kind(str, enum.Enum):
    """What a number is guaranteed to be."""

    UPPER = "upper"  # a guaranteed upper bound on the true value
    ESTIMATE = "estimate"  # converges to its target from below; not a certificate
    EXACT = "exact"  # true value, bracketed within a stated tolerance (value is the upper end)
    LOWER = "lower"  # a guaranteed lower bound

    @property
    def is_sound_upper(self) -> bool:
        """True when the value may enter a certificate."""
        return self in (Kind.UPPER, Kind.EXACT)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BoundResult:
    """One computed value for one layer.

    Attributes:
        value: the number.
        kind: what it is guaranteed to be (see :class:`Kind`).
        method: which computation produced it (``tn``, ``f4``, ``fro``, ``fft``, ``power``, ...).
        iterations: iterations used by an iterative method, else ``None``.
        time_s: wall time spent computing it.
        valid_for: for ``upper``/``exact`` values, the input sizes it holds for
            (``"all input sizes"`` or e.g. ``"input 32x32"``).
        detail: method-specific extras (restarts, bracket ends, verification), JSON-serialisable.
    """

    value: float
    kind: Kind
    method: str
    iterations: int | None = None
    time_s: float = 0.0
    valid_for: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": float(self.value),
            "kind": self.kind.value,
            "method": self.method,
            "time_s": round(float(self.time_s), 6),
        }
        if self.iterations is not None:
            out["iterations"] = int(self.iterations)
        if self.valid_for is not None:
            out["valid_for"] = self.valid_for
        if self.detail:
            out["detail"] = self.detail
        return out

    def scaled(self, factor: float, note: str | None = None) -> "BoundResult":
        """The same result multiplied by a non-negative factor (e.g. a padding operator's norm)."""
        detail = dict(self.detail)
        if note:
            detail["scaled_by"] = note
        return BoundResult(
            value=self.value * factor,
            kind=self.kind,
            method=self.method,
            iterations=self.iterations,
            time_s=self.time_s,
            valid_for=self.valid_for,
            detail=detail,
        )
