"""Choosing the certified value of a layer, and promoting a verified TN value."""

from __future__ import annotations

from dataclasses import replace

from lipaudit.values import BoundResult, Kind

ALL_SIZES = "all input sizes"


def verify_tn(values: dict[str, BoundResult]) -> dict[str, BoundResult]:
    """Mark ``tn`` as a guaranteed bound when it is >= a guaranteed upper bound.

    HOPM returns a value attained by unit vectors, so it is at most the true
    TN; if it is nevertheless at least a guaranteed bound ``U`` on the layer,
    then it is itself a guaranteed bound, valid where ``U`` is.
    """
    tn = values.get("tn")
    if tn is None or tn.kind.is_sound_upper:
        return values
    candidates = [
        (name, r) for name, r in values.items() if name not in ("tn", "certified") and r.kind.is_sound_upper and r.value <= tn.value
    ]
    if not candidates:
        return values
    # prefer a check that holds for every input size
    name, ref = sorted(candidates, key=lambda item: (item[1].valid_for != ALL_SIZES, item[1].value))[0]
    out = dict(values)
    out["tn"] = replace(
        tn,
        kind=Kind.UPPER,
        valid_for=ref.valid_for,
        detail={**tn.detail, "verified_against": name, "verified_against_value": ref.value},
    )
    return out


def certified_of(values: dict[str, BoundResult]) -> BoundResult:
    """The smallest guaranteed upper bound among ``values`` (kinds ``upper``/``exact``)."""
    sound = [(name, r) for name, r in values.items() if name != "certified" and r.kind.is_sound_upper]
    if not sound:
        raise ValueError("no guaranteed upper bound was computed")
    name, best = min(sound, key=lambda item: item[1].value)
    return BoundResult(
        best.value,
        Kind.EXACT if best.kind is Kind.EXACT else Kind.UPPER,
        "certified",
        time_s=sum(r.time_s for _, r in sound),
        valid_for=best.valid_for,
        detail={"from": name},
    )
