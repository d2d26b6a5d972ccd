"""Human output: the per-layer table and the summary panel, rendered to a string with rich."""

from __future__ import annotations

import io
from typing import Any

KIND_TAG = {"upper": "up", "estimate": "est", "exact": "ex", "lower": "lo"}
KIND_STYLE = {"upper": "green", "exact": "cyan", "estimate": "yellow", "lower": "magenta"}
VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold red"}
LEGEND = "kinds: up = guaranteed upper bound, ex = exact (bracketed), est = estimate from below, lo = lower bound"


def fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.4e}"
    return f"{value:.4f}"


def _txt(value, style: str = ""):
    """Text from a file (names, paths, messages): printed as is, never as markup or terminal codes."""
    from rich.text import Text

    from lipaudit.safe_io import clean_text

    return Text(clean_text(value), style=style)


def _cell(v: dict | None):
    from rich.text import Text

    if v is None:
        return Text("-", style="dim")
    text = Text(fmt(v["value"]))
    text.append(" " + KIND_TAG[v["kind"]], style=KIND_STYLE[v["kind"]])
    return text


def _folded(names: list[str]) -> str:
    """The table says whether BN was folded; the JSON report names the nodes."""
    return "" if not names else ("yes" if len(names) == 1 else f"yes ({len(names)})")


def _shape(xs) -> str:
    return "x".join(str(x) for x in xs) if xs else "-"


def value_columns(report: dict[str, Any]) -> list[str]:
    """Methods shown as columns: the selected one, certified, then compared methods."""
    method = report["settings"]["method"]
    cols = [] if method == "certified" else [method]
    cols.append("certified")
    for m in report["settings"].get("compare", []):
        if m not in cols:
            cols.append(m)
    return cols


def _value_text(v: dict | None) -> str:
    return "-" if v is None else f"{fmt(v['value'])} {KIND_TAG[v['kind']]}"


def _layer_columns(report: dict[str, Any]):
    """Every column of the per-layer table as plain cells (lipaudit.report.layout decides what fits)."""
    from lipaudit.report.layout import Column

    cols = value_columns(report)
    layers = report["layers"]

    def col(key, cells, **kw):
        return Column(key, [str(c) for c in cells], **kw)

    out = [
        col("#", [i for i, _ in enumerate(layers, 1)], justify="right"),
        col("layer", [l["name"] for l in layers]),
    ]
    if any(l.get("module") for l in layers):  # source module paths, from the dynamo exporter's metadata
        out.append(col("module", [l.get("module") or "-" for l in layers]))
    out += [
        col("op", [l["op"] for l in layers]),
        col("kernel", [_shape(l.get("kernel_shape") or l.get("weight_shape")) for l in layers]),
        col("stride", [_shape(l.get("strides")) for l in layers]),
        col("input", [_shape((l.get("input_shape") or [])[2:]) if l.get("kernel_shape") else _shape(l.get("input_shape"))
                      for l in layers]),
        col("BN folded", [_folded(l["folded"]) for l in layers]),
    ]
    main = {report["settings"]["method"], "certified", "exact"}
    out += [col(c, [_value_text(l["values"].get(c)) for l in layers], justify="right", number=True,
                compared=c not in main) for c in cols]
    if "exact" in cols:
        for c in cols:
            if c not in ("exact", "certified"):
                cells = [l.get("ratios", {}).get(f"{c}/exact") for l in layers]
                out.append(col(f"{c}/exact", [f"{r:.3f}" if r is not None else "-" for r in cells], justify="right",
                               number=True, ratio=True))
    out.append(col("share", [f"{l['share'] * 100:.1f}%" for l in layers], justify="right", number=True))
    out.append(col("time", [f"{sum(v.get('time_s', 0) for v in l['values'].values()):.3f}s" for l in layers],
                   justify="right", number=True))
    return out


def render_table(report: dict[str, Any], width: int = 160, color: bool = False, wide: bool = False,
                 verbose: bool = False) -> str:
    """The per-layer table plus a summary panel, as text (ANSI codes only when ``color``).

    The table fits ``width`` (see :mod:`lipaudit.report.layout`): low-priority columns are dropped
    and names wrap to two lines before any number would be cut; ``wide`` shows everything.
    ``verbose`` adds per-layer details (iterations, convergence, methods tried).
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lipaudit.report.layout import plan as fit
    from lipaudit.safe_io import clean_text

    columns = _layer_columns(report)
    layout = fit(columns, [clean_text(l["name"]) for l in report["layers"]], width, wide=wide)
    table = Table(title=_txt(f"lipaudit — {report['model']['path']}"), title_justify="left", header_style="bold",
                  expand=False)
    for c in layout.columns:
        if c.key == "layer":
            table.add_column("layer", overflow="fold", width=layout.name_width)
        else:
            header = layout.header(c.key)
            table.add_column(header, justify=c.justify, no_wrap=True, min_width=c.width(header),
                             style="dim" if c.key == "#" else None)
    layers = report["layers"]
    value_keys = set(value_columns(report))
    for i, layer in enumerate(layers):
        row = []
        for c in layout.columns:
            if c.key == "layer":
                row.append(_txt(layout.names[i]))
            elif c.key in value_keys:
                row.append(_cell(layer["values"].get(c.key)))
            elif c.key in ("op", "module"):
                row.append(_txt(c.cells[i]))
            else:
                row.append(c.cells[i])
        table.add_row(*row)
    buf = io.StringIO()
    # never narrower than the table: a column that cannot fit is dropped by the plan, never cut by rich
    console = Console(file=buf, width=max(width, layout.width), force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, highlight=False)
    console.print(table)
    legend = LEGEND
    if layout.dropped:
        legend += f"; not shown at this width: {', '.join(layout.dropped)} (--wide shows all)"
    console.print(Text(legend, style="dim"))
    if verbose:
        console.print(render_details(report))
    summary_console = Console(file=buf, width=width, force_terminal=color, no_color=not color,
                              color_system="standard" if color else None, highlight=False)
    summary_console.print(render_summary(report))
    return buf.getvalue()


def render_details(report: dict[str, Any]):
    """-v: per layer, every method tried with its kind, iterations, convergence and time."""
    from rich.text import Text

    out = Text()
    out.append("per-layer details\n", style="bold")
    for i, layer in enumerate(report["layers"], 1):
        out.append(f"{i:>3} ")
        out.append(_txt(layer["name"]))
        out.append("\n")
        for method, v in sorted(layer["values"].items()):
            detail = v.get("detail") or {}
            parts = [f"{fmt(v['value'])} {v['kind']}"]
            if "iterations" in v:
                parts.append(f"{v['iterations']} iterations")
            if "converged" in detail:
                parts.append("converged" if detail["converged"] else "NOT converged")
            if "from" in detail:
                parts.append(f"from {detail['from']}")
            if v.get("valid_for"):
                parts.append(f"valid for {v['valid_for']}")
            parts.append(f"{float(v.get('time_s', 0)):.3f}s")
            out.append(f"      {method:<10} " + ", ".join(map(str, parts)) + "\n",
                       style="" if detail.get("converged", True) else "yellow")
    return out


def render_summary(report: dict[str, Any]):
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    unavailable = report["network"].get("unavailable")
    if unavailable:
        grid.add_row("network", _txt(unavailable["message"], style="yellow"))
    for comp, nv in report["network"].items():
        if comp == "unavailable":
            continue
        label = "network certified" if comp == "certified" else f"network {comp}"
        text = Text(fmt(nv["value"]))
        text.append(f"  ({nv['kind']})", style=KIND_STYLE[nv["kind"]])
        if nv.get("valid_on") is not None:
            text.append(f"  on the input domain {_domain_text(nv['valid_on'])} only", style="bold yellow")
        if "ratio_to_exact" in nv:
            text.append(f"  {nv['ratio_to_exact']:.3f}x exact composition", style="dim")
        if "product" in nv:
            exp = nv.get("expansion", {})
            how = "expansion" if float(nv["value"]) < float(nv["product"]) else "product"
            text.append(f"  {how}; product {fmt(nv['product'])}", style="dim")
            if exp.get("stopped_sweeps") or exp.get("budget_exhausted"):
                text.append(f", {exp.get('stopped_sweeps', 0)} segment sweep(s) fell back to the product", style="dim")
        if "gap" in nv:
            gap = float(nv["gap"])
            text.append(f"  gap certified/attained {gap:.3g}x", style="dim")
            if gap <= 2.0:
                text.append(" — the certificate is nearly tight", style="green")
        grid.add_row(label, text)
    grid.add_row("outputs", _txt(", ".join(map(str, report["model"].get("outputs", []))) or "-"))
    baseline = report.get("baseline")
    if baseline:
        inc = baseline.get("increase")
        grid.add_row("baseline", _txt(
            f"{baseline['path']}: certified {fmt(baseline['certified'])}"
            + (f" -> {inc * 100:+.2f}%" if inc is not None else "")
            + f"; model sha256 {str(baseline.get('model_sha256') or '-')[:12]}… -> "
            + f"{str(report['model'].get('sha256') or '-')[:12]}…"))
    for code, severity, text in grouped_findings(report["findings"]):
        style = {"error": "red", "warning": "yellow", "info": "dim", "waived": "dim"}[severity]
        grid.add_row(_txt(code, style=style), _txt(text, style=style))
    if report.get("suppressed"):
        grid.add_row("suppressed", _txt(", ".join(f"{c} x{n}" for c, n in report["suppressed"].items())
                                        + " (--select/--ignore)", style="dim"))
    verdict = report["verdict"]
    grid.add_row("verdict", Text(verdict.upper(), style=VERDICT_STYLE[verdict]))
    grid.add_row("time", f"{report['elapsed_s']:.2f}s")
    return Panel(grid, title="summary", title_align="left", expand=False)


def grouped_findings(findings: list[dict[str, Any]], show: int = 3) -> list[tuple[str, str, str]]:
    """(code, severity, text) rows: a code repeated over layers is one row with a count and the first
    few layers (the JSON keeps every finding); waived findings are listed apart, with their reasons."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for f in findings:
        groups.setdefault((f["code"], bool(f.get("waived"))), []).append(f)
    rows = []
    for (code, waived), items in groups.items():
        first = items[0]
        severity = "waived" if waived else first["severity"]
        prefix = f"{first['name']}" + (" (waived)" if waived else "")
        if len(items) == 1 or not all(f.get("node") for f in items):
            for f in items:
                text = f"{prefix}: {f['message']}" + (f" — waived: {f.get('reason', '')}" if waived else "")
                rows.append((code, severity, text))
            continue
        nodes = [f["node"] for f in items]
        shown = ", ".join(nodes[:show]) + (f" and {len(nodes) - show} more" if len(nodes) > show else "")
        text = f"{prefix} x{len(items)} layers: {shown}; first: {first['message']}"
        if waived:
            reasons = sorted({f.get("reason", "") for f in items})
            text += " — waived: " + "; ".join(reasons)
        rows.append((code, severity, text))
    order = {"error": 0, "warning": 1, "info": 2, "waived": 3}
    return sorted(rows, key=lambda r: order[r[1]])


def _domain_text(valid_on) -> str:
    """``[-3, 3]``, or ``[[lo...], [hi...]]`` per channel."""
    lo, hi = valid_on
    if isinstance(lo, list):
        return "per channel " + ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo, hi))
    return f"[{lo:g}, {hi:g}]"


def verdict_line(report: dict[str, Any]) -> str:
    """One line for -q and multi-model runs: verdict, certified network bound, path."""
    cert = report.get("network", {}).get("certified")
    if cert:
        value = f"certified={fmt(cert['value'])} ({cert['kind']})"
        if cert.get("valid_on") is not None:
            value += f" on {_domain_text(cert['valid_on'])} only"
    elif report.get("layers"):
        worst = max(report["layers"], key=lambda l: float(l["values"]["certified"]["value"]))
        why = "weights only" if not report.get("network", {}).get("unavailable") else "see LIP101"
        value = (f"no network certificate ({why}); {len(report['layers'])} layers, largest certified "
                 f"layer norm {fmt(worst['values']['certified']['value'])} at {worst['name']}")
    else:
        value = "certified=-"
    main = report["settings"].get("method")
    extra = ""
    if cert and main in report["network"] and main != "certified":
        nv = report["network"][main]
        extra = f" {main}={fmt(nv['value'])} ({nv['kind']})"
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    why = f" — {errors[0]['code']} {errors[0]['message']}" if errors else ""
    from lipaudit.safe_io import clean_text

    return clean_text(f"{report['verdict'].upper()} {report['model']['path']}: {value}{extra}{why}")


def render_multi(reports: list[dict[str, Any]], width: int = 160, color: bool = False) -> str:
    """One summary row per model."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="lipaudit — models", title_justify="left", header_style="bold")
    for name, justify in [("model", "left"), ("layers", "right"), ("method", "left"), ("network", "right"),
                          ("certified", "right"), ("verdict", "left"), ("time", "right")]:
        table.add_column(name, justify=justify)
    for r in reports:
        method = r["settings"].get("method", "tn")
        net = r.get("network", {})
        main = net.get(method) if method != "certified" else None
        cert = net.get("certified")
        table.add_row(
            _txt(r["model"]["path"]), str(len(r.get("layers", []))), _txt(method),
            _cell(main) if main else Text("-"), _cell(cert) if cert else Text("-"),
            Text(r["verdict"].upper(), style=VERDICT_STYLE[r["verdict"]]), f"{r['elapsed_s']:.2f}s",
        )
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=color, no_color=not color, color_system="standard" if color else None).print(table)
    return buf.getvalue()
