"""SARIF 2.1.0 output for code-scanning tools (GitHub code scanning, Azure DevOps, IDE viewers).

One run per invocation; one rule per finding code (name, short and full description as
``lipaudit explain`` prints them, help link to the code's section of docs/findings.md); one result
per finding, located at the model file (physical location) and, for a per-layer finding, the graph
node (logical location). Waived findings carry a SARIF suppression with the waiver's reason, so
viewers show them as suppressed rather than dropping them.
"""

from __future__ import annotations

import json
import os
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from lipaudit import __version__
from lipaudit.findings import CODES, DOCS_URL

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"error": "error", "warning": "warning", "info": "note"}
EXIT = {"pass": 0, "fail": 1, "error": 2}


def _rules() -> list[dict[str, Any]]:
    return [
        {
            "id": c.code,
            "name": c.name,
            "shortDescription": {"text": c.summary},
            "fullDescription": {"text": c.explanation},
            "help": {"text": f"{c.summary}\n\n{c.explanation}"},
            "helpUri": c.help_uri,
            "defaultConfiguration": {"level": LEVEL[c.severity]},
            "properties": {"tags": ["lipschitz", "robustness"]},
        }
        for c in CODES.values()
    ]


def artifact_uri(path: str) -> tuple[str, bool]:
    """A URI reference for a model path: relative to the working directory when inside it (``%SRCROOT%``)."""
    absolute = os.path.abspath(path)
    try:
        rel = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        rel = None
    if rel is not None and not rel.startswith(".."):
        return quote(PurePath(rel).as_posix()), True
    return PurePath(absolute).as_uri(), False


def _result(finding: dict[str, Any], report: dict[str, Any], rule_index: dict[str, int]) -> dict[str, Any]:
    uri, relative = artifact_uri(report["model"]["path"])
    artifact: dict[str, Any] = {"uri": uri}
    if relative:
        artifact["uriBaseId"] = "%SRCROOT%"
    # GitHub code scanning places a result only with a region (rule GH1003 of the SARIF multitool); a
    # model file has no lines, so the result sits at the start of the file
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": artifact, "region": {"startLine": 1}}}
    if finding.get("node"):
        location["logicalLocations"] = [{"name": finding["node"], "fullyQualifiedName": finding["node"], "kind": "member"}]
    result: dict[str, Any] = {
        "ruleId": finding["code"],
        "ruleIndex": rule_index[finding["code"]],
        "level": LEVEL[finding["severity"]],
        "message": {"text": f"{finding['name']}: {finding['message']}"},
        "locations": [location],
        "partialFingerprints": {"lipaudit/v1": f"{finding['code']}:{report['model']['path']}:{finding.get('node', '')}"},
    }
    props = {k: finding[k] for k in ("value", "threshold") if k in finding}
    if report["model"].get("sha256"):
        props["model_sha256"] = report["model"]["sha256"]
    if props:
        result["properties"] = props
    if finding.get("waived"):
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": finding.get("reason", "")}]
    return result


def sarif_log(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The SARIF log (a dict) for one invocation over one or more reports."""
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = [_result(f, r, index) for r in reports for f in r["findings"]]
    exit_code = max(EXIT[r["verdict"]] for r in reports) if reports else 0
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "lipaudit", "version": __version__, "semanticVersion": __version__,
                                "informationUri": DOCS_URL, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": PurePath(os.path.abspath(os.getcwd())).as_uri() + "/"}},
            "artifacts": [{"location": _artifact_location(r), **({"hashes": {"sha-256": r["model"]["sha256"]}}
                                                                 if r["model"].get("sha256") else {})} for r in reports],
            "invocations": [{"executionSuccessful": all(r["verdict"] != "error" for r in reports), "exitCode": exit_code}],
            "results": results,
            "properties": {"verdicts": {r["model"]["path"]: r["verdict"] for r in reports}},
        }],
    }


def _artifact_location(report: dict[str, Any]) -> dict[str, Any]:
    uri, relative = artifact_uri(report["model"]["path"])
    return {"uri": uri, "uriBaseId": "%SRCROOT%"} if relative else {"uri": uri}


def render_sarif(reports: list[dict[str, Any]]) -> str:
    from lipaudit.report.json_report import _clean

    return json.dumps(_clean(sarif_log(reports)), indent=2, sort_keys=False, allow_nan=False) + "\n"
