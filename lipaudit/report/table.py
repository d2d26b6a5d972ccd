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


def render_table(report: dict[str, Any], width: int = 160, color: bool = False) -> str:
    """The per-layer table plus a summary panel, as text (ANSI codes only when ``color``)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cols = value_columns(report)
    compare_exact = "exact" in cols
    table = Table(title=_txt(f"lipaudit — {report['model']['path']}"), title_justify="left", header_style="bold", expand=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer", overflow="fold", max_width=40)
    table.add_column("op")
    table.add_column("kernel")
    table.add_column("stride")
    table.add_column("input")
    table.add_column("BN folded")
    for c in cols:
        table.add_column(c, justify="right")
    if compare_exact:
        for c in cols:
            if c not in ("exact", "certified"):
                table.add_column(f"{c}/exact", justify="right")
    table.add_column("share", justify="right")
    table.add_column("time", justify="right")
    for i, layer in enumerate(report["layers"], 1):
        values = layer["values"]
        kernel = _shape(layer.get("kernel_shape") or layer.get("weight_shape"))
        row = [
            str(i), _txt(layer["name"]), _txt(layer["op"]), kernel, _shape(layer.get("strides")),
            _shape((layer.get("input_shape") or [])[2:]) if layer.get("kernel_shape") else _shape(layer.get("input_shape")),
            _folded(layer["folded"]),
        ]
        row += [_cell(values.get(c)) for c in cols]
        if compare_exact:
            ratios = layer.get("ratios", {})
            for c in cols:
                if c not in ("exact", "certified"):
                    r = ratios.get(f"{c}/exact")
                    row.append(f"{r:.3f}" if r is not None else "-")
        row.append(f"{layer['share'] * 100:.1f}%")
        row.append(f"{sum(v.get('time_s', 0) for v in values.values()):.3f}s")
        table.add_row(*row)
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color, color_system="standard" if color else None, highlight=False)
    console.print(table)
    console.print(Text(LEGEND, style="dim"))
    console.print(render_summary(report))
    return buf.getvalue()


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
        grid.add_row(label, text)
    grid.add_row("outputs", _txt(", ".join(map(str, report["model"].get("outputs", []))) or "-"))
    for f in report["findings"]:
        style = {"error": "red", "warning": "yellow", "info": "dim"}[f["severity"]]
        grid.add_row(_txt(f["code"], style=style), _txt(f"{f['name']}: {f['message']}", style=style))
    verdict = report["verdict"]
    grid.add_row("verdict", Text(verdict.upper(), style=VERDICT_STYLE[verdict]))
    grid.add_row("time", f"{report['elapsed_s']:.2f}s")
    return Panel(grid, title="summary", title_align="left", expand=False)


def _domain_text(valid_on) -> str:
    """``[-3, 3]``, or ``[[lo...], [hi...]]`` per channel."""
    lo, hi = valid_on
    if isinstance(lo, list):
        return "per channel " + ", ".join(f"[{fmt(a)}, {fmt(b)}]" for a, b in zip(lo, hi))
    return f"[{fmt(lo)}, {fmt(hi)}]"


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
