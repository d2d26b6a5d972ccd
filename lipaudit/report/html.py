"""A single self-contained HTML page: summary, per-layer table and the figure (inline PNG, no fetches).

Several models make one page: a summary table (one row per model, linked to its section), then a
section per model. Without matplotlib the page says that the figure was left out.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from lipaudit.safe_io import clean_text
from lipaudit.report.table import KIND_TAG, fmt, value_columns

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l{text-align:left}.upper{color:#1a7f37}.exact{color:#0969da}.estimate{color:#9a6700}
.lower{color:#8250df}.pass{color:#1a7f37}.fail,.error{color:#cf222e}.k{font-size:11px;margin-left:3px}
.note{background:#fff8c5;padding:4px 8px;display:inline-block}
"""


def e(value) -> str:
    return html.escape(clean_text(value))


def render_html(report: dict[str, Any]) -> str:
    """One model's page."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lipaudit — {e(report['model']['path'])}"
            f"</title><style>{CSS}</style></head><body><h1>lipaudit report</h1>"
            + _section(report, level=2) + "</body></html>\n")


def render_html_multi(reports: list[dict[str, Any]]) -> str:
    """Several models on one page: a summary table, then one section per model."""
    if len(reports) == 1:
        return render_html(reports[0])
    rows = []
    for i, r in enumerate(reports):
        cert = (r.get("network") or {}).get("certified")
        method = r["settings"].get("method", "tn")
        main = (r.get("network") or {}).get(method) if method != "certified" else None
        cell = lambda nv: "-" if not nv else f"{e(fmt(nv['value']))}<span class='k {e(nv['kind'])}'>{KIND_TAG[nv['kind']]}</span>"
        errors = [f for f in r["findings"] if f["severity"] == "error" and not f.get("waived")]
        rows.append(f"<tr><td class='l'><a href='#model-{i}'>{e(r['model']['path'])}</a></td>"
                    f"<td>{len(r.get('layers', []))}</td><td>{e(method)}</td><td>{cell(main)}</td><td>{cell(cert)}</td>"
                    f"<td class='{e(r['verdict'])}'>{e(r['verdict'].upper())}</td>"
                    f"<td class='l'>{e(', '.join(sorted({f['code'] for f in errors})) or '-')}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("model", "layers", "method", "network", "certified", "verdict", "errors"))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lipaudit — {len(reports)} models</title>"
            f"<style>{CSS}</style></head><body><h1>lipaudit report: {len(reports)} models</h1>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            + "".join(f"<section id='model-{i}'><hr>" + _section(r, level=2) + "</section>" for i, r in enumerate(reports))
            + "</body></html>\n")


def _section(report: dict[str, Any], level: int = 2) -> str:
    cols = value_columns(report)
    compare_exact = "exact" in cols
    parts = [
        f"<h{level}>{e(report['model']['path'])}</h{level}><p>model <code>{e(report['model']['path'])}</code> "
        f"(sha256 <code>{e(str(report['model'].get('sha256')))}</code>), lipaudit {e(report['tool']['version'])}</p>",
        f"<h{level + 1} class='{e(report['verdict'])}'>verdict: {e(report['verdict'].upper())}</h{level + 1}><ul>",
    ]
    unavailable = report.get("network", {}).get("unavailable")
    if unavailable:
        parts.append(f"<li>network: {e(unavailable['message'])}</li>")
    for comp, nv in report.get("network", {}).items():
        if comp == "unavailable":
            continue
        ratio = f", {nv['ratio_to_exact']:.3f}x the exact composition" if "ratio_to_exact" in nv else ""
        if "product" in nv:
            ratio += f", product rule {fmt(nv['product'])}"
        if "gap" in nv:
            ratio += (f", gap certified/attained {float(nv['gap']):.3g}x"
                      + (" (the certificate is nearly tight)" if float(nv["gap"]) <= 2.0 else ""))
        if nv.get("valid_on") is not None:
            from lipaudit.report.table import _domain_text

            ratio += f", on the input domain {e(_domain_text(nv['valid_on']))} only"
        parts.append(f"<li>network {e(comp)}: <b>{e(fmt(nv['value']))}</b> "
                     f"<span class='{e(nv['kind'])}'>({e(nv['kind'])})</span>{ratio}</li>")
    for f in report["findings"]:
        waived = f" — waived: {e(f.get('reason', ''))}" if f.get("waived") else ""
        cls = "fail" if f["severity"] == "error" and not f.get("waived") else ""
        parts.append(f"<li class='{cls}'>{e(f['code'])} {e(f['name'])}: {e(f['message'])}{waived}</li>")
    parts.append("</ul>")
    figure, why = _figure(report)
    if figure:
        parts.append(f"<img alt='per-layer values' style='max-width:100%' src='data:image/png;base64,{figure}'>")
    elif why:
        parts.append(f"<p class='note'>The figure was left out: {e(why)}</p>")
    modules = any(layer.get("module") for layer in report["layers"])
    header = ["#", "layer"] + (["module"] if modules else []) + ["op", "kernel", "stride", "BN folded"] + cols
    if compare_exact:
        header += [f"{c}/exact" for c in cols if c not in ("exact", "certified")]
    header += ["share", "time (s)"]
    parts.append(f"<h{level + 1}>layers</h{level + 1}><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for i, layer in enumerate(report["layers"], 1):
        values = layer["values"]
        cells = [str(i), f"<td class='l'>{e(layer['name'])}</td>"]
        if modules:
            cells.append(f"<td class='l'>{e(layer.get('module') or '-')}</td>")
        cells += [e(layer["op"]),
                 e("x".join(map(str, layer.get("kernel_shape") or layer.get("weight_shape") or []))),
                 e("x".join(map(str, layer.get("strides") or []))), e(", ".join(layer["folded"]))]
        for c in cols:
            v = values.get(c)
            cells.append("-" if v is None else f"{e(fmt(v['value']))}<span class='k {e(v['kind'])}'>{KIND_TAG[v['kind']]}</span>")
        if compare_exact:
            for c in cols:
                if c not in ("exact", "certified"):
                    r = layer.get("ratios", {}).get(f"{c}/exact")
                    cells.append(f"{r:.3f}" if r is not None else "-")
        cells.append(f"{layer['share'] * 100:.1f}%")
        cells.append(f"{sum(v.get('time_s', 0) for v in values.values()):.3f}")
        parts.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table><p style='font-size:12px;color:#666'>kinds: up = guaranteed upper bound, ex = exact "
                 "(bracketed), est = estimate from below, lo = lower bound</p>")
    return "".join(parts)


def _figure(report) -> tuple[str | None, str | None]:
    """The figure as base64 PNG, or why it is missing (the page still has the table)."""
    if not report["layers"]:
        return None, None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None, "matplotlib is not installed (pip install 'lipaudit[plot]')"
    try:
        from lipaudit.report.plot import png_bytes

        return base64.b64encode(png_bytes(report)).decode("ascii"), None
    except Exception as exc:  # a report the plot cannot draw: say so, keep the page
        from lipaudit.errors import first_line

        return None, f"it could not be drawn ({first_line(exc)})"
