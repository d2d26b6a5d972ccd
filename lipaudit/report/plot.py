"""Pictures of a report: per-layer values on a log scale, the exact norm as reference, ratios below.

matplotlib is an optional extra (``pip install lipaudit[plot]``).
"""

from __future__ import annotations

import io
from typing import Any

from lipaudit.errors import LipauditError

STYLE = {
    "exact": dict(color="black", marker="_", markersize=14, linestyle="none"),
    "tn": dict(color="#1f77b4", marker="o", markersize=4, linestyle="none"),
    "f4": dict(color="#ff7f0e", marker="s", markersize=4, linestyle="none"),
    "fro": dict(color="#7f7f7f", marker="^", markersize=4, linestyle="none"),
    "fft": dict(color="#2ca02c", marker="D", markersize=3, linestyle="none"),
    "symbol": dict(color="#9467bd", marker="v", markersize=4, linestyle="none"),
    "certified": dict(color="#d62728", marker="x", markersize=5, linestyle="none"),
}
ORDER = ["fro", "f4", "tn", "symbol", "fft", "certified", "exact"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LipauditError("plotting needs matplotlib: pip install 'lipaudit[plot]' (or pip install matplotlib)") from None
    return plt


def full_value(value) -> str:
    """A network value in full (``32,985.11``, never ``3.3e+04`` cut to ``3.29``)."""
    v = _num(value)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e12:
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4g}"
    return f"{v:.4e}"


def title_lines(report: dict[str, Any]) -> list[str]:
    """Model path, then every network value in full with its kind (certified first, attained where present)."""
    net = report.get("network", {})
    order = ["certified", "attained"] + [k for k in net if k not in ("certified", "attained", "unavailable")]
    values = []
    for comp in order:
        nv = net.get(comp)
        if not isinstance(nv, dict) or "value" not in nv:
            continue
        label = "certified network bound" if comp == "certified" else f"{comp}"
        text = f"{label} {full_value(nv['value'])} ({nv.get('kind', '?')})"
        if nv.get("valid_on") is not None:
            text += " on the input domain only"
        if "gap" in nv:
            text += f", gap {float(nv['gap']):.3g}x"
        values.append(text)
    if "unavailable" in net and not values:
        values.append("no network certificate (see the report)")
    path = _plain(report["model"]["path"])
    if len(path) > 90:
        path = "…" + path[-89:]
    return [path] + values


def figure(report: dict[str, Any]):
    """A matplotlib figure: values per layer (top, log scale) and method / exact ratios (bottom).

    The legend sits outside the axes (never over a point); from about 60 layers on, only every
    k-th layer is labelled, so names stay readable at 5 and at 200 layers.
    """
    plt = _pyplot()
    layers = [l for l in report["layers"] if l["values"]]
    if not layers:
        raise LipauditError("the report has no layers to plot")
    methods = [m for m in ORDER if any(m in l["values"] for l in layers)]
    has_exact = "exact" in methods
    n = len(layers)
    width = min(max(7.5, 0.11 * n + 4.0), 28.0)
    fig, axes = plt.subplots(2 if has_exact else 1, 1, figsize=(width, 7.0 if has_exact else 4.8), sharex=True,
                             gridspec_kw={"height_ratios": [2, 1]} if has_exact else None, squeeze=False,
                             layout="constrained")
    ax = axes[0, 0]
    xs = list(range(n))
    small = n > 60
    for m in methods:
        ys = [_num(l["values"][m]["value"]) if m in l["values"] else float("nan") for l in layers]
        style = dict(STYLE.get(m, dict(marker=".", linestyle="none")))
        if small:
            style["markersize"] = max(2.0, style.get("markersize", 4) * 0.6)
        ax.plot(xs, ys, label=_label(m, layers), **style)
    ax.set_yscale("log")
    ax.set_ylabel("layer norm (log)")
    ax.grid(True, which="both", axis="y", alpha=0.3)
    # outside the axes, right of them: it can never hide a point
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    lines = title_lines(report)
    room = int(width * 11)  # characters per title line at fontsize 10
    title = [lines[0]]
    for value in lines[1:]:
        if len(title) > 1 and len(title[-1]) + 3 + len(value) <= room:
            title[-1] += " · " + value
        else:
            title.append(value)
    ax.set_title("\n".join(title), fontsize=10, loc="left")
    bottom = ax
    if has_exact:
        rx = axes[1, 0]
        for m in methods:
            if m in ("exact", "certified"):
                continue
            ys = [_num(l["ratios"][f"{m}/exact"]) if f"{m}/exact" in l.get("ratios", {}) else float("nan") for l in layers]
            rx.plot(xs, ys, label=f"{m}/exact", **STYLE.get(m, {}))
        rx.axhline(1.0, color="black", linewidth=0.8)
        rx.set_ylabel("ratio to exact")
        rx.grid(True, axis="y", alpha=0.3)
        rx.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
        bottom = rx
    step = max(1, -(-n // int(width * 5.5)))  # about 5 labels per inch at most
    ticks = xs[::step]
    bottom.set_xticks(ticks)
    bottom.set_xticklabels([_short(layers[i]["name"]) for i in ticks], rotation=90 if n > 8 else 30,
                           fontsize=7 if n > 30 else 8, ha="center" if n > 8 else "right")
    if step > 1:
        bottom.set_xticks(xs, minor=True)
    bottom.set_xlim(-0.8, n - 0.2)
    bottom.set_xlabel("layer (graph order)" + (f"; one name every {step} layers" if step > 1 else ""))
    return fig


def _num(value) -> float:
    from lipaudit.baseline import number

    try:
        return number(value)
    except TypeError as exc:
        raise LipauditError(f"not a lipaudit report: {exc}") from None


def _label(method: str, layers) -> str:
    kinds = {l["values"][method]["kind"] for l in layers if method in l["values"]}
    return f"{method} ({'/'.join(sorted(kinds))})"


def _plain(text) -> str:
    """Text from a file for matplotlib: printable, and ``$`` never starts mathtext."""
    from lipaudit.safe_io import clean_text

    return clean_text(text).replace("$", r"\$")


def _short(name: str, limit: int = 28) -> str:
    name = str(name)
    return _plain(name if len(name) <= limit else "…" + name[-(limit - 1):])


def read_report(path: str) -> dict[str, Any]:
    """A JSON report from a file, checked against the report schema (one clear error when it is not one)."""
    import json

    from lipaudit.safe_io import require_regular_file

    require_regular_file(path, "report", error=LipauditError)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:
        raise LipauditError(f"{path}: not a readable JSON report ({type(exc).__name__}: {exc})") from None
    if isinstance(data, dict) and isinstance(data.get("reports"), list) and data["reports"]:
        data = data["reports"][0]
    _validate(data, path)
    return data


def _validate(data: Any, path: str) -> None:
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        from lipaudit.report.json_report import schema

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(data))
        if error is not None:
            where = "/".join(map(str, error.absolute_path)) or "top level"
            raise LipauditError(f"{path}: not a lipaudit report ({where}: {error.message[:200]})")
        return
    ok = isinstance(data, dict) and isinstance(data.get("layers"), list) and isinstance(data.get("model"), dict) and all(
        isinstance(l, dict) and isinstance(l.get("values"), dict) for l in data["layers"])
    if not ok:
        raise LipauditError(f"{path}: not a lipaudit report (expected model, layers[].values)")


def write_plot(report: dict[str, Any], path: str) -> None:
    """The figure, written atomically; the format follows the suffix (png, svg, pdf)."""
    import os

    from lipaudit.safe_io import atomic_write

    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in ("png", "svg", "pdf"):
        raise LipauditError(f"--out {path}: choose a .png, .svg or .pdf file")
    plt = _pyplot()
    fig = figure(report)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=suffix, dpi=120)
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue(), "--out")


def png_bytes(report: dict[str, Any]) -> bytes:
    plt = _pyplot()
    fig = figure(report)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
