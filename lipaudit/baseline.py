"""Numbers a gate compares against: thresholds from the command line and values from a baseline report.

NaN and infinity never pass a gate: a threshold must be a finite number >= 0, a baseline's network
certificate a finite number > 0 (the regression is a ratio) and its layer values finite numbers
>= 0. The report writes a non-finite value as the string ``"inf"``/``"-inf"``/``"nan"``;
:func:`number` reads those back, so a report round-trips, and a baseline holding one is refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lipaudit.errors import BaselineError, UsageError

NON_FINITE = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "-inf": -math.inf, "-infinity": -math.inf,
              "nan": math.nan}


def number(value: Any) -> float:
    """A report value as a float: numbers as they are, ``"inf"``/``"nan"`` as written by the report."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in NON_FINITE:
        return NON_FINITE[value.strip().lower()]
    raise TypeError(f"{value!r} is not a number")


def check_threshold(flag: str, value: Any) -> float | None:
    """A gate threshold: None, or a finite number >= 0 (a usage error otherwise)."""
    if value is None:
        return None
    try:
        x = number(value) if not isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: expected a number") from None
    if not math.isfinite(x):
        raise UsageError(f"{flag} {value!r}: must be a finite number")
    if x < 0:
        raise UsageError(f"{flag} {value!r}: must be >= 0")
    return x


def read_baseline(path: str) -> dict[str, Any]:
    """A previous JSON report whose certificate can be compared against, values as floats."""
    from lipaudit.safe_io import require_regular_file

    require_regular_file(path, "baseline", error=BaselineError)
    prefix = f"--baseline {path}"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:
        raise BaselineError(f"{prefix}: not a readable JSON report ({type(exc).__name__}: {exc})") from None
    try:
        cert = data["network"]["certified"]
        value = number(cert["value"])
    except (KeyError, TypeError) as exc:
        raise BaselineError(f"{prefix}: not a lipaudit JSON report with a network certificate "
                            f"({type(exc).__name__}: {exc})") from None
    if not (math.isfinite(value) and value > 0):
        raise BaselineError(f"{prefix}: its certified network bound is {cert['value']!r}; a baseline needs a "
                            "finite bound > 0 to compare against")
    layers = data.get("layers", [])
    if not isinstance(layers, list):
        raise BaselineError(f"{prefix}: 'layers' is not a list")
    clean_layers = []
    for layer in layers:
        try:
            name = str(layer["name"])
            raw = layer["values"]["certified"]["value"]
        except (KeyError, TypeError):
            continue  # a layer without a certified value is not compared
        try:
            v = number(raw)
        except TypeError:
            raise BaselineError(f"{prefix}: layer {name!r} has a non-numeric certified value {raw!r}") from None
        if not (math.isfinite(v) and v >= 0):
            raise BaselineError(f"{prefix}: layer {name!r} has certified value {raw!r}; a baseline needs finite "
                                "values >= 0")
        clean_layers.append({"name": name, "values": {"certified": {"value": v}}})
    return {**data, "network": {**data["network"], "certified": {**cert, "value": value}}, "layers": clean_layers}
