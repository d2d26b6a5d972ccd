"""Thresholds and baselines turn an audit result into findings and a verdict. Pure: no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lipaudit.engine import AuditResult
from lipaudit.findings import Finding
from lipaudit.values import Kind


@dataclass(frozen=True)
class Gates:
    max_lipschitz: float | None = None
    max_layer_norm: float | None = None
    baseline: dict[str, Any] | None = None  # a previous JSON report
    max_increase: float = 0.0  # fraction, 0.05 = 5 %


def evaluate(result: AuditResult, gates: Gates) -> list[Finding]:
    """All findings for a finished audit, gates first.

    A result without a graph (weights only) has no network numbers: only the layer gate applies.
    """
    findings: list[Finding] = []
    cert = result.network.get("certified")
    findings += certificate_findings(result, gates)
    if gates.max_lipschitz is not None and cert is not None and not cert.value <= gates.max_lipschitz:
        on = " (on the --input-range domain)" if getattr(cert, "valid_on", None) is not None else ""
        findings.append(Finding("LIP001", f"certified network bound{on} {cert.value:.6g} > {gates.max_lipschitz:.6g}",
                                value=cert.value, threshold=gates.max_lipschitz))
    if gates.max_layer_norm is not None:
        for layer in result.layers:
            v = layer.values["certified"].value
            if not v <= gates.max_layer_norm:
                findings.append(Finding("LIP002", f"layer {layer.name} certified norm {v:.6g} > {gates.max_layer_norm:.6g}",
                                        node=layer.name, value=v, threshold=gates.max_layer_norm))
    if gates.baseline is not None and cert is not None:
        findings += _regressions(result, gates.baseline, gates.max_increase)
    findings += soundness_findings(result)
    return with_modules(findings, getattr(result, "modules", {}))


def with_modules(findings: list[Finding], modules: dict[str, str]) -> list[Finding]:
    """Name the source module of each finding's node (dynamo exporter metadata), in the message and the JSON."""
    for f in findings:
        module = modules.get(f.node) if f.node else None
        if module and f.module is None:
            f.module = module
            if repr(module) not in f.message and f"module {module}" not in f.message:
                f.message = f"{f.message} [module {module}]"
    return findings


def certificate_findings(result: AuditResult, gates: Gates) -> list[Finding]:
    """Why there is no certificate (LIP101 per root cause, LIP106 when a gate needs one), non-finite values (LIP010)."""
    out = []
    for refusal in getattr(result, "refusals", []):
        out.append(Finding("LIP101", refusal.message(), node=refusal.node,
                           extra={"op": refusal.op, "reason": refusal.reason, "slot": refusal.slot, "hint": refusal.hint}))
    if getattr(result, "refusals", []) and (gates.max_lipschitz is not None or gates.baseline is not None):
        out.append(Finding("LIP106", "--max-lipschitz/--baseline need a network certificate, which is unavailable: "
                                     + result.refusals[0].message()))
    if getattr(result, "refusals", []) and getattr(result, "layers", None):
        out.append(Finding("LIP013", f"no network certificate, but every layer's values were computed "
                                     f"({len(result.layers)} layers); to certify: "
                                     + remedy(result)))
    seen = set()
    for code, node, message in getattr(result, "node_notes", []):
        if (code, node) not in seen:
            seen.add((code, node))
            out.append(Finding(code, message, node=node))
    cert = result.network.get("certified")
    if cert is not None and not math.isfinite(cert.value):
        out.append(Finding("LIP010", "the certified network bound is infinite (a non-finite weight or bound on the way)",
                           value=math.inf))
    uses = getattr(result, "domain_uses", [])
    if uses and result.network:
        names = [u["name"] for u in uses]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        out.append(Finding("LIP012", f"the network bound holds on the input domain {result.domain.describe()} only "
                                     f"(valid_on), not globally: {len(names)} factor(s) certified on it ({shown})"))
    if getattr(result, "dynamic_batch", False):
        out.append(Finding("LIP011", "dynamic batch: certified per sample (no op combines samples, so the constant "
                                     "holds for every batch size)"))
    return out


def remedy(result) -> str:
    """What would make the network certifiable, from the refusals' hints."""
    hints = " ".join(r.hint or "" for r in result.refusals)
    options = []
    if "--input-range" in hints and getattr(result, "domain", None) is None:
        options.append("give --input-range LO,HI (products and unbounded slopes are then certified on that domain)")
    options.append("or certify a part of the network with --until NODE / --output VALUE (lipaudit nodes MODEL lists "
                   "them)" if options else "certify a part of the network with --until NODE / --output VALUE "
                   "(lipaudit nodes MODEL lists them)")
    return " ".join(options)


def _regressions(result: AuditResult, baseline: dict[str, Any], max_increase: float) -> list[Finding]:
    out = []
    old = baseline["network"]["certified"]["value"]
    new = result.network["certified"].value
    limit = old * (1 + max_increase) * (1 + 1e-9)
    if not new <= limit:
        out.append(Finding("LIP003", f"certified network bound {new:.6g} vs baseline {old:.6g} "
                                     f"(+{(new / old - 1) * 100:.2f}%, allowed +{max_increase * 100:.2f}%)",
                           value=new, threshold=limit))
    old_layers = {l["name"]: l["values"]["certified"]["value"] for l in baseline.get("layers", []) if "certified" in l.get("values", {})}
    for layer in result.layers:
        before = old_layers.get(layer.name)
        now = layer.values["certified"].value
        if before is not None and not now <= before * (1 + max_increase) * (1 + 1e-9):
            out.append(Finding("LIP004", f"layer {layer.name} certified norm {now:.6g} vs baseline {before:.6g}",
                               node=layer.name, value=now, threshold=before * (1 + max_increase)))
    return out


def soundness_findings(result: AuditResult) -> list[Finding]:
    """Unsound or unconverged values, and estimate-based network numbers: never hidden."""
    out = []
    for layer in result.layers:
        tn, exact = layer.values.get("tn"), layer.values.get("exact")
        if tn is not None and exact is not None:
            # the exact value's lower end is attained by an actual input: TN below it cannot be a bound
            lower = exact.detail.get("lower_estimate", exact.value) if exact.detail else exact.value
            if tn.value < lower * (1 - 1e-6):
                out.append(Finding("LIP005", f"layer {layer.name}: tn {tn.value:.6g} < exact norm {lower:.6g}",
                                   node=layer.name, value=tn.value, threshold=lower))
        if tn is not None and tn.detail.get("converged") is False:
            out.append(Finding("LIP007", f"layer {layer.name}: HOPM stopped at {tn.iterations} iterations", node=layer.name))
    method = result.settings.method
    if method in result.network and method != "certified" and result.network[method].kind is not Kind.UPPER:
        out.append(Finding("LIP006", f"the {method} network number is an estimate "
                                     f"({len(result.network[method].estimate_layers)} layer factor(s) are estimates); "
                                     "the certified number is a guaranteed bound"))
    return out


def verdict(findings: list[Finding]) -> str:
    """``fail`` when a finding of severity error counts; waived findings never do."""
    return "fail" if any(f.severity == "error" and not f.waived for f in findings) else "pass"
