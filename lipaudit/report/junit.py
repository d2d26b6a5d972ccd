"""JUnit XML: each gate of each model is a test case, so CI systems list a failed gate as a failed test.

Test cases per model (a ``<testsuite>`` each): ``audit`` (an ``<error>`` when the run could not
decide), then one per configured gate (``max-lipschitz``, ``max-layer-norm``, ``baseline``) and
``soundness`` (an unsound TN value, LIP005). A gate that was not evaluated because the audit failed
is ``<skipped>``. Waived findings never fail a test case; they are listed in its ``system-out``.
Built with :mod:`xml.etree.ElementTree`; characters XML 1.0 forbids are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from lipaudit.report.table import fmt
from lipaudit.safe_io import clean_text

GATE_CODES = {"max-lipschitz": ("LIP001",), "max-layer-norm": ("LIP002",), "baseline": ("LIP003",),
              "soundness": ("LIP005",)}
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: Any) -> str:
    # one printable line, control characters escaped as everywhere else: a raw newline from a node name
    # would otherwise start a forged line (e.g. a CI annotation) in a log that prints the XML
    return _BAD_XML.sub("", clean_text(text))


def _gates(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(test name, gate key) for this report's gates."""
    gates = (report.get("settings") or {}).get("gates") or {}
    out = []
    if gates.get("max_lipschitz") is not None:
        out.append((f"max-lipschitz <= {gates['max_lipschitz']:g}", "max-lipschitz"))
    if gates.get("max_layer_norm") is not None:
        out.append((f"max-layer-norm <= {gates['max_layer_norm']:g}", "max-layer-norm"))
    if gates.get("baseline"):
        out.append((f"baseline {gates['baseline']} (+{gates.get('max_increase', 0) * 100:.2f}% allowed)", "baseline"))
    out.append(("soundness (no TN value below the exact norm)", "soundness"))
    return out


def _testcase(suite, name: str, classname: str, time_s: float):
    return ET.SubElement(suite, "testcase", name=_x(name), classname=_x(classname), time=f"{time_s:.3f}")


def _suite(root, report: dict[str, Any]) -> tuple[int, int, int, int]:
    path = report["model"]["path"]
    suite = ET.SubElement(root, "testsuite", name=_x(f"lipaudit {path}"))
    classname = "lipaudit." + path
    findings = report["findings"]
    counted = [f for f in findings if not f.get("waived")]
    waived = [f for f in findings if f.get("waived")]
    tests = failures = errors = skipped = 0
    error = report["verdict"] == "error"
    elapsed = float(report.get("elapsed_s") or 0.0)

    case = _testcase(suite, "audit", classname, elapsed)
    tests += 1
    gate_codes = {c for codes in GATE_CODES.values() for c in codes}
    others = [f for f in counted if f["severity"] == "error" and f["code"] not in gate_codes]
    if error or others:
        first = others[0] if others else {"code": "LIP104", "message": "the audit could not decide"}
        node = ET.SubElement(case, "error" if error else "failure", type=first["code"], message=_x(first["message"]))
        node.text = "\n".join(_x(f"{f['code']} {f['name']}: {f['message']}") for f in others)
        errors += error
        failures += not error
    for name, key in _gates(report):
        case = _testcase(suite, name, classname, 0.0)
        tests += 1
        if error:
            ET.SubElement(case, "skipped", message="not evaluated: the audit could not run")
            skipped += 1
            continue
        hits = [f for f in counted if f["code"] in GATE_CODES[key]]
        if hits:
            node = ET.SubElement(case, "failure", type=hits[0]["code"], message=_x(hits[0]["message"]))
            node.text = "\n".join(_x(f"{f['code']} {f['name']}: {f['message']}") for f in hits)
            failures += 1
        mine = [f for f in waived if f["code"] in GATE_CODES[key]]
        if mine:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(_x(f"waived {f['code']} at {f.get('node', '-')}: {f.get('reason', '')}") for f in mine)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{elapsed:.3f}")
    return tests, failures, errors, skipped


def render_junit(reports: list[dict[str, Any]]) -> str:
    root = ET.Element("testsuites", name="lipaudit")
    totals = [0, 0, 0]
    for report in reports:
        t, f, e, _ = _suite(root, report)
        totals = [totals[0] + t, totals[1] + f, totals[2] + e]
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", str(totals[2]))
    root.set("time", f"{sum(float(r.get('elapsed_s') or 0.0) for r in reports):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
