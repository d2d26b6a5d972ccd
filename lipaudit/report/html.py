"""A single self-contained HTML page: summary, per-layer table and the figure (inline PNG, no fetches)."""

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
"""


def render_html(report: dict[str, Any]) -> str:
    def e(value) -> str:
        return html.escape(clean_text(value))

    cols = value_columns(report)
    compare_exact = "exact" in cols
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>lipaudit — {e(report['model']['path'])}</title><style>{CSS}</style></head><body>",
        f"<h1>lipaudit report</h1><p>model <code>{e(report['model']['path'])}</code> "
        f"(sha256 <code>{e(str(report['model'].get('sha256')))}</code>), lipaudit {e(report['tool']['version'])}</p>",
        f"<h2 class='{e(report['verdict'])}'>verdict: {e(report['verdict'].upper())}</h2><ul>",
    ]
    unavailable = report.get("network", {}).get("unavailable")
    if unavailable:
        parts.append(f"<li>network: {e(unavailable['message'])}</li>")
    for comp, nv in report.get("network", {}).items():
        if comp == "unavailable":
            continue
        ratio = f", {nv['ratio_to_exact']:.3f}x the exact composition" if "ratio_to_exact" in nv else ""
        if nv.get("valid_on") is not None:
            from lipaudit.report.table import _domain_text

            ratio += f", on the input domain {e(_domain_text(nv['valid_on']))} only"
        parts.append(f"<li>network {e(comp)}: <b>{e(fmt(nv['value']))}</b> "
                     f"<span class='{e(nv['kind'])}'>({e(nv['kind'])})</span>{ratio}</li>")
    for f in report["findings"]:
        parts.append(f"<li class='{'fail' if f['severity'] == 'error' else ''}'>{e(f['code'])} {e(f['name'])}: {e(f['message'])}</li>")
    parts.append("</ul>")
    figure = _figure(report)
    if figure:
        parts.append(f"<img alt='per-layer values' style='max-width:100%' src='data:image/png;base64,{figure}'>")
    header = ["#", "layer", "op", "kernel", "stride", "BN folded"] + cols
    if compare_exact:
        header += [f"{c}/exact" for c in cols if c not in ("exact", "certified")]
    header += ["share", "time (s)"]
    parts.append("<h2>layers</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for i, layer in enumerate(report["layers"], 1):
        values = layer["values"]
        cells = [str(i), f"<td class='l'>{e(layer['name'])}</td>", e(layer["op"]),
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
                 "(bracketed), est = estimate from below, lo = lower bound</p></body></html>\n")
    return "".join(parts)


def _figure(report) -> str | None:
    if not report["layers"]:
        return None
    try:
        from lipaudit.report.plot import png_bytes

        return base64.b64encode(png_bytes(report)).decode("ascii")
    except Exception:  # matplotlib missing: the page still has the table
        return None
