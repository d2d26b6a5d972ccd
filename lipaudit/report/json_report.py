"""The JSON report: a stable contract CI gates read. Keys sorted, floats as numbers."""

from __future__ import annotations

import json
import math
from typing import Any

from lipaudit import __version__
from lipaudit.engine import AuditResult
from lipaudit.findings import Finding

SCHEMA_VERSION = "1.0"


def build_report(
    result: AuditResult | None,
    *,
    model: dict[str, Any],
    settings: dict[str, Any],
    findings: list[Finding],
    verdict: str,
    elapsed_s: float,
    timings: dict[str, float] | None = None,
    timed: bool = True,
) -> dict[str, Any]:
    """The report as a JSON-ready dict. ``result`` is None when the audit could not run (verdict ``error``)."""
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "lipaudit", "version": __version__},
        "model": model,
        "settings": settings,
        "layers": [],
        "factors": [],
        "network": {},
        "findings": [f.to_json() for f in findings],
        "verdict": verdict,
        "elapsed_s": round(elapsed_s, 4) if timed else 0.0,
    }
    if timings is not None:
        report["timings"] = {k: (round(v, 4) if timed else 0.0) for k, v in timings.items()}
    if result is None:
        return report
    for layer in result.layers:
        entry: dict[str, Any] = {
            "name": layer.name,
            "op": layer.op,
            "kernel_shape": layer.kernel_shape,
            "strides": layer.strides,
            "pads": layer.pads,
            "dilations": layer.dilations,
            "groups": layer.groups,
            "padding_mode": layer.padding_mode,
            "input_shape": layer.input_shape,
            "weight_shape": layer.weight_shape,
            "folded": list(layer.folded),
            "values": {m: _value_json(r, timed) for m, r in sorted(layer.values.items())},
            "share": round(layer.share, 6),
        }
        if layer.note:
            entry["note"] = layer.note
        if getattr(layer, "module", None):
            entry["module"] = layer.module
        ratios = _ratios(layer.values)
        if ratios:
            entry["ratios"] = ratios
        report["layers"].append(entry)
    report["factors"] = result.factors
    if getattr(result, "domain_uses", None):
        report["domain_factors"] = result.domain_uses
    for comp, nv in result.network.items():
        report["network"][comp] = {
            "value": nv.value,
            "kind": nv.kind.value,
            "per_output": nv.per_output,
            "estimate_layers": nv.estimate_layers,
        }
        if nv.valid_on is not None:
            report["network"][comp]["valid_on"] = nv.valid_on
        if getattr(nv, "product", None) is not None:
            report["network"][comp]["product"] = nv.product
        if getattr(nv, "expansion", None) is not None:
            exp = dict(nv.expansion)
            if not timed:
                exp["time_s"] = 0.0
            report["network"][comp]["expansion"] = exp
        if getattr(nv, "detail", None):
            extra = dict(nv.detail)
            if not timed and "time_s" in extra:
                extra["time_s"] = 0.0
            report["network"][comp].update(extra)
    refusals = getattr(result, "refusals", [])
    if refusals and not result.network:
        report["network"]["unavailable"] = {
            "message": "no network certificate: " + refusals[0].message(),
            "reasons": [{k: v for k, v in {"node": r.node, "op": r.op, "slot": r.slot, "reason": r.reason,
                                           "hint": r.hint, "module": getattr(r, "module", None)}.items()
                         if v is not None} for r in refusals],
        }
        from lipaudit.policy import remedy

        report["network"]["unavailable"]["remedy"] = remedy(result)
    if "exact" in result.network:
        exact = result.network["exact"].value
        for comp in result.network:
            if comp != "exact" and exact > 0:
                report["network"][comp]["ratio_to_exact"] = result.network[comp].value / exact
    return report


def _value_json(r, timed: bool) -> dict[str, Any]:
    out = r.to_json()
    if not timed:
        out["time_s"] = 0.0
    return out


def _ratios(values) -> dict[str, float]:
    exact = values.get("exact")
    if exact is None or exact.value <= 0:
        return {}
    return {f"{m}/exact": r.value / exact.value for m, r in sorted(values.items()) if m not in ("exact",)}


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(_clean(report), sort_keys=True, indent=2, allow_nan=False) + "\n"


def _clean(obj):
    """Plain JSON types only; inf/nan (a diverging bound) become strings rather than invalid JSON."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (str, bytes, bytearray)):
        from lipaudit.safe_io import clean_json

        return clean_json(obj)  # names from a file: invalid UTF-8 decoded with replacement
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else "nan")
    return obj


def schema() -> dict[str, Any]:
    """The JSON Schema of the report (shipped in the package)."""
    from importlib import resources

    return json.loads(resources.files("lipaudit").joinpath("schema/report.schema.json").read_text())
