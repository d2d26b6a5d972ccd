"""The command line: the only place that parses arguments, prints, writes files and exits.

Exit codes: 0 passed, 1 a gate failed, 2 could not decide (bad input,
unsupported op, usage error, internal error).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from lipaudit import __version__
from lipaudit.exits import guarded

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Audit how much a convolutional network can amplify a perturbation of its input: "
    "per-layer spectral-norm bounds (the TN bound of Grishina et al., ECCV 2024, and reference bounds) "
    "and a network Lipschitz certificate. Exit codes: 0 pass, 1 a gate failed, 2 could not decide.",
)

EXAMPLES = """\b
Examples:
  lipaudit check model.onnx
  lipaudit check model.onnx --method certified --max-lipschitz 100
  lipaudit check model.onnx --compare exact --json report.json
  lipaudit check new.onnx --baseline old.json --max-increase 5%
  lipaudit check detector.onnx --output raw_scores --output raw_boxes
  lipaudit check mobilenet.onnx --input-range -3,3
  lipaudit check runs/*.onnx --jobs 2 -q
"""


def _version(value: bool):
    if value:
        typer.echo(f"lipaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    pass


def _parse_shape(text: str):
    """``1,3,224,224`` or ``name:1,3,224,224`` (several separated by ';')."""
    from lipaudit.errors import UsageError

    shapes = {}
    for part in text.split(";"):
        name, _, dims = part.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise UsageError(f"--input-shape {text!r}: expected comma-separated integers, e.g. 1,3,224,224") from None
        if not shape or min(shape) < 1:
            raise UsageError(f"--input-shape {text!r}: every dimension must be a positive integer")
        shapes[name] = shape
    if list(shapes) == [""]:
        return shapes[""]
    return shapes


def _parse_fraction(text: str) -> float:
    from lipaudit.errors import UsageError

    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"--max-increase {text!r}: expected e.g. 5% or 0.05") from None
    from lipaudit.baseline import check_threshold

    return check_threshold("--max-increase", value)


def _parse_strides(items: list[str]) -> dict[str, tuple[int, ...]]:
    from lipaudit.errors import UsageError

    out = {}
    for item in items:
        pattern, _, value = item.rpartition("=")
        try:
            out[pattern or "*"] = tuple(int(v) for v in value.split(","))
        except ValueError:
            raise UsageError(f"--stride {item!r}: expected PATTERN=S or PATTERN=SH,SW") from None
    return out


def _err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@app.command(epilog=EXAMPLES)
@guarded
def check(
    models: List[Path] = typer.Argument(..., help="Model file(s): .onnx, .pt/.pth (state dict, checkpoint, TorchScript), .pt2, .safetensors."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Per-layer method composed into the main network number: tn (default), f4, fro, certified."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", help="Extra methods per layer, comma-separated or repeated: exact, f4, fro, fft, symbol."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Network input shape, e.g. 1,3,224,224 (or NAME:1,3,224,224)."),
    output: Optional[List[str]] = typer.Option(None, "--output", "-o", help="Certify the map to this value only (repeatable)."),
    until: Optional[str] = typer.Option(None, "--until", help="Certify the map to this node's output."),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="Certify on this input domain only: LO,HI (e.g. -3,3), one LO,HI pair per channel separated by ';', or 'imagenet' (pixels in [0,1], normalised). Products of input-dependent tensors (gates, attention) are then certified, and the network number holds on the domain only."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random starts (default 0); same seed, same numbers."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iteration cap of HOPM and power iteration."),
    tol: Optional[float] = typer.Option(None, "--tol", help="Relative convergence tolerance of the iterative methods."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda for the exact-norm power iteration (default: cuda when available)."),
    max_lipschitz: Optional[float] = typer.Option(None, "--max-lipschitz", help="Fail (exit 1) when the certified network bound exceeds this."),
    max_layer_norm: Optional[float] = typer.Option(None, "--max-layer-norm", help="Fail when any layer's certified norm exceeds this."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="An earlier JSON report to compare against."),
    max_increase: Optional[str] = typer.Option(None, "--max-increase", help="Allowed growth over --baseline, e.g. 5% (default 0%)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table (default, on stderr) or json (on stdout)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report (table + figure)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the verdict line."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Parallelism: threads over layers for one model (default: one per core), processes over models for several."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading pickled whole modules and TorchScript (runs code from the file!). Only on the command line, never from a config file."),
    arch: Optional[str] = typer.Option(None, "--arch", help="package.module:factory building the architecture for a state dict."),
    stride: Optional[List[str]] = typer.Option(None, "--stride", help="State dicts: stride per layer name pattern, e.g. 'layer*.conv1=2' (repeatable)."),
    no_timings: bool = typer.Option(False, "--no-timings", help="Write 0 for every time in the JSON (byte-identical reports)."),
    expansion_budget: Optional[float] = typer.Option(None, "--expansion-budget", help="Work cap (GMAC) of the expansion certificate in --method certified (default 20; 0: product rule only)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Memory budget, e.g. 8GB (default 4GB): work estimated above it is refused before it starts."),
):
    """Audit model file(s): per-layer bounds, network certificate, gates."""
    code = _check(**locals())
    raise typer.Exit(code)


def _check(**kw) -> int:
    from lipaudit.config import load_config
    from lipaudit.errors import LipauditError, UsageError
    from lipaudit.baseline import check_threshold
    from lipaudit.budget import DEFAULT_MAX_MEMORY, parse_size
    from lipaudit.runner import EXIT, CheckOptions
    from lipaudit.safe_io import check_output_path

    console = _err_console()
    try:
        cfg = load_config()

        def pick(name, key, default=None):
            value = kw[name]
            if value is None or value == []:
                value = cfg.get(key, default)
            return value

        compare = []
        for item in pick("compare", "compare", []) or []:
            compare += [c.strip() for c in str(item).split(",") if c.strip()]
        fmt = pick("fmt", "format", "table")
        if fmt not in ("table", "json"):
            raise UsageError(f"--format {fmt!r}: choose table or json")
        device = pick("device", "device", "auto")
        if device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"--device {device!r}: choose cpu or cuda")
        shape = pick("input_shape", "input-shape")
        outputs = pick("output", "output", []) or []
        if isinstance(outputs, str):
            outputs = [outputs]
        strides = pick("stride", "stride", []) or []
        opts = CheckOptions(
            method=pick("method", "method", "tn"),
            compare=tuple(dict.fromkeys(compare)),
            input_shape=_parse_shape(str(shape)) if shape else None,
            outputs=tuple(outputs),
            until=pick("until", "until"),
            input_range=pick("input_range", "input-range"),
            seed=int(pick("seed", "seed", 0)),
            iters=pick("iters", "iters"),
            tol=pick("tol", "tol"),
            device=device,
            max_lipschitz=check_threshold("--max-lipschitz", pick("max_lipschitz", "max-lipschitz")),
            max_layer_norm=check_threshold("--max-layer-norm", pick("max_layer_norm", "max-layer-norm")),
            baseline=str(pick("baseline", "baseline")) if pick("baseline", "baseline") else None,
            max_increase=_parse_fraction(pick("max_increase", "max-increase", "0")),
            trust_pickle=bool(kw["trust_pickle"]),  # trust comes from the command line only, never a config file
            max_memory=parse_size(pick("max_memory", "max-memory", DEFAULT_MAX_MEMORY)),
            arch=kw["arch"],
            strides=_parse_strides(strides if isinstance(strides, list) else [strides]),
            timed=not kw["no_timings"],
            expansion=pick("expansion_budget", "expansion-budget"),
        )
        if opts.expansion is not None and not (float(opts.expansion) >= 0):
            raise UsageError("--expansion-budget must be >= 0")
        from lipaudit.engine import AuditSettings

        from lipaudit.runner import input_domain

        AuditSettings(method=opts.method, compare=opts.compare)  # validate early: a usage error, exit 2
        input_domain(opts.input_range)
        if opts.iters is not None and opts.iters < 1:
            raise UsageError("--iters must be >= 1")
        if opts.tol is not None and not (0 <= opts.tol < 1):
            raise UsageError("--tol must be in [0, 1)")
        jobs = int(pick("jobs", "jobs", 0))  # 0: automatic
        if jobs < 0 or (kw["jobs"] is not None and kw["jobs"] < 1):
            raise UsageError("--jobs must be >= 1")
        jobs = min(jobs, os.cpu_count() or 1)  # never more workers than cores
        # every output is checked before the audit: no complete-looking report when a write will fail
        for flag, key in (("--json", "json_path"), ("--html", "html_path")):
            if kw[key]:
                check_output_path(kw[key], flag)
    except LipauditError as exc:
        _error(console, str(exc))
        return 2
    paths = [str(p) for p in kw["models"]]
    from dataclasses import replace

    # one model: threads over its layers (0: one per core); several models with --jobs N: N processes,
    # one thread each, so they do not oversubscribe the cores
    opts = replace(opts, layer_jobs=jobs if len(paths) == 1 else (1 if jobs > 1 else 0))
    reports = _run_all(paths, opts, jobs, quiet=kw["quiet"] or fmt == "json", console=console)
    if reports is None:
        return 2
    for report in reports:
        if report["verdict"] == "error" and not kw["quiet"]:
            _error(console, report["findings"][0]["message"])
    if not _emit(reports, fmt, kw, console):
        return 2
    return max(EXIT[r["verdict"]] for r in reports)


def _error(console, message: str) -> None:
    """One error line; the message is text (names from files are never markup or terminal codes)."""
    from rich.text import Text

    from lipaudit.errors import first_line
    from lipaudit.safe_io import clean_text

    console.print(Text.assemble(("error:", "bold red"), " ", clean_text(first_line(Exception(message)))),
                  highlight=False, soft_wrap=True)


def _run_all(paths, opts, jobs, quiet, console):
    from lipaudit.runner import run_check

    if len(paths) > 1 and jobs > 1:
        return _in_processes(paths, opts, jobs, console)
    reports = []
    for path in paths:
        interactive = sys.stderr.isatty() and not os.environ.get("CI")  # never animate into a log
        if not quiet and interactive and len(paths) == 1:
            reports.append(_with_progress(path, opts, console))
        else:
            reports.append(run_check(path, opts))
    return reports


def _in_processes(paths, opts, jobs, console):
    """Models in worker processes; a worker that dies (killed, out of memory) ends the run with exit 2."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from lipaudit.exits import worker_init
    from lipaudit.runner import run_check

    pool = ProcessPoolExecutor(max_workers=min(jobs, len(paths)), initializer=worker_init)
    try:
        futures = [pool.submit(run_check, p, opts) for p in paths]
        reports = [f.result() for f in futures]
    except BrokenProcessPool:
        _error(console, "a worker process died (killed or out of memory); no report was written")
        reports = None
    except BaseException:
        # Ctrl-C or SIGTERM: stop the workers rather than wait for the other models
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)
    return reports


def _with_progress(path, opts, console):
    """A progress bar on an interactive stderr only; nothing animated in CI logs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lipaudit.runner import run_check

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("bounding layers", total=None)

        def progress(done, total, name):
            bar.update(task, total=total, completed=done, description=f"bounding {name[:30]}")

        return run_check(path, opts, progress)


def _emit(reports, fmt, kw, console) -> bool:
    """Write every output; False (nothing written, one error line) when any file cannot be written."""
    from lipaudit.report.json_report import dumps
    from lipaudit.report.table import render_multi, render_table, verdict_line
    from lipaudit.safe_io import OutputError, StagedWrites

    color = console.is_terminal and not os.environ.get("NO_COLOR") or bool(os.environ.get("FORCE_COLOR"))
    if os.environ.get("NO_COLOR"):
        color = False
    width = max(console.width, 100) if console.is_terminal else 200
    payload = dumps(reports[0]) if len(reports) == 1 else dumps({"reports": reports})
    try:
        # all files or none: each goes to a temporary file beside it, then all are renamed
        with StagedWrites() as staged:
            if kw["json_path"]:
                staged.stage(kw["json_path"], payload, "--json")
            if kw["html_path"]:
                from lipaudit.report.html import render_html

                staged.stage(kw["html_path"], render_html(reports[0]), "--html")
            staged.commit()
    except OutputError as exc:
        _error(console, str(exc))
        return False
    if fmt == "json":
        sys.stdout.write(payload)
        sys.stdout.flush()
        return True
    if kw["quiet"]:
        for r in reports:
            sys.stderr.write(verdict_line(r) + "\n")
        return True
    if len(reports) == 1:
        if reports[0]["verdict"] != "error":  # an error was already printed as one line
            sys.stderr.write(render_table(reports[0], width=width, color=color))
    else:
        sys.stderr.write(render_multi(reports, width=width, color=color))
        for r in reports:
            sys.stderr.write(verdict_line(r) + "\n")
    return True


@app.command()
def explain(code: str = typer.Argument(..., help="A finding code, e.g. LIP001, or its name.")):
    """Explain a finding code."""
    from lipaudit.findings import CODES

    key = code.upper()
    found = CODES.get(key) or next((c for c in CODES.values() if c.name == code.lower()), None)
    if found is None:
        typer.echo(f"error: unknown code {code!r}; known: {', '.join(CODES)}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{found.code} {found.name} ({found.severity})\n\n{found.summary}\n\n{found.explanation}")


@app.command()
def codes():
    """List every finding code."""
    from lipaudit.findings import CODES

    for c in CODES.values():
        typer.echo(f"{c.code}  {c.name:<28} {c.severity:<8} {c.summary}")


@app.command()
def ops():
    """List the ONNX operators lipaudit has a Lipschitz rule for (refusals included)."""
    from lipaudit.ops import load_rules
    from lipaudit.ops.refused import DISCONTINUOUS, UNBOUNDED

    rules = load_rules()
    supported = sorted(op for op in rules if op not in UNBOUNDED and op not in DISCONTINUOUS)
    typer.echo("supported: " + ", ".join(supported))
    typer.echo("refused (no global Lipschitz constant or not continuous): " + ", ".join(sorted(set(UNBOUNDED) | DISCONTINUOUS)))


@app.command()
@guarded
def plot(
    report: Path = typer.Argument(..., help="A JSON report written by lipaudit check --json."),
    out: Path = typer.Option(..., "-o", "--out", help="Output image (.png, .svg or .pdf)."),
):
    """Plot per-layer values (log scale) with the exact norm as reference, and their ratios."""
    from lipaudit.report.plot import read_report, write_plot
    from lipaudit.safe_io import check_output_path

    check_output_path(out, "--out")
    write_plot(read_report(str(report)), str(out))
    typer.echo(f"wrote {out}", err=True)


from lipaudit.cli_certify import certify_command  # noqa: E402

app.command("certify", epilog="""\b
Examples:
  lipaudit certify model.onnx --data test.npz --eps 0.05,0.1,0.2
  lipaudit certify model.onnx --data test.npz --plot curve.png --min-certified-accuracy 0.6@0.1
""")(guarded(certify_command))


def main() -> None:
    """The console entry: closed streams, signals and library chatter are handled before any command runs."""
    from lipaudit.exits import EXIT_INTERRUPTED, prepare_process, say

    prepare_process()
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. while parsing)
        say("interrupted")
        sys.exit(EXIT_INTERRUPTED)
