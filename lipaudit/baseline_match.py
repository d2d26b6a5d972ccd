"""Baselines compare like with like: what a report's numbers depend on, and how two reports differ.

A regression check compares the certified network bound of a new model with an earlier report.
That comparison means something only when both numbers were computed the same way: the same
compositions from the same per-layer methods, the same solver settings, at the same input shape,
for the same outputs and on the same input domain. :func:`basis` reads all of that from a report
(old reports included: everything is derived from fields every report has), and :func:`differences`
names each mismatch. A different lipaudit version is only a note; a different model file is the
point of the check. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

# keys of the basis that must match, with the words used to name them
_LABELS = {
    "method": "--method",
    "compositions": "per-layer methods",
    "input_shape": "input shape",
    "outputs": "certified outputs",
    "until": "--until",
    "domain": "input domain",
    "solver": "solver",
}


def _methods_tried(method: str, compare: list[str]) -> list[str]:
    """Per-layer methods computed for the ``certified`` column (it takes their smallest bound)."""
    from lipaudit.engine import AuditSettings
    from lipaudit.errors import UsageError

    try:
        return sorted(AuditSettings(method=method, compare=tuple(compare)).conv_methods)
    except UsageError:  # a report from a version with other method names: compare the names as given
        return sorted({method, *compare})


def basis(report: dict[str, Any]) -> dict[str, Any]:
    """Everything that changes a report's numbers, read from the report itself."""
    settings = report.get("settings") or {}
    model = report.get("model") or {}
    method = settings.get("method")
    compare = sorted(settings.get("compare") or [])
    compositions: dict[str, list[str]] = {}
    if method and method != "certified":
        compositions[method] = [method]
    compositions["certified"] = _methods_tried(method or "tn", compare)
    if "exact" in compare:
        compositions["exact"] = ["exact"]
    hopm, power = settings.get("hopm") or {}, settings.get("power") or {}
    return {
        "method": method,
        "compositions": compositions,
        "input_shape": model.get("input_shape"),
        "outputs": sorted(model.get("outputs") or []),
        "until": settings.get("until"),
        "domain": settings.get("input_range", settings.get("domain")),  # None: every input
        "solver": {"seed": settings.get("seed"), "hopm_max_iters": hopm.get("max_iters"), "hopm_tol": hopm.get("tol"),
                   "power_max_iters": power.get("max_iters"), "power_tol": power.get("tol"),
                   "expansion_budget": settings.get("expansion_budget")},
        "lipaudit_version": (report.get("tool") or {}).get("version"),
    }


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value)) if value and all(isinstance(v, int) for v in value) else ",".join(map(str, value)) or "none"
    return str(value)


def differences(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One phrase per mismatch between two bases, baseline first, e.g. ``--method: certified -> tn``;
    empty when they compare like with like."""
    out = []
    for key, label in _LABELS.items():
        old, new = baseline.get(key), current.get(key)
        if key in ("compositions", "solver") and isinstance(old, dict) and isinstance(new, dict):
            # compositions only one side has follow from --method, which is named on its own
            keys = sorted(set(old) & set(new)) if key == "compositions" else sorted(set(old) | set(new))
            changed = {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}
            if changed:
                parts = [f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in changed.items()]
                out.append(f"{label}: {', '.join(parts)}")
        elif old != new:
            out.append(f"{label}: {_show(old)} -> {_show(new)}")
    return out


def version_note(baseline: dict[str, Any], current: dict[str, Any]) -> str | None:
    old, new = baseline.get("lipaudit_version"), current.get("lipaudit_version")
    if old == new:
        return None
    return f"the baseline was written by lipaudit {old or 'unknown'}, this is {new}; numbers may differ slightly between versions"
