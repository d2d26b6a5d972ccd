"""Attribute access to a JSON report: what :func:`lipaudit.audit` and :func:`lipaudit.certify` return.

A :class:`Report` wraps the report dict the CLI writes (``to_dict()`` gives it
back as plain JSON types, valid against ``lipaudit/schema/report.schema.json``)
and exposes its parts as typed, read-only objects. Keys a view does not name
(added by a newer lipaudit) stay reachable as attributes through ``raw``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from lipaudit.values import Kind


def _num(x: Any) -> float:
    """A JSON number, or the strings ``"inf"``/``"-inf"``/``"nan"`` the report writes for non-finite values."""
    return float(x) if x is not None else math.nan


class _Raw:
    """Fallback attribute access to keys of the underlying JSON object."""

    raw: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "raw":
            raise AttributeError(name)
        try:
            return self.raw[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}") from None


@dataclass(frozen=True)
class Value(_Raw):
    """One number with its kind. ``float(v)`` is its value."""

    value: float
    kind: Kind
    method: str | None = None
    time_s: float = 0.0
    iterations: int | None = None
    valid_for: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Value":
        return cls(value=_num(d.get("value")), kind=Kind(d["kind"]), method=d.get("method"),
                   time_s=float(d.get("time_s", 0.0)), iterations=d.get("iterations"),
                   valid_for=d.get("valid_for"), detail=d.get("detail", {}), raw=d)

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class NetworkValue(_Raw):
    """A network constant of one composition (``tn``, ``certified``, ``exact``, ...)."""

    value: float
    kind: Kind
    per_output: Mapping[str, float] = field(default_factory=dict)
    estimate_layers: tuple[str, ...] = ()
    ratio_to_exact: float | None = None
    valid_on: Any = None  # the --input-range domain it holds on ([lo, hi] or per channel), None: every input
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "NetworkValue":
        return cls(value=_num(d.get("value")), kind=Kind(d["kind"]),
                   per_output={k: _num(v) for k, v in d.get("per_output", {}).items()},
                   estimate_layers=tuple(d.get("estimate_layers", ())), ratio_to_exact=d.get("ratio_to_exact"),
                   valid_on=d.get("valid_on"), raw=d)

    def __float__(self) -> float:
        return self.value


class Network(Mapping[str, NetworkValue]):
    """The network constants by composition: ``network.certified``, ``network["tn"]``, ``"exact" in network``.

    ``unavailable`` is the reason when no certificate exists (else None).
    """

    def __init__(self, d: Mapping[str, Any]):
        self.raw = d
        self._values = {k: NetworkValue.from_json(v) for k, v in d.items() if k != "unavailable"}
        self.unavailable: str | None = d["unavailable"]["message"] if "unavailable" in d else None

    def __getitem__(self, key: str) -> NetworkValue:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> NetworkValue:
        if name.startswith("_") or name == "raw":
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            why = f"; {self.unavailable}" if self.unavailable else ""
            raise AttributeError(f"no network value {name!r} in this report (present: {', '.join(self._values) or 'none'}){why}") from None

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v.value:.6g} ({v.kind.value})" for k, v in self._values.items())
        return f"Network({inner or 'unavailable'})"


@dataclass(frozen=True)
class Layer(_Raw):
    """One measured layer: ``name`` (ONNX node), ``op``, ``module`` (the module path where known) and ``values``."""

    name: str
    op: str
    values: Mapping[str, Value]
    module: str | None = None
    kernel_shape: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    groups: int | None = None
    input_shape: tuple[int, ...] | None = None
    weight_shape: tuple[int, ...] | None = None
    folded: tuple[str, ...] = ()
    share: float = 0.0
    note: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Layer":
        def tup(key):
            v = d.get(key)
            return tuple(v) if v is not None else None

        return cls(name=d["name"], op=d["op"], values={m: Value.from_json(v) for m, v in d["values"].items()},
                   module=d.get("module"), kernel_shape=tup("kernel_shape"), strides=tup("strides"),
                   groups=d.get("groups"), input_shape=tup("input_shape"), weight_shape=tup("weight_shape"),
                   folded=tuple(d.get("folded", ())), share=float(d.get("share", 0.0)), note=d.get("note"), raw=d)


@dataclass(frozen=True)
class Finding(_Raw):
    """A finding: a stable ``code`` (``lipaudit explain CODE``), its ``name``, ``severity`` and ``message``."""

    code: str
    name: str
    severity: str
    message: str
    node: str | None = None
    value: float | None = None
    threshold: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Finding":
        return cls(code=d["code"], name=d["name"], severity=d["severity"], message=d["message"], node=d.get("node"),
                   value=d.get("value"), threshold=d.get("threshold"), raw=d)


@dataclass(frozen=True)
class Robustness(_Raw):
    """Certified robustness from data (``lipaudit certify``).

    ``lipschitz`` is the constant ``L`` used for every radius; ``certified_accuracy`` maps each eps (as
    written in JSON, e.g. ``"0.1"``) to the fraction of samples that are correct with radius > eps. The
    per-sample arrays are present on the object :func:`lipaudit.certify` returns, not in JSON.
    """

    lipschitz: Mapping[str, Any]
    clean_accuracy: float
    certified_accuracy: Mapping[str, float]
    radius_quantiles: Mapping[str, float]
    n: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    margins: Any = field(default=None, repr=False)  # numpy arrays, one entry per sample
    radii: Any = field(default=None, repr=False)
    certified_radii: Any = field(default=None, repr=False)  # radii, 0 where the prediction is wrong
    predictions: Any = field(default=None, repr=False)
    labels: Any = field(default=None, repr=False)
    correct: Any = field(default=None, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], samples: Mapping[str, Any] | None = None) -> "Robustness":
        s = samples or {}
        return cls(lipschitz=d["lipschitz"], clean_accuracy=float(d["clean_accuracy"]),
                   certified_accuracy={k: float(v) for k, v in d["certified_accuracy"].items()},
                   radius_quantiles={k: _num(v) for k, v in d["radius_quantiles"].items()}, n=int(d["n"]), raw=d,
                   margins=s.get("margins"), radii=s.get("radii"), certified_radii=s.get("certified_radii"),
                   predictions=s.get("predictions"), labels=s.get("labels"), correct=s.get("correct"))

    def at(self, eps: float) -> float:
        """Certified accuracy at ``eps`` (one of the eps values certified)."""
        for key, acc in self.certified_accuracy.items():
            if math.isclose(float(key), float(eps), rel_tol=1e-12, abs_tol=0.0):
                return acc
        raise KeyError(f"eps {eps} was not certified (certified: {', '.join(self.certified_accuracy)})")


class Report:
    """The result of an audit.

    Attributes:
        verdict: ``pass``, ``fail`` (a gate failed) or ``error``.
        network: :class:`Network`, e.g. ``report.network.certified.value``.
        layers: list of :class:`Layer`.
        findings: list of :class:`Finding`.
        factors: non-layer factors (activations, pooling, ...), as JSON dicts.
        model, settings, timings: the JSON sections, as dicts.
        robustness: :class:`Robustness` for reports from :func:`lipaudit.certify`, else None.
    """

    def __init__(self, data: dict[str, Any], samples: Mapping[str, Any] | None = None):
        from lipaudit.report.json_report import dumps

        self._json = dumps(data)
        self._data = json.loads(self._json)
        d = self._data
        self.verdict: str = d["verdict"]
        self.network = Network(d.get("network", {}))
        self.layers: list[Layer] = [Layer.from_json(x) for x in d.get("layers", [])]
        self.findings: list[Finding] = [Finding.from_json(x) for x in d.get("findings", [])]
        self.factors: list[dict[str, Any]] = d.get("factors", [])
        self.model: dict[str, Any] = d.get("model", {})
        self.settings: dict[str, Any] = d.get("settings", {})
        self.timings: dict[str, float] = d.get("timings", {})
        self.elapsed_s: float = d.get("elapsed_s", 0.0)
        self.robustness: Robustness | None = (Robustness.from_json(d["robustness"], samples)
                                              if "robustness" in d else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report as plain Python types (a fresh copy), exactly what ``--json`` writes."""
        return json.loads(self._json)

    def to_json(self) -> str:
        """The JSON report as text (keys sorted, non-finite numbers as strings), exactly what ``--json`` writes."""
        return self._json

    def _repr_html_(self) -> str:
        from lipaudit.report.html import render_html

        page = notebook_fragment(render_html(self._data))
        if self.robustness is None:
            return page
        return page.replace("<div class='lipaudit-report'>", "<div class='lipaudit-report'>" + _robustness_html(self.robustness), 1)

    def __repr__(self) -> str:
        net = ", ".join(f"{k}={v.value:.6g} ({v.kind.value}{', on ' + str(v.valid_on) + ' only' if v.valid_on else ''})"
                        for k, v in self.network.items()) or "no network value"
        return f"<lipaudit.Report {self.model.get('path')}: {len(self.layers)} layers, {net}, verdict {self.verdict}>"


def _robustness_html(rob: Robustness) -> str:
    import html

    lip = rob.lipschitz
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
                   for k, v in sorted(rob.certified_accuracy.items(), key=lambda kv: float(kv[0])))
    domain = f", valid on {html.escape(str(lip['valid_on']))} only" if "valid_on" in lip else ""
    return (f"<h2>certified robustness</h2><p>L = {float(lip['value']):.6g} ({html.escape(str(lip['kind']))}, "
            f"{html.escape(str(lip['composition']))}{domain}); clean accuracy {rob.clean_accuracy:.4f} on n = {rob.n}; "
            "radius = margin / (sqrt(2) L)</p><table><tr><th>eps (l2)</th><th>certified accuracy</th></tr>"
            f"{rows}</table>")


def notebook_fragment(page: str) -> str:
    """The body of a report page in a ``<div>``, its CSS scoped to that div so it cannot restyle a notebook."""
    import re

    css = re.search(r"<style>(.*?)</style>", page, re.S)
    body = re.search(r"<body>(.*)</body>", page, re.S)
    scoped = ""
    if css:
        rules = [r.strip() for r in css.group(1).split("}") if r.strip()]
        for rule in rules:
            selectors, _, decl = rule.partition("{")
            sel = ",".join(".lipaudit-report" if s.strip() == "body" else f".lipaudit-report {s.strip()}"
                           for s in selectors.split(","))
            scoped += f"{sel}{{{decl}}}\n"
    return f"<div class='lipaudit-report'><style>{scoped}</style>{body.group(1) if body else page}</div>"
