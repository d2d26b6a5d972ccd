#!/usr/bin/env python
"""lipaudit benchmarks: one command, results in docs/performance.md and benchmarks/results.json.

    python benchmarks/run.py                      # everything (about 12 minutes on 2 cores)
    python benchmarks/run.py --quick              # skip --compare exact on ResNet-50
    python benchmarks/run.py --sections scaling   # one section; the others are kept from results.json

Sections: (0, `targets`) the rows of the performance targets (issue 17): each repetition measures the
floor (Python + `import onnx` + `onnx.load` of the same file) right before the check, and the table
gives the minimum of each, the CPU time, peak memory and the 1-minute load average beside them;
(1) TN on the 20 ResNet-18 kernels and the trained sample kernels against the paper's
algorithm (benchmarks/baseline_tn.py); (2) whole-model `lipaudit check` runs from process start:
wall time, peak memory, and the time split from the JSON report; (3) scaling with input resolution
and with parameter count. Run it on an otherwise idle machine when you can; the load is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.baseline_tn import tn_paper  # noqa: E402
from benchmarks.kernels import resnet18_kernels, sample_kernels  # noqa: E402
from benchmarks.resnets import ensure_models  # noqa: E402
from lipaudit.bounds import ConvSpec, conv_bounds  # noqa: E402
from lipaudit.engine import _single_threaded_blas  # noqa: E402

SHARED = ROOT.parent / "shared" / "models"


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "date": time.strftime("%Y-%m-%d")}


# -- (1) TN kernels -----------------------------------------------------------------------------

def tn_kernels(kernels, parallel: bool) -> list[dict]:
    rows = []
    with _single_threaded_blas():  # one thread for both sides: a fair ratio, also on a shared machine
        rows = [tn_row(name, w, s, n) for name, w, s, n in kernels]
    total = None
    if parallel:
        from concurrent.futures import ThreadPoolExecutor

        specs = [ConvSpec(w, (s, s), None, 1, (w.shape[2] // 2,) * 4) for _, w, s, _ in kernels]
        order = sorted(range(len(specs)), key=lambda i: -specs[i].weight.size)
        t0 = time.perf_counter()
        with _single_threaded_blas(), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(lambda i: conv_bounds(specs[i], ("tn",)), order))
        total = time.perf_counter() - t0
    return rows, total


def tn_row(name, w, s, n) -> dict:
    """One kernel: the paper's algorithm and lipaudit's TN, timed back to back."""
    spec = ConvSpec(w, (s, s), None, 1, (w.shape[2] // 2,) * 4, input_size=(n, n))
    t0 = time.perf_counter()
    base = tn_paper(w, s)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = conv_bounds(spec, ("tn",))["tn"]
    t_ours = time.perf_counter() - t0
    return {"layer": name, "shape": "x".join(map(str, w.shape)), "stride": s, "baseline_s": t_base,
            "lipaudit_s": t_ours, "speedup": t_base / t_ours, "baseline": base, "lipaudit": ours.value,
            "rel_diff": (ours.value - base) / base, "iterations": ours.iterations}


# -- (2) whole models ---------------------------------------------------------------------------

def timed_check(model: Path, *args: str) -> dict:
    """``lipaudit check`` as a fresh process: wall time and peak RSS from process start."""
    cmd = [sys.executable, "-m", "lipaudit", "check", str(model), "--format", "json", *args]
    timer = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    if os.path.exists(timer):
        proc = subprocess.run([timer, "-f", "%e %M %U %S", *cmd], capture_output=True, text=True, cwd=ROOT)
        wall, rss_kb, user, system = proc.stderr.strip().splitlines()[-1].split()[:4]
        wall, peak_mb, cpu = float(wall), int(rss_kb) / 1024, float(user) + float(system)
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall, peak_mb, cpu = time.perf_counter() - t0, float("nan"), float("nan")
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return {"wall_s": wall, "peak_mb": peak_mb, "cpu_s": cpu, "verdict": "error", "error": proc.stderr[-300:]}
    t = report.get("timings", {})
    cert = report.get("network", {}).get("certified", {})
    return {"wall_s": wall, "peak_mb": peak_mb, "cpu_s": cpu, "verdict": report["verdict"], "layers": len(report["layers"]),
            "dense": [{"name": layer["name"], **{k: layer["values"][k] for k in ("certified", "tn", "fro") if k in layer["values"]}}
                      for layer in report["layers"] if layer.get("op") in ("Gemm", "MatMul")],
            "load_s": t.get("load_s"), "bounds_s": t.get("bounds_s"), "certificate_s": t.get("certificate_s"),
            "report_s": t.get("report_s"), "in_process_s": report.get("elapsed_s"), "certified": cert.get("value")}


def process_floor() -> float:
    """Python start + the imports a check needs, with nothing to audit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lipaudit.cli, lipaudit.loaders.onnx, lipaudit.engine, onnx"], check=True)
    return time.perf_counter() - t0


def onnx_floor(model: Path) -> float:
    """The floor of issue 17: Python start + ``import onnx`` + ``onnx.load`` of the same file."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import onnx; onnx.load({str(model)!r})"], check=True)
    return time.perf_counter() - t0


def cli_flags() -> str:
    return subprocess.run([sys.executable, "-m", "lipaudit", "check", "--help"], capture_output=True, text=True,
                          cwd=ROOT).stdout


def target_rows() -> list[tuple]:
    """(row, model, flags, target text, target seconds given the floor, repetitions)."""
    attained = ["--no-attained"] if "--no-attained" in cli_flags() else []
    return [
        ("ResNet-18 default", "resnet18", [], "floor + 1.0 s", lambda f: f + 1.0, 3),
        ("ResNet-50 default", "resnet50", [], "floor + 2.5 s", lambda f: f + 2.5, 3),
        ("ResNet-50 certified", "resnet50", ["--method", "certified", *attained], "under 20 s", lambda f: 20.0, 1),
        ("VGG head 8192-4096-1000", "vgg_head", [], "under 3 s", lambda f: 3.0, 3),
        ("VGG-11 fc1 25088-4096", "vgg11_fc1", [], "no Frobenius fallback (was 73 s)", None, 1),
        ("ResNet-18 --compare exact (224x224)", "resnet18", ["--compare", "exact"], "-", None, 1),
    ]


def run_targets(results: dict) -> None:
    """Each row: per repetition the onnx floor, then the check; the minimum of each, and the load beside it."""
    from benchmarks.dense_head import ensure_heads

    paths = {**ensure_models(), **ensure_heads()}
    rows = []
    for row, key, flags, target_text, target, reps in target_rows():
        runs = []
        for _ in range(reps):
            load = os.getloadavg()[0]
            floor = onnx_floor(paths[key])
            r = timed_check(paths[key], *flags)
            r.update(floor_s=floor, load=load)
            runs.append(r)
        best = min(runs, key=lambda r: r["wall_s"])
        floor = min(r["floor_s"] for r in runs)
        out = {"row": row, "command": f"lipaudit check {paths[key].name} {' '.join(flags)}".strip(), "floor_s": floor,
               "wall_s": best["wall_s"], "cpu_s": min(r["cpu_s"] for r in runs), "peak_mb": max(r["peak_mb"] for r in runs),
               "loads": [round(r["load"], 1) for r in runs], "walls": [round(r["wall_s"], 2) for r in runs],
               "floors": [round(r["floor_s"], 2) for r in runs], "verdict": best["verdict"], "target": target_text,
               "target_s": target(floor) if target else None, "dense": best.get("dense", []),
               "bounds_s": best.get("bounds_s"), "load_s": best.get("load_s"), "certificate_s": best.get("certificate_s")}
        rows.append(out)
        print(f"{row:36s} wall {out['wall_s']:7.2f}s floor {floor:5.2f}s cpu {out['cpu_s']:7.2f}s {out['peak_mb']:6.0f} MB "
              f"loads {out['loads']}", flush=True)
    results["targets"] = rows


# -- (3) scaling --------------------------------------------------------------------------------

def scaling_resolution(sizes, exact_up_to: int = 256) -> list[dict]:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2 / 576)).astype(np.float32)
    rows = []
    for n in sizes:
        spec = ConvSpec(w, pads=(1, 1, 1, 1), input_size=(n, n))
        t0 = time.perf_counter()
        tn = conv_bounds(spec, ("tn",))["tn"]
        t_tn = time.perf_counter() - t0
        t0 = time.perf_counter()
        fft = conv_bounds(spec, ("fft",))["fft"]
        t_fft = time.perf_counter() - t0
        t_exact, ex_value = None, None
        if n <= exact_up_to:  # power iteration at 512x512 costs ~150 GFLOP per step
            t0 = time.perf_counter()
            ex_value = conv_bounds(spec, ("exact",))["exact"].value
            t_exact = time.perf_counter() - t0
        rows.append({"n": n, "tn_s": t_tn, "fft_s": t_fft, "exact_s": t_exact, "tn": tn.value, "fft": fft.value, "exact": ex_value})
    return rows


def scaling_params() -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for c in (16, 32, 64, 128, 256, 512):
        w = (rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        spec = ConvSpec(w, pads=(1, 1, 1, 1))
        conv_bounds(spec, ("tn",))  # warm
        t0 = time.perf_counter()
        r = conv_bounds(spec, ("tn",))["tn"]
        rows.append({"channels": c, "params": int(w.size), "tn_s": time.perf_counter() - t0, "iterations": r.iterations})
    return rows


# -- report -------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="targets,tn,models,scaling", help="comma-separated: targets, tn, models, scaling")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    out = ROOT / "benchmarks" / "results.json"
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results["machine"] = machine()
    print("machine:", results["machine"])
    today = results["machine"]["date"]
    if "targets" in sections:
        run_targets(results)
        results.setdefault("dates", {})["targets"] = today
        save(results)
    if "tn" in sections:
        run_tn(results)
        results.setdefault("dates", {})["tn"] = today
        save(results)
    if "models" in sections:
        run_models(results, args.quick)
        results.setdefault("dates", {})["models"] = today
        save(results)
    if "scaling" in sections:
        results["scaling_resolution"] = scaling_resolution([32, 64, 128, 256, 512])
        results["scaling_params"] = scaling_params()
        results.setdefault("dates", {})["scaling"] = today
        save(results)
    write_markdown(results)
    print("wrote docs/performance.md and benchmarks/results.json")


def save(results: dict) -> None:
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=1) + "\n")


def run_tn(results: dict) -> None:
    load = os.getloadavg()[0]
    rows, parallel_total = tn_kernels(resnet18_kernels(), parallel=True)
    results["tn_loads"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    results["tn_resnet18"] = rows
    results["tn_resnet18_parallel_s"] = parallel_total
    sample_rows, _ = tn_kernels(sample_kernels(), parallel=False)
    results["tn_samples"] = sample_rows
    print(f"TN ResNet-18: baseline {sum(r['baseline_s'] for r in rows):.2f}s, lipaudit {sum(r['lipaudit_s'] for r in rows):.2f}s "
          f"(threads {parallel_total:.2f}s)")


def run_models(results: dict, quick: bool) -> None:
    models = ensure_models()
    floor = min(process_floor() for _ in range(3))
    results["process_floor_s"] = floor
    runs = []
    targets = [("resnet18", models["resnet18"]), ("resnet50", models["resnet50"])]
    targets += [(p.stem, p) for p in sorted((ROOT / "sample_models").glob("*.onnx"))]
    targets += [(p.stem, p) for p in sorted(SHARED.glob("*.onnx"))] if SHARED.exists() else []
    slim_heads = []
    if (SHARED / "version-slim-320.onnx").exists():
        from benchmarks.tightness import slim_heads as heads

        slim_heads = [a for h in heads() for a in ("--output", h)]
    for name, path in targets:
        extra = slim_heads if name == "version-slim-320" else []
        modes = [("default", []), ("certified", ["--method", "certified"]), ("compare exact", ["--compare", "exact"])]
        for mode, flags in modes:
            if mode == "compare exact" and quick and name == "resnet50":
                continue
            r = timed_check(path, *flags, *extra)
            r.update(model=name, mode=mode)
            runs.append(r)
            print(f"{name:28s} {mode:14s} {r['wall_s']:7.2f}s {r['peak_mb']:7.0f} MB {r['verdict']}")
    results["models"] = runs


def section_date(res: dict, section: str) -> str:
    """When a section was last run (sections not rerun keep their numbers; the first runs predate the dates)."""
    return res.get("dates", {}).get(section, "2026-11-24, before the issue-17 changes, on an idle machine")


def targets_markdown(res: dict) -> list[str]:
    rows = res.get("targets")
    if not rows:
        return []
    m = res["machine"]
    lines = [
        "## 0. Targets (issue 17)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, numpy {m['numpy']}, {m['date']}. Every row: "
        "repetitions of (floor, check) back to back; the floor is `python -c \"import onnx; onnx.load(file)\"`; "
        "wall, floor and CPU (user + system) are the minimum over the repetitions, peak memory (max RSS) the maximum. "
        "The load column is the 1-minute load average before each repetition: the machine is shared, and wall "
        "times grow with it, CPU time much less.", "",
        "| row | command | floor (s) | wall (s) | wall - floor (s) | CPU (s) | peak memory (MB) | load | target | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["target_s"] is None:
            status = "-"
        elif r["wall_s"] <= r["target_s"]:
            status = "met"
        else:
            status = f"missed by {r['wall_s'] - r['target_s']:.2f} s at load {max(r['loads'])} (see the notes for the idle estimate)"
        lines.append(f"| {r['row']} | `{r['command']}` | {r['floor_s']:.2f} | {r['wall_s']:.2f} | {r['wall_s'] - r['floor_s']:.2f} | "
                     f"{r['cpu_s']:.2f} | {r['peak_mb']:.0f} | {', '.join(str(x) for x in r['loads'])} | {r['target']} | {status} |")
    dense = [(r["row"], d) for r in rows for d in r.get("dense", []) if r["row"].startswith("VGG")]
    if dense:
        lines += ["", "Dense layers (certified value and the solver's bracket; Frobenius beside it):", "",
                  "| model | layer | certified | kind | lower end of the bracket | solver | Frobenius |", "|---|---|---|---|---|---|---|"]
        for row, d in dense:
            c = d["certified"]
            lower = d.get("tn", {}).get("detail", {}).get("lower")
            solver = d.get("tn", {}).get("detail", {}).get("solver", "")
            lines.append(f"| {row} | {d['name']} | {c['value']:.6g} | {c['kind']} | {lower if lower is None else f'{lower:.6g}'} | "
                         f"{solver} | {d.get('fro', {}).get('value', float('nan')):.4g} |")
    return lines + [""]


def write_markdown(res: dict) -> None:
    m = res["machine"]
    rows = res["tn_resnet18"]
    tb, to = sum(r["baseline_s"] for r in rows), sum(r["lipaudit_s"] for r in rows)
    worst = min(r["rel_diff"] for r in rows)
    lines = [
        "# Performance",
        "",
        "Generated by `python benchmarks/run.py` (about 10 minutes; `--quick` skips the slowest runs). Raw numbers: "
        "`benchmarks/results.json`. Discussion of targets and profiles: the last section, written by hand.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}; "
        f"{m['platform']}; {m['date']}. Timings are wall clock; the load average at each measurement is given where it was recorded.",
        "",
        *targets_markdown(res),
        f"## 1. TN on the 20 ResNet-18 kernels vs the paper's algorithm (measured {section_date(res, 'tn')})",
        "",
        "Kernels: torchvision ResNet-18 shapes and strides, He-initialised random weights (seed 0). Baseline: "
        "`benchmarks/baseline_tn.py`, HOPM as the paper's code runs it (einsum, complex64, 100 iterations, 5 random "
        "restarts one after another, no convergence test). lipaudit: `conv_bounds(spec, ('tn',))` with default "
        "settings, one layer at a time, in process (the process floor is excluded for both). Both sides run with one "
        "BLAS/torch thread (before 2026-12-02: both with the library defaults on an idle machine).",
        "",
        f"**Total: baseline {tb:.2f} s, lipaudit {to:.2f} s, speed-up {tb / to:.1f}x** "
        f"(with one thread per core over layers: {res['tn_resnet18_parallel_s']:.2f} s, {tb / res['tn_resnet18_parallel_s']:.1f}x). "
        f"Values: lipaudit minus baseline is at worst {worst * 100:+.4f} % (relative). "
        + (f"Load average at start and end: {res['tn_loads'][0]}, {res['tn_loads'][1]} (both sides of each row ran back "
           "to back under the same load, so the ratio is fair even when the machine is shared)." if res.get("tn_loads") else ""),
        "",
        "| layer | shape | stride | baseline (s) | lipaudit (s) | speed-up | baseline TN | lipaudit TN | diff | sweeps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['shape']} | {r['stride']} | {r['baseline_s']:.3f} | {r['lipaudit_s']:.3f} | "
                     f"{r['speedup']:.1f}x | {r['baseline']:.6g} | {r['lipaudit']:.6g} | {r['rel_diff'] * 100:+.4f}% | {r['iterations']} |")
    srows = res["tn_samples"]
    lines += ["", f"Trained sample kernels (the conv weights as stored in the ONNX files): baseline {sum(r['baseline_s'] for r in srows):.2f} s, lipaudit "
              f"{sum(r['lipaudit_s'] for r in srows):.2f} s; worst value difference {min(r['rel_diff'] for r in srows) * 100:+.4f} %.", "",
              "| layer | shape | stride | baseline (s) | lipaudit (s) | baseline TN | lipaudit TN | diff |", "|---|---|---|---|---|---|---|---|"]
    for r in srows:
        lines.append(f"| {r['layer']} | {r['shape']} | {r['stride']} | {r['baseline_s']:.3f} | {r['lipaudit_s']:.3f} | "
                     f"{r['baseline']:.6g} | {r['lipaudit']:.6g} | {r['rel_diff'] * 100:+.4f}% |")
    lines += [
        "", f"## 2. Whole-model audits, from process start (measured {section_date(res, 'models')})", "",
        f"Process floor (Python start and imports, nothing audited): {res['process_floor_s']:.2f} s. "
        "ResNet-18/50: torchvision shapes, random weights, exported to ONNX by `benchmarks/resnets.py` (not committed). "
        "Modes: default (`--method tn`: TN, F4, Frobenius, certificate), `--method certified` (adds the FFT bound at "
        "the input size), `--compare exact` (adds power iteration on every layer's operator).", "",
        "| model | mode | wall (s) | peak memory (MB) | load (s) | per-layer bounds (s) | certificate (s) | report (s) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["models"]:
        f = lambda k: f"{r[k]:.2f}" if isinstance(r.get(k), (int, float)) else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['wall_s']:.2f} | {r['peak_mb']:.0f} | {f('load_s')} | {f('bounds_s')} | "
                     f"{f('certificate_s')} | {f('report_s')} | {r['verdict']} |")
    lines += ["", f"## 3. Scaling (measured {section_date(res, 'scaling')})", "", "One 64x64x3x3 conv (zero padding 1) at input n x n: TN does not depend on n; the FFT "
              "bound and the exact norm do.", "", "| n | TN (s) | FFT bound (s) | exact (s) | TN | FFT bound | exact |", "|---|---|---|---|---|---|---|"]
    for r in res["scaling_resolution"]:
        ex_t = f"{r['exact_s']:.2f}" if r["exact_s"] is not None else "not run"
        ex_v = f"{r['exact']:.5g}" if r["exact"] is not None else "-"
        lines.append(f"| {r['n']} | {r['tn_s']:.3f} | {r['fft_s']:.3f} | {ex_t} | {r['tn']:.5g} | {r['fft']:.5g} | {ex_v} |")
    lines += ["", "TN time against parameter count (c x c x 3 x 3, random):", "", "| channels | parameters | TN (s) | sweeps |", "|---|---|---|---|"]
    for r in res["scaling_params"]:
        lines.append(f"| {r['channels']} | {r['params']} | {r['tn_s']:.3f} | {r['iterations']} |")
    notes = ROOT / "benchmarks" / "performance_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (ROOT / "docs" / "performance.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
