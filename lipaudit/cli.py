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

from enum import Enum


class Method(str, Enum):
    tn = "tn"
    f4 = "f4"
    fro = "fro"
    certified = "certified"


class Format(str, Enum):
    table = "table"
    json = "json"
    sarif = "sarif"
    github = "github"
    junit = "junit"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"

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
  lipaudit check models/*.onnx --format sarif > lipaudit.sarif
  lipaudit check model.onnx --ignore LIP007 --wide -v
"""


def _version(value: bool):
    if value:
        typer.echo(f"lipaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Settings of ``[tool.lipaudit]`` become the check command's defaults (click's default_map)."""
    if ctx.invoked_subcommand != "check" or ctx.resilient_parsing:
        return
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):  # help never depends on a valid config file
        return
    from lipaudit.config import default_map, load_config
    from lipaudit.errors import LipauditError
    from lipaudit.suppress import parse_waivers

    try:
        table, path = load_config()
        command = ctx.command.get_command(ctx, "check")
        defaults = default_map(command, ctx, table, path) if table else {}
        waivers = parse_waivers(table.get("waive"), f"{path}: [[tool.lipaudit.waive]]") if table else ()
    except LipauditError as exc:
        _error(_err_console(), str(exc))
        raise typer.Exit(2)
    ctx.default_map = {"check": defaults}
    ctx.obj = {"waivers": waivers, "config": path}


def _parse_shape(text: str, label: str = "--input-shape"):
    """``1,3,224,224`` or ``name:1,3,224,224`` (several separated by ';')."""
    from lipaudit.errors import UsageError

    shapes = {}
    for part in text.split(";"):
        name, _, dims = part.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise UsageError(f"{label} {text!r}: expected comma-separated integers, e.g. 1,3,224,224") from None
        if not shape or min(shape) < 1:
            raise UsageError(f"{label} {text!r}: every dimension must be a positive integer")
        shapes[name] = shape
    if list(shapes) == [""]:
        return shapes[""]
    return shapes


def _parse_fraction(text: str, label: str = "--max-increase") -> float:
    from lipaudit.errors import UsageError

    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"{label} {text!r}: expected e.g. 5% or 0.05") from None
    from lipaudit.baseline import check_threshold

    return check_threshold(label, value)


def _parse_strides(items: list[str], label: str = "--stride") -> dict[str, tuple[int, ...]]:
    from lipaudit.errors import UsageError

    out = {}
    for item in items:
        pattern, _, value = item.rpartition("=")
        try:
            out[pattern or "*"] = tuple(int(v) for v in value.split(","))
        except ValueError:
            raise UsageError(f"{label} {item!r}: expected PATTERN=S or PATTERN=SH,SW") from None
        if not all(1 <= v <= MAX_STRIDE for v in out[pattern or "*"]):
            raise UsageError(f"{label} {item!r}: strides must be between 1 and {MAX_STRIDE}")
    return out


MAX_STRIDE = 64  # above any stride a CNN uses (patchify stems use 4-32); the polyphase cost grows with its square


def _err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _source(ctx, name: str) -> str:
    """Where a parameter's value came from: COMMANDLINE, ENVIRONMENT, DEFAULT_MAP or DEFAULT."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source.name if source is not None else "DEFAULT"


def _label(ctx, name: str, flag: str) -> str:
    """How to name a setting in an error: the flag, or the config key it came from."""
    return f"[tool.lipaudit] {flag.lstrip('-')}" if _source(ctx, name) == "DEFAULT_MAP" else flag


@app.command(epilog=EXAMPLES)
@guarded
def check(
    ctx: typer.Context,
    models: List[Path] = typer.Argument(..., help="Model file(s): .onnx, .pt/.pth (state dict, checkpoint, TorchScript), .pt2, .safetensors."),
    method: Method = typer.Option("tn", "--method", "-m", help="Per-layer method composed into the main network number: tn (default), f4, fro, certified."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", help="Extra methods per layer, comma-separated or repeated: exact, f4, fro, fft, symbol."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Network input shape, e.g. 1,3,224,224 (or NAME:1,3,224,224)."),
    output: Optional[List[str]] = typer.Option(None, "--output", help="Certify the map to this value (graph output or any tensor name) only; repeatable."),
    until: Optional[str] = typer.Option(None, "--until", help="Certify the map to this node's output."),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="Certify on this input domain only: LO,HI (e.g. -3,3), one LO,HI pair per channel separated by ';', or 'imagenet' (pixels in [0,1], normalised). Products of input-dependent tensors (gates, attention) are then certified, and the network number holds on the domain only."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random starts (default 0); same seed, same numbers."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iteration cap of HOPM and power iteration."),
    tol: Optional[float] = typer.Option(None, "--tol", help="Relative convergence tolerance of the iterative methods."),
    device: Device = typer.Option("auto", "--device", help="cpu or cuda for the exact-norm power iteration (default auto: cuda when available)."),
    max_lipschitz: Optional[float] = typer.Option(None, "--max-lipschitz", help="Fail (exit 1) when the certified network bound exceeds this."),
    max_layer_norm: Optional[float] = typer.Option(None, "--max-layer-norm", help="Fail when any layer's certified norm exceeds this."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="An earlier JSON report to compare against."),
    max_increase: Optional[str] = typer.Option(None, "--max-increase", help="Allowed growth over --baseline, e.g. 5% (default 0%); needs --baseline."),
    allow_baseline_mismatch: bool = typer.Option(False, "--allow-baseline-mismatch", help="Compare with a baseline computed with other settings anyway (finding LIP030); without it such a baseline is refused (exit 2)."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Report only these finding codes, e.g. LIP001,LIP003 (repeatable)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Drop these finding codes, e.g. LIP007 (repeatable). Run errors (LIP1xx) cannot be dropped."),
    fmt: Format = typer.Option("table", "--format", "-f", help="table (default, on stderr); json, sarif, github or junit (on stdout)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report (table + figure)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the verdict line."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Per-layer details (iterations, convergence, methods tried) and log messages; -vv for debug logs."),
    wide: bool = typer.Option(False, "--wide", help="Show every table column, however wide the terminal."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Parallelism: threads over layers for one model (default: one per core), processes over models for several."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading pickled whole modules and TorchScript (runs code from the file!). Only on the command line, never from a config file."),
    arch: Optional[str] = typer.Option(None, "--arch", help="package.module:factory building the architecture for a state dict."),
    stride: Optional[List[str]] = typer.Option(None, "--stride", help="State dicts: stride per layer name pattern, e.g. 'layer*.conv1=2' (repeatable)."),
    no_timings: bool = typer.Option(False, "--no-timings", help="Write 0 for every time in the JSON (byte-identical reports)."),
    attained: Optional[bool] = typer.Option(None, "--attained/--no-attained", help="Search a verified lower bound (network.attained) by gradient ascent on the Jacobian norm (default: on with --method certified)."),
    expansion_budget: Optional[float] = typer.Option(None, "--expansion-budget", help="Work cap (GMAC) of the expansion certificate in --method certified (default 5; 0: product rule only)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Memory budget, e.g. 8GB (default 4GB): work estimated above it is refused before it starts."),
):
    """Audit model file(s): per-layer bounds, network certificate, gates."""
    code = _check(**locals())
    raise typer.Exit(code)


def _check(**kw) -> int:
    from lipaudit.errors import LipauditError, UsageError
    from lipaudit.baseline import check_threshold
    from lipaudit.budget import DEFAULT_MAX_MEMORY, parse_size
    from lipaudit.runner import EXIT, CheckOptions
    from lipaudit.safe_io import check_distinct_paths, check_output_path
    from lipaudit.suppress import Suppressions, parse_codes

    console = _err_console()
    ctx = kw["ctx"]
    root_obj = ctx.find_root().obj or {}
    try:
        compare = [c.strip() for item in kw["compare"] or [] for c in str(item).split(",") if c.strip()]
        fmt = kw["fmt"].value
        if kw["max_increase"] is not None and kw["baseline"] is None \
                and _source(ctx, "max_increase") == "COMMANDLINE":
            raise UsageError("--max-increase needs --baseline (the report to compare with)")
        opts = CheckOptions(
            method=kw["method"].value,
            compare=tuple(dict.fromkeys(compare)),
            input_shape=_parse_shape(kw["input_shape"], _label(ctx, "input_shape", "--input-shape")) if kw["input_shape"] else None,
            outputs=tuple(kw["output"] or ()),
            until=kw["until"],
            input_range=kw["input_range"],
            seed=kw["seed"],
            iters=kw["iters"],
            tol=kw["tol"],
            device=kw["device"].value,
            max_lipschitz=check_threshold(_label(ctx, "max_lipschitz", "--max-lipschitz"), kw["max_lipschitz"]),
            max_layer_norm=check_threshold(_label(ctx, "max_layer_norm", "--max-layer-norm"), kw["max_layer_norm"]),
            baseline=str(kw["baseline"]) if kw["baseline"] else None,
            max_increase=_parse_fraction(kw["max_increase"] or "0", _label(ctx, "max_increase", "--max-increase")),
            trust_pickle=kw["trust_pickle"],  # never from a config file
            max_memory=parse_size(kw["max_memory"] or DEFAULT_MAX_MEMORY),
            arch=kw["arch"],
            strides=_parse_strides(kw["stride"] or [], _label(ctx, "stride", "--stride")),
            timed=not kw["no_timings"],
            expansion=kw["expansion_budget"],
            attained=kw["attained"],
            suppress=Suppressions(select=parse_codes(kw["select"], _label(ctx, "select", "--select")),
                                  ignore=parse_codes(kw["ignore"], _label(ctx, "ignore", "--ignore")),
                                  waivers=tuple(root_obj.get("waivers", ()))),
            allow_baseline_mismatch=kw["allow_baseline_mismatch"],
        )
        if opts.expansion is not None and not (float(opts.expansion) >= 0):
            raise UsageError("--expansion-budget must be >= 0")
        from lipaudit.engine import AuditSettings

        from lipaudit.runner import input_domain

        try:
            AuditSettings(method=opts.method, compare=opts.compare)  # validate early: a usage error, exit 2
        except UsageError as exc:
            raise UsageError(str(exc).replace("--compare", _label(ctx, "compare", "--compare"))) from None
        input_domain(opts.input_range)
        if opts.iters is not None and opts.iters < 1:
            raise UsageError(f"{_label(ctx, 'iters', '--iters')} must be >= 1")
        if opts.tol is not None and not (0 <= opts.tol < 1):
            raise UsageError(f"{_label(ctx, 'tol', '--tol')} must be in [0, 1)")
        jobs = kw["jobs"]
        if jobs < 0 or (jobs == 0 and _source(ctx, "jobs") != "DEFAULT"):
            raise UsageError(f"{_label(ctx, 'jobs', '--jobs')} must be >= 1")
        jobs = min(jobs, os.cpu_count() or 1)  # never more workers than cores
        # every output is checked before the audit: no complete-looking report when a write will fail
        for flag, key in (("--json", "json_path"), ("--html", "html_path")):
            if kw[key]:
                check_output_path(kw[key], flag)
        check_distinct_paths([("--json", str(kw["json_path"] or "")), ("--html", str(kw["html_path"] or ""))],
                             [str(m) for m in kw["models"]] + ([str(kw["baseline"])] if kw["baseline"] else []))
    except LipauditError as exc:
        _error(console, str(exc))
        return 2
    _logging(kw["verbose"])
    paths = [str(p) for p in kw["models"]]
    from dataclasses import replace

    # one model: threads over its layers (0: one per core); several models with --jobs N: N processes,
    # one thread each, so they do not oversubscribe the cores
    opts = replace(opts, layer_jobs=jobs if len(paths) == 1 else (1 if jobs > 1 else 0))
    reports = _run_all(paths, opts, jobs, quiet=kw["quiet"] or fmt != "table", console=console)
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


def _logging(verbose: int) -> None:
    """-v: lipaudit's own log messages on stderr (INFO); -vv: DEBUG. Library logs stay silent.

    Each run sets this up afresh (the CLI can run several times in one process, e.g. in tests).
    """
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to the sys.stderr of the moment, not the one at creation."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value):
            pass

    logger = logging.getLogger("lipaudit")
    logger.handlers[:] = [h for h in logger.handlers if not getattr(h, "lipaudit_cli", False)]
    if not verbose:
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        return
    logging.disable(logging.NOTSET)  # normal runs disable logging entirely (lipaudit.exits)
    handler = StderrHandler()
    handler.lipaudit_cli = True
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.handlers.append(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


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
    """Write every output; False (no file replaced, one error line) when any file cannot be written.

    Files are staged first, then the streams are written and flushed, then the files are renamed
    into place: a run that cannot write its stdout/stderr (exit 2) leaves no report saying pass.
    """
    from lipaudit.report.json_report import dumps
    from lipaudit.runner import EXIT
    from lipaudit.safe_io import OutputError, StagedWrites

    color = console.is_terminal and not os.environ.get("NO_COLOR") or bool(os.environ.get("FORCE_COLOR"))
    if os.environ.get("NO_COLOR"):
        color = False
    # the terminal's width (COLUMNS when set, as for any CLI); a log or pipe gets a wide table
    width = console.width if console.is_terminal or os.environ.get("COLUMNS") else 200
    # several models: the overall verdict is the worst one (the exit code's), so a reader never takes a pass
    # from the first report when another failed
    worst = max((r["verdict"] for r in reports), key=lambda v: EXIT[v])
    payload = dumps(reports[0]) if len(reports) == 1 else dumps({"verdict": worst, "reports": reports})
    with StagedWrites() as staged:
        try:
            if kw["json_path"]:
                staged.stage(kw["json_path"], payload, "--json")
            if kw["html_path"]:
                from lipaudit.report.html import render_html_multi

                staged.stage(kw["html_path"], render_html_multi(reports), "--html")
        except OutputError as exc:
            _error(console, str(exc))
            return False
        _write_streams(reports, fmt, kw, payload, width, color)
        try:
            staged.commit()
        except OutputError as exc:
            _error(console, str(exc))
            return False
    return True


def _write_streams(reports, fmt, kw, payload, width, color) -> None:
    from lipaudit.report.table import render_multi, render_table, verdict_line

    if fmt != "table":  # machine formats on stdout; stderr carries only error lines, as for json
        sys.stdout.write(payload if fmt == "json" else _machine_format(fmt, reports))
        sys.stdout.flush()
        return
    if kw["quiet"]:
        for r in reports:
            sys.stderr.write(verdict_line(r) + "\n")
    elif len(reports) == 1:
        if reports[0]["verdict"] != "error":  # an error was already printed as one line
            sys.stderr.write(render_table(reports[0], width=width, color=color, wide=kw["wide"],
                                          verbose=kw["verbose"] > 0))
    else:
        sys.stderr.write(render_multi(reports, width=width, color=color))
        for r in reports:
            sys.stderr.write(verdict_line(r) + "\n")
    sys.stderr.flush()


def _machine_format(fmt: str, reports) -> str:
    if fmt == "sarif":
        from lipaudit.report.sarif import render_sarif

        return render_sarif(reports)
    if fmt == "github":
        from lipaudit.report.github import render_github

        return render_github(reports)
    from lipaudit.report.junit import render_junit

    return render_junit(reports)


@app.command()
@guarded
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
@guarded
def codes():
    """List every finding code."""
    from lipaudit.findings import CODES

    for c in CODES.values():
        typer.echo(f"{c.code}  {c.name:<28} {c.severity:<8} {c.summary}")


@app.command()
@guarded
def nodes(
    model: Path = typer.Argument(..., help="A model file with a graph: .onnx, .pt2, TorchScript (or a state dict with --arch)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Network input shape, e.g. 1,3,224,224."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading pickled whole modules (runs code from the file!)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="package.module:factory building the architecture for a state dict."),
):
    """List the nodes of a model: names (for --until), op, source module, input and output values with shapes (for --output)."""
    from lipaudit.errors import LipauditError, UsageError

    console = _err_console()
    try:
        if fmt not in ("table", "json"):
            raise UsageError(f"--format {fmt!r}: choose table or json")
        from lipaudit.loaders import LoadOptions, load_model

        shape = _parse_shape(input_shape) if input_shape else None
        loaded = load_model(str(model), LoadOptions(input_shape=shape, trust_pickle=trust_pickle, arch=arch))
        if loaded.graph is None:
            raise UsageError(f"{model}: the file holds weights only, no graph (give --arch module:factory)")
        from lipaudit.report.nodes import render_nodes_json, render_nodes_table

        text = (render_nodes_json(str(model), loaded.graph) if fmt == "json"
                else render_nodes_table(str(model), loaded.graph))
    except LipauditError as exc:
        _error(console, str(exc))
        raise typer.Exit(2)
    except Exception as exc:  # never a traceback
        _error(console, f"internal error: {type(exc).__name__}: {exc}")
        raise typer.Exit(2)
    sys.stdout.write(text)


@app.command()
@guarded
def ops():
    """List the ONNX operators lipaudit has a Lipschitz rule for (refusals included)."""
    from lipaudit.ops import load_rules
    from lipaudit.ops.refused import DISCONTINUOUS, UNBOUNDED

    rules = load_rules()
    supported = sorted(op for op in rules if op not in UNBOUNDED and op not in DISCONTINUOUS and rules[op].kind != "domain")
    typer.echo("supported: " + ", ".join(supported))
    typer.echo("on --input-range only (no global constant): " + ", ".join(sorted(op for op in rules if rules[op].kind == "domain")))
    typer.echo("without interval bounds (a product needing them is refused on a domain): "
               + (", ".join(sorted(op for op in supported if rules[op].interval is None)) or "none"))
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
        code = app(standalone_mode=False)  # click's usage errors come here, to be printed as one line
    except (KeyboardInterrupt, typer.Abort):  # outside a command (e.g. while parsing)
        say("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # typer vendors click: its exceptions are recognised by what they offer, not by class
        if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
            sys.stderr.write(exc.ctx.get_help() + "\n")
            sys.exit(2)
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None and exc.exit_code == 2 else ""
            say(f"error: {exc.format_message()}{hint}")
            sys.exit(exc.exit_code or 2)
        say(f"error: internal error: {type(exc).__name__}: {exc}")
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
