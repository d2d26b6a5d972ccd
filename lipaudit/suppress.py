"""Which findings count: ``--select``/``--ignore`` by code, and per-layer waivers with a reason.

Pure: findings in, findings out, no I/O.

- ``select`` keeps only the listed codes, ``ignore`` drops the listed codes (ignore wins), as in ruff.
  Dropped findings leave the report; the report's ``suppressed`` counts say how many per code.
- A waiver names a layer, a code and a mandatory reason. A waived finding stays in the report with
  ``waived: true`` and the reason, and never counts for the verdict.
- Run errors (LIP1xx: unreadable model, no certificate for a gate, usage, internal error) say the
  run could not decide. They cannot be selected away, ignored or waived: a run that failed never
  looks like a pass.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from lipaudit.errors import UsageError
from lipaudit.findings import CODES, Finding


def is_run_error(code: str) -> bool:
    return code.startswith("LIP1")


@dataclass(frozen=True)
class Waiver:
    layer: str  # a layer name, a glob over layer names, or a module path (``stem.0``)
    code: str
    reason: str

    def matches(self, finding: Finding) -> bool:
        if finding.code != self.code or finding.node is None:
            return False
        return layer_matches(self.layer, finding.node)


@dataclass(frozen=True)
class Suppressions:
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    waivers: tuple[Waiver, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"select": list(self.select), "ignore": list(self.ignore),
                "waivers": [{"layer": w.layer, "code": w.code, "reason": w.reason} for w in self.waivers]}


def module_path(node: str) -> str:
    """The PyTorch module path inside a layer name.

    ONNX exports name nodes ``/stem/stem.0/Conv`` (module ``stem.0``); state dicts name weights
    ``stem.0.weight`` (module ``stem.0``).
    """
    if node.startswith("/"):
        parts = [p for p in node.split("/") if p]
        return parts[-2] if len(parts) >= 2 else (parts[0] if parts else node)
    for suffix in (".weight", ".weight_orig", ".bias"):
        if node.endswith(suffix):
            return node[: -len(suffix)]
    return node


def layer_matches(pattern: str, node: str) -> bool:
    return node == pattern or module_path(node) == pattern or fnmatch.fnmatchcase(node, pattern)


def parse_codes(items: Iterable[str] | None, option: str) -> tuple[str, ...]:
    """``LIP001,LIP004`` or repeated values, upper-cased; finding names are accepted too."""
    out: list[str] = []
    by_name = {c.name: c.code for c in CODES.values()}
    for item in items or ():
        for part in str(item).split(","):
            token = part.strip()
            if not token:
                continue
            code = token.upper() if token.upper() in CODES else by_name.get(token.lower())
            if code is None:
                raise UsageError(f"{option} {token!r}: unknown finding code; see lipaudit codes")
            if is_run_error(code):
                raise UsageError(f"{option} {code}: run errors (LIP1xx) cannot be suppressed; they mean the run could not decide")
            out.append(code)
    return tuple(dict.fromkeys(out))


def parse_waivers(items: Any, source: str = "[[tool.lipaudit.waive]]") -> tuple[Waiver, ...]:
    """Validate waiver tables: ``layer``, ``code`` and a non-empty ``reason``, nothing else."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise UsageError(f"{source}: expected an array of tables ([[tool.lipaudit.waive]]), got {type(items).__name__}")
    waivers = []
    for i, item in enumerate(items, 1):
        where = f"{source} #{i}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected a table with layer, code and reason")
        unknown = sorted(set(item) - {"layer", "code", "reason"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; expected layer, code, reason")
        for key in ("layer", "code", "reason"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise UsageError(f"{where}: {key} must be a non-empty string"
                                 + (" (a waiver needs a reason)" if key == "reason" else ""))
        (code,) = parse_codes([item["code"]], f"{where} code")
        waivers.append(Waiver(layer=item["layer"].strip(), code=code, reason=item["reason"].strip()))
    return tuple(waivers)


def apply(findings: list[Finding], rules: Suppressions) -> tuple[list[Finding], dict[str, int]]:
    """The findings that stay (waived ones marked), and how many were dropped per code."""
    kept: list[Finding] = []
    dropped: Counter[str] = Counter()
    findings = findings + unused_waivers(findings, rules)
    for f in findings:
        if not is_run_error(f.code):
            if (rules.select and f.code not in rules.select) or f.code in rules.ignore:
                dropped[f.code] += 1
                continue
            waiver = next((w for w in rules.waivers if w.matches(f)), None)
            if waiver is not None:
                f.waived, f.reason = True, waiver.reason
        kept.append(f)
    return kept, dict(sorted(dropped.items()))


def unused_waivers(findings: list[Finding], rules: Suppressions) -> list[Finding]:
    """An info finding (LIP032) per waiver that matched nothing: a renamed layer or a fixed problem."""
    out = []
    for w in rules.waivers:
        if not any(w.matches(f) for f in findings):
            out.append(Finding("LIP032", f"waiver for {w.code} at layer {w.layer!r} matched no finding "
                                         f"(reason given: {w.reason}); remove it or fix the layer name"))
    return out


def counting(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that count for the verdict."""
    return [f for f in findings if not getattr(f, "waived", False)]
