"""Regenerate the table of docs/certificate.md: product vs expansion certificate vs attained value.

For every sample model and every ONNX model in ../shared/models (skipped when absent):
``lipaudit check MODEL --method certified`` through the Python API, reading the
product walk's value, the certified value (min of product and expansion), the
attained lower bound, the gap certified/attained, and the times.

    python benchmarks/certificate.py            # rewrites the table between the markers in docs/certificate.md
    python benchmarks/certificate.py --print    # prints it only
"""

from __future__ import annotations

import glob
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "certificate.md")
START, END = "<!-- certificate-table:start -->", "<!-- certificate-table:end -->"


def models() -> list[str]:
    found = sorted(glob.glob(os.path.join(ROOT, "sample_models", "*.onnx")))
    shared = os.path.join(ROOT, "..", "shared", "models")
    found += sorted(glob.glob(os.path.join(shared, "*.onnx")))
    return found


def num(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    if v != v or v == float("inf"):
        return str(v)
    if v >= 1e7:
        return f"{v:.3e}"
    return f"{v:,.1f}" if v >= 100 else f"{v:.3g}"


def row(path: str) -> dict:
    from lipaudit.runner import CheckOptions, run_check

    t0 = time.perf_counter()
    report = run_check(path, CheckOptions(method="certified", layer_jobs=0))
    wall = time.perf_counter() - t0
    net = report.get("network", {})
    cert, att = net.get("certified") or {}, net.get("attained") or {}
    exp = cert.get("expansion") or {}
    why = ""
    if not cert:
        why = (net.get("unavailable") or {}).get("message", report["verdict"])[:90]
    elif not att:
        why = next((f["message"][:90] for f in report["findings"] if f["code"] == "LIP040"), "")
    return {
        "model": os.path.relpath(path, ROOT).replace("../shared/models/", "shared/"),
        "product": cert.get("product", cert.get("value")), "expansion": exp.get("expansion"),
        "certified": cert.get("value"), "attained": att.get("value"), "gap": att.get("gap"),
        "splits": exp.get("splits"), "cuts": len(exp.get("cuts", [])), "stopped": exp.get("stopped_sweeps"),
        "t_expansion": exp.get("time_s"), "t_attained": (att.get("search") or {}).get("time_s"), "t_total": wall,
        "note": why,
    }


def table(rows: list[dict]) -> str:
    import torch

    head = ("| model | product | expansion | certified | attained | gap U/L | splits / cuts / stopped | "
            "expansion s | attained s | total s |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
    body = ""
    for r in rows:
        sc = "-" if r["splits"] is None else f"{r['splits']} / {r['cuts']} / {r['stopped']}"
        body += (f"| {r['model']} | {num(r['product'])} | {num(r['expansion'])} | {num(r['certified'])} | "
                 f"{num(r['attained'])} | {num(r['gap'])} | {sc} | {num(r['t_expansion'])} | "
                 f"{num(r['t_attained'])} | {r['t_total']:.1f} |\n")
    notes = "".join(f"- {r['model']}: {r['note']}\n" for r in rows if r["note"])
    machine = (f"Measured by `python benchmarks/certificate.py` on {platform.machine()} with {os.cpu_count()} cores "
               f"(shared with other jobs while measured: times are indicative), Python {platform.python_version()}, "
               f"torch {torch.__version__}, default settings (`--method certified`, expansion budget 5 GMAC, "
               f"attained search 4 restarts x 12 steps, seed 0).\n\n")
    return machine + head + body + ("\n" + notes if notes else "")


def main(argv: list[str]) -> int:
    rows = []
    for path in models():
        rows.append(row(path))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if "--print" not in argv:
            write(table(rows))  # after every model, so a long run leaves a usable table
    print(table(rows))
    return 0


def write(text: str) -> None:
    if not os.path.exists(DOC):
        return
    doc = open(DOC).read()
    if START not in doc:
        return
    head, rest = doc.split(START, 1)
    tail = rest.split(END, 1)[1]
    tmp = DOC + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(head + START + "\n" + text + END + tail)
    os.replace(tmp, DOC)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
