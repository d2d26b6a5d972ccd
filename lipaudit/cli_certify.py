"""``lipaudit certify``: certified robustness of a classifier on data, over :func:`lipaudit.certify`.

Exit codes: 0 passed, 1 a ``--min-certified-accuracy`` gate failed, 2 could not decide
(bad data, bad usage, no certificate, unreadable model). Errors are one line on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def certify_command(
    model: Path = typer.Argument(..., help="The classifier: .onnx, or .pt2 / TorchScript (exported to ONNX in memory)."),
    data: Path = typer.Option(..., "--data", help=".npz with arrays x (inputs as the model takes them) and y (integer labels)."),
    eps: str = typer.Option("0.05,0.1,0.2", "--eps", help="l2 radii, comma-separated."),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples per onnxruntime call (a fixed-batch model uses its own)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write certified accuracy against eps (.png, .svg or .pdf)."),
    min_certified_accuracy: Optional[List[str]] = typer.Option(None, "--min-certified-accuracy", help="Gate ACC@EPS, e.g. 0.6@0.1: exit 1 below it (repeatable)."),
    output: Optional[List[str]] = typer.Option(None, "--output", help="The logits output, when the model has several."),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="A stated input domain (as lipaudit check); when L needs it, L holds there only and every sample must lie inside it."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Network input shape, e.g. 1,3,32,32, for symbolic dimensions."),
    fmt: str = typer.Option("table", "--format", "-f", help="table (on stderr) or json (on stdout)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random starts."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow TorchScript files (runs code from the file!)."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Threads (0: one per core)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the verdict line."),
    no_timings: bool = typer.Option(False, "--no-timings", help="Write 0 for every time in the JSON."),
):
    """Certified accuracy on data: L = the certified Lipschitz bound of the logits, radius = margin / (sqrt(2) L)."""
    raise typer.Exit(_certify(**locals()))


def _certify(**kw) -> int:
    from lipaudit.errors import LipauditError, first_line

    console = _console()
    try:
        return _run(kw, console)
    except LipauditError as exc:
        _error(console, str(exc))
    except MemoryError:
        _error(console, "out of memory")
    except Exception as exc:  # never a traceback, never a pass
        _error(console, f"internal error: {type(exc).__name__}: {first_line(exc)}")
    return 2


def _run(kw, console) -> int:
    import lipaudit
    from lipaudit.errors import UsageError
    from lipaudit.cli import _parse_shape
    from lipaudit.robustness import parse_eps, parse_gate

    if kw["fmt"] not in ("table", "json"):
        raise UsageError(f"--format {kw['fmt']!r}: choose table or json")
    eps = parse_eps(kw["eps"])
    gates = dict((e, a) for a, e in map(parse_gate, kw["min_certified_accuracy"] or []))
    from lipaudit.safe_io import StagedWrites, check_output_path, require_regular_file

    for path, flag in ((kw["json_path"], "--json"), (kw["plot"], "--plot")):
        if path is not None:
            check_output_path(path, flag)
    if kw["plot"] is not None:
        if Path(kw["plot"]).suffix.lower() not in PLOT_SUFFIXES:
            raise UsageError(f"--plot {kw['plot']}: choose a .png, .svg or .pdf file")
        from lipaudit.report.plot import _pyplot

        _pyplot()  # matplotlib missing: say so before the work
    from lipaudit.errors import DataError

    require_regular_file(str(kw["data"]), "data", error=DataError)
    x, y = load_npz(str(kw["data"]))
    interactive = sys.stderr.isatty() and not os.environ.get("CI") and not kw["quiet"] and kw["fmt"] != "json"
    run = lambda progress: lipaudit.certify(  # noqa: E731
        str(kw["model"]), x, y, eps=eps, input_shape=_parse_shape(kw["input_shape"]) if kw["input_shape"] else None,
        outputs=kw["output"] or (), input_range=kw["input_range"], batch_size=kw["batch_size"], min_certified_accuracy=gates, seed=kw["seed"],
        jobs=kw["jobs"], progress=progress, trust_pickle=kw["trust_pickle"], timings=not kw["no_timings"])
    report = _with_progress(run, console) if interactive else run(None)
    report_dict = report.to_dict()
    report_dict["robustness"]["data"] = {"path": str(kw["data"]), "sha256": _sha256(str(kw["data"]))}
    from lipaudit.report.json_report import dumps

    payload = dumps(report_dict)
    with StagedWrites() as staged:  # every output or none
        if kw["json_path"]:
            staged.stage(kw["json_path"], payload, "--json")
        if kw["plot"]:
            from lipaudit.report.robustness_plot import curve_bytes

            rob = report.robustness
            staged.stage(kw["plot"], curve_bytes(Path(kw["plot"]).suffix.lower().lstrip("."),
                                                 certified_radii=rob.certified_radii, eps=eps,
                                                 clean_accuracy=rob.clean_accuracy,
                                                 lipschitz=float(rob.lipschitz["value"]), title=_safe(str(kw["model"]))),
                         "--plot")
        staged.commit()
    if kw["fmt"] == "json":
        sys.stdout.write(payload)
    elif kw["quiet"]:
        sys.stderr.write(verdict_line(report_dict) + "\n")
    else:
        sys.stderr.write(render(report_dict, color=_color(console), width=console.width if console.is_terminal else 100))
    return {"pass": 0, "fail": 1}.get(report.verdict, 2)


def load_npz(path: str):
    """Arrays ``x`` and ``y`` of an .npz file, read without unpickling anything."""
    import numpy as np

    from lipaudit.errors import DataError, first_line

    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise DataError(f"--data {path}: not a readable .npz file (not a zip archive); save with numpy.savez")
    _check_declared_size(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            if "x" not in names or "y" not in names:
                raise DataError(f"--data {path}: needs arrays 'x' and 'y'; found {', '.join(names) or 'none'}")
            return data["x"], data["y"]
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"--data {path}: holds Python objects (pickled arrays), which are never loaded; save "
                            "plain numeric arrays") from None
        raise DataError(f"--data {path}: not a readable .npz file ({first_line(exc)})") from None
    except Exception as exc:
        raise DataError(f"--data {path}: not a readable .npz file ({first_line(exc)})") from None


def _check_declared_size(path: str, budget: int | None = None) -> None:
    """Refuse an .npz whose arrays declare more bytes than the memory budget, before any is decompressed.

    A few kilobytes of compressed zeros can declare gigabytes; the .npy headers say how many.
    """
    import zipfile

    import numpy as np

    from lipaudit.budget import DEFAULT_MAX_MEMORY
    from lipaudit.errors import DataError, first_line

    budget = DEFAULT_MAX_MEMORY if budget is None else budget
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename not in ("x.npy", "y.npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if reader is None:
                        raise DataError(f"--data {path}: {info.filename} has an unknown .npy version {version}")
                    shape, _, dtype = reader(member)
                    total += int(np.prod(shape, dtype=object)) * dtype.itemsize
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"--data {path}: not a readable .npz file ({first_line(exc)})") from None
    if total > budget:
        raise DataError(f"--data {path}: its arrays declare {total / 1e9:.1f} GB, above the {budget / 1e9:.0f} GB "
                        f"memory budget; certify a smaller sample")


def render(report: dict, color: bool = False, width: int = 100) -> str:
    """The human summary: L with its kind and domain, clean accuracy, certified accuracy per eps, radii."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rob = report["robustness"]
    lip = rob["lipschitz"]
    console = Console(record=True, width=width, force_terminal=color, color_system="standard" if color else None,
                      file=open(os.devnull, "w"), highlight=False, soft_wrap=True)
    console.print(Text(f"lipaudit certify — {_safe(report['model']['path'])}", style="bold"))
    domain = f", valid on {lip['valid_on']} only" if "valid_on" in lip else ""
    console.print(Text(f"L = {_num(lip['value'])} ({lip['kind']}, {lip['composition']} composition, output "
                       f"{_safe(lip['output'])}, {lip['valid_for']}{domain})"))
    console.print(Text(f"clean accuracy {rob['clean_accuracy']:.4f} on n = {rob['n']}"))
    table = Table(show_header=True)
    table.add_column("eps (l2)", justify="right")
    table.add_column("certified accuracy", justify="right")
    table.add_column("certified / n", justify="right")
    for key, acc in sorted(rob["certified_accuracy"].items(), key=lambda kv: float(kv[0])):
        table.add_row(Text(key), Text(f"{acc:.4f}"), Text(f"{round(acc * rob['n'])}/{rob['n']}"))
    console.print(table)
    q = rob["radius_quantiles"]
    console.print(Text("certified radius quantiles: " + ", ".join(f"{float(k) * 100:g}% {_num(v)}" for k, v in
                                                                   sorted(q.items(), key=lambda kv: float(kv[0])))))
    for f in report["findings"]:
        if f["code"] == "LIP020":
            console.print(Text(f"{f['code']} {f['name']}: {f['message']}", style="red" if color else ""))
    console.print(Text(verdict_line(report), style=("green" if report["verdict"] == "pass" else "red") if color else ""))
    return console.export_text(styles=color)


def verdict_line(report: dict) -> str:
    rob = report.get("robustness", {})
    accs = ", ".join(f"{k}: {v:.4f}" for k, v in sorted(rob.get("certified_accuracy", {}).items(), key=lambda kv: float(kv[0])))
    return f"{report['verdict'].upper()}  {_safe(report['model']['path'])}  certified accuracy {accs}"


def _with_progress(run, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("bounding layers", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, total=total, completed=done,
                       description="bounding layers" if stage == "bounds" else "running the model")

        return run(progress)


def _sha256(path: str):
    from lipaudit.loaders import sha256

    return sha256(path)


def _num(v) -> str:
    return f"{float(v):.6g}"


def _safe(text: str) -> str:
    """Text from a file or a path, with control characters (terminal escapes) made visible."""
    from lipaudit.safe_io import clean_text

    return clean_text(text)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _color(console) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(console.is_terminal or os.environ.get("FORCE_COLOR"))


def _error(console, message: str) -> None:
    sys.stderr.write(f"error: {_safe(message)}\n")
