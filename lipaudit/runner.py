"""One audit from a path to a finished report dict: load, audit, gates, report.

Every failure becomes a report with verdict ``error`` and a finding; nothing
escapes as a traceback. Used by the CLI, and by ``--jobs`` worker processes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lipaudit.errors import LipauditError, UsageError
from lipaudit.budget import DEFAULT_MAX_MEMORY
from lipaudit.findings import Finding
from lipaudit.suppress import Suppressions

EXIT = {"pass": 0, "fail": 1, "error": 2}
log = logging.getLogger("lipaudit.runner")


@dataclass
class CheckOptions:
    method: str = "tn"
    compare: tuple[str, ...] = ()
    input_shape: Any = None
    outputs: tuple[str, ...] = ()
    until: str | None = None
    seed: int = 0
    iters: int | None = None
    tol: float | None = None
    device: str = "auto"
    max_lipschitz: float | None = None
    max_layer_norm: float | None = None
    baseline: str | None = None
    max_increase: float = 0.0
    trust_pickle: bool = False
    arch: str | None = None
    strides: dict[str, tuple[int, ...]] = field(default_factory=dict)
    timed: bool = True
    layer_jobs: int = 0  # threads over layers (0: one per core)
    input_range: Any = None  # "LO,HI", "lo,hi;lo,hi;...", "imagenet", or a lipaudit.domain.InputDomain
    expansion: float | None = None  # expansion certificate budget in GMAC (None: default with certified, 0: off)
    attained: bool | None = None  # search the attained lower bound (None: with --method certified)
    max_memory: int | None = DEFAULT_MAX_MEMORY  # bytes (lipaudit.budget); None: no budget
    suppress: Suppressions = field(default_factory=Suppressions)  # --select/--ignore/waivers
    allow_baseline_mismatch: bool = False  # compare with a baseline computed differently (finding LIP030)


def audit_settings(opts: CheckOptions):
    from lipaudit.bounds import BoundSettings, HopmSettings, PowerSettings
    from lipaudit.engine import AuditSettings

    hopm = HopmSettings(seed=opts.seed)
    power = PowerSettings(seed=opts.seed, device=opts.device)
    if opts.iters is not None:
        hopm = HopmSettings(seed=opts.seed, max_iters=opts.iters, tol=hopm.tol if opts.tol is None else opts.tol)
        power = PowerSettings(seed=opts.seed, device=opts.device, max_iters=opts.iters, tol=power.tol if opts.tol is None else opts.tol)
    elif opts.tol is not None:
        hopm = HopmSettings(seed=opts.seed, tol=opts.tol)
        power = PowerSettings(seed=opts.seed, device=opts.device, tol=opts.tol)
    return AuditSettings(
        method=opts.method, compare=tuple(opts.compare), outputs=tuple(opts.outputs), until=opts.until,
        bounds=BoundSettings(hopm=hopm, power=power), jobs=opts.layer_jobs, input_range=input_domain(opts.input_range),
        expansion=opts.expansion,
    )


def input_domain(value):
    """``--input-range`` as an :class:`~lipaudit.domain.InputDomain` (None stays None)."""
    from lipaudit.domain import InputDomain, parse_input_range

    if value is None or isinstance(value, InputDomain):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return InputDomain((float(value[0]),), (float(value[1]),), f"{value[0]},{value[1]}")
    return parse_input_range(str(value))


def settings_json(opts: CheckOptions, settings) -> dict[str, Any]:
    h, p = settings.bounds.hopm, settings.bounds.power
    return {
        "method": opts.method,
        "compare": list(opts.compare),
        "seed": opts.seed,
        "outputs": list(opts.outputs),
        "until": opts.until,
        "input_range": settings.input_range.to_json() if settings.input_range is not None else None,
        "device": opts.device,
        "hopm": {"restarts": h.restarts, "fourier_starts": h.fourier_starts, "max_iters": h.max_iters, "tol": h.tol,
                 "schedule": [list(x) for x in h.schedule]},
        "power": {"max_iters": p.max_iters, "tol": p.tol, "block": p.block},
        "exact_rtol": settings.bounds.exact_rtol,
        "expansion_budget": settings.expansion_budget,
        "attained": opts.attained if opts.attained is not None else opts.method == "certified",
        "gates": {"max_lipschitz": opts.max_lipschitz, "max_layer_norm": opts.max_layer_norm,
                  "baseline": opts.baseline, "max_increase": opts.max_increase},
        "suppress": opts.suppress.to_json(),
    }


def run_check(path: str, opts: CheckOptions, progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Audit one model file; always returns a report (verdict pass, fail or error)."""
    state = _RunState(path)
    try:
        report = _audit_report(path, opts, progress, state)
    except LipauditError as exc:
        report = _error_report(state.model, state.settings, exc, opts)
    except MemoryError:
        report = _error_report(state.model, state.settings, LipauditError("out of memory"), opts, code="LIP104")
    except Exception as exc:  # never a traceback, never a pass
        report = _error_report(state.model, state.settings, LipauditError(f"internal error: {type(exc).__name__}: {exc}"), opts, code="LIP104")
    return _finish(report, state, opts)


def audit_report(source: Any, opts: CheckOptions, progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """:func:`run_check` for a path or an in-memory model (``onnx.ModelProto``, ``torch.nn.Module``),
    raising :class:`LipauditError` instead of returning an error report. The API's entry point."""
    state = _RunState(source if isinstance(source, (str, os.PathLike)) else None)
    return _finish(_audit_report(source, opts, progress, state), state, opts)


class _RunState:
    """What is known so far, so that an error report still names the model and settings."""

    def __init__(self, path):
        self.t_start = time.perf_counter()
        self.model: dict[str, Any] = {"path": str(path) if path is not None else "<in memory>", "sha256": None,
                                      "format": None, "input_shape": None}
        self.settings: dict[str, Any] = {}
        self.timings: dict[str, float] = {}


def _finish(report: dict[str, Any], state: _RunState, opts: CheckOptions) -> dict[str, Any]:
    report["elapsed_s"] = round(time.perf_counter() - state.t_start, 4) if opts.timed else 0.0
    if "timings" in report:
        report["timings"] = {k: (round(v, 4) if opts.timed else 0.0) for k, v in state.timings.items()}
    return report


def _audit_report(source: Any, opts: CheckOptions, progress, state: _RunState) -> dict[str, Any]:
    from lipaudit.loaders import sha256

    model, timings = state.model, state.timings
    state.settings = {"method": opts.method, "seed": opts.seed, "compare": list(opts.compare)}
    if opts.device == "cuda":
        from lipaudit.bounds.power import resolve_device

        try:
            resolve_device("cuda")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    settings = audit_settings(opts)
    state.settings = settings_dict = settings_json(opts, settings)
    baseline = _read_baseline(opts.baseline) if opts.baseline else None
    t0 = time.perf_counter()
    if isinstance(source, (str, os.PathLike)):
        from lipaudit.budget import limit

        with limit(opts.max_memory):
            loaded = _load(str(source), opts)
        digest = sha256(str(source))
    else:
        from lipaudit.loaders.memory import describe, load_in_memory

        model["path"] = describe(source)
        loaded, digest = load_in_memory(source, _load_options(opts))
    timings["load_s"] = time.perf_counter() - t0
    from lipaudit.safe_io import clean_text

    log.info("loaded %s as %s in %.2fs", clean_text(model["path"]), loaded.format, timings["load_s"])
    model.update(sha256=digest, format=loaded.format, opset=loaded.meta.get("opset"),
                 producer=loaded.meta.get("producer"), has_graph=loaded.graph is not None)
    t0 = time.perf_counter()
    if loaded.graph is not None:
        from lipaudit.engine import audit

        graph = loaded.graph
        model["inputs"] = list(graph.inputs)
        model["input_shape"] = list(graph.shapes.get(graph.inputs[0], ())) or None
        from lipaudit.budget import check_graph

        check_graph(graph, settings, opts.max_memory)  # refuse before anything is allocated
        result = audit(graph, settings, progress)
    else:
        from lipaudit.loaders.state_dict import audit_weights

        result = audit_weights(loaded.weights, settings, progress)
        model["input_shape"] = None
    audit_wall = time.perf_counter() - t0
    timings["bounds_s"] = result.timings.get("bounds_s", audit_wall)
    timings["certificate_s"] = result.timings.get("certificate_s", max(audit_wall - timings["bounds_s"], 0.0))
    model["outputs"] = list(result.outputs)
    attained_notes = []
    if "certified" in result.network and (opts.attained if opts.attained is not None else opts.method == "certified"):
        t0 = time.perf_counter()
        attained_notes = _attained(loaded, result, opts)
        timings["attained_s"] = time.perf_counter() - t0
    log.info("%d layers bounded in %.2fs, certificate in %.2fs; network values: %s", len(result.layers),
             timings["bounds_s"], timings["certificate_s"],
             ", ".join(f"{k}={v.value:.6g} ({v.kind.value})" for k, v in result.network.items()) or "none")
    for layer in result.layers:
        log.debug("layer %s: %s", clean_text(layer.name), ", ".join(f"{m}={r.value:.6g} {r.kind.value}" for m, r in layer.values.items()))
    baseline_notes = _match_baseline(baseline, model, settings_dict, opts) if baseline is not None else []
    findings = _findings(result, opts, baseline, loaded.graph is not None) + baseline_notes + attained_notes
    from lipaudit import suppress
    from lipaudit.policy import verdict as decide

    findings, suppressed = suppress.apply(findings, opts.suppress)
    verdict = decide(findings)
    if any(f.code == "LIP106" for f in findings):
        verdict = "error"
    t0 = time.perf_counter()
    from lipaudit.report.json_report import build_report

    report = build_report(result, model=model, settings=settings_dict, findings=findings, verdict=verdict,
                          elapsed_s=0.0, timings=timings, timed=opts.timed)
    _add_context(report, baseline, opts, suppressed)
    timings["report_s"] = time.perf_counter() - t0
    return report


def _load_options(opts: CheckOptions):
    from lipaudit.loaders import LoadOptions

    return LoadOptions(input_shape=opts.input_shape, trust_pickle=opts.trust_pickle, arch=opts.arch,
                       strides=opts.strides, max_bytes=opts.max_memory)


def _attained(loaded, result, opts: CheckOptions) -> list[Finding]:
    """Add ``network.attained`` (kind lower) to the result, or a finding saying why there is none."""
    from lipaudit.certificate.attained import AttainedSettings, AttainedUnavailable, attained_for
    from lipaudit.engine import NetworkValue
    from lipaudit.values import Kind

    graph = loaded.graph
    low = high = None
    domain = getattr(result, "domain", None)
    if domain is not None:
        low, high = domain.bounds_for(tuple(graph.shapes.get(graph.inputs[0], ())))
    try:
        found = attained_for(loaded, graph, list(result.outputs),
                             AttainedSettings(seed=opts.seed, low=low, high=high))
    except AttainedUnavailable as exc:
        return [Finding("LIP040", f"no attained value: {exc}")]
    except Exception as exc:  # the lower bound never fails the audit
        return [Finding("LIP040", f"no attained value: {type(exc).__name__}: {str(exc)[:200]}")]
    detail = {"search": {**found.detail, "time_s": round(found.time_s, 4) if opts.timed else 0.0}}
    cert = result.network.get("certified")
    if cert is not None and found.value > 0:
        detail["gap"] = cert.value / found.value
    result.network["attained"] = NetworkValue(found.value, Kind.LOWER, {}, [],
                                              valid_on=domain.to_json() if domain is not None else None,
                                              detail=detail)
    if cert is not None and found.value > cert.value * (1 + 1e-9):
        # a verified secant above a certificate: one of them is wrong; never hide it
        return [Finding("LIP041", f"the attained value {found.value:.6g} exceeds the certified bound "
                                  f"{cert.value:.6g}: the certificate is unsound for this model")]
    return []


def _load(path: str, opts: CheckOptions):
    from lipaudit.loaders import load_model

    return load_model(path, _load_options(opts))


def _findings(result, opts: CheckOptions, baseline, has_graph: bool) -> list[Finding]:
    from lipaudit.policy import Gates, evaluate

    if not has_graph:
        unused = "; --input-range has no effect without a graph" if opts.input_range is not None else ""
        findings = [Finding("LIP008", "no architecture in this file: per-layer values only, no network certificate "
                                      "(use an ONNX/.pt2/TorchScript file or --arch module:factory)" + unused)]
        if result.notes:
            names = [name for name, _ in result.notes]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            findings.append(Finding("LIP009", f"stride 1 assumed for {len(names)} conv layer(s) ({shown}); "
                                              "give real strides with --stride PATTERN=S"))
        if opts.max_lipschitz is not None or baseline is not None:
            findings.append(Finding("LIP106", "--max-lipschitz/--baseline need a network certificate, which a file "
                                              "without a graph cannot give"))
        return findings + evaluate(result, Gates(max_layer_norm=opts.max_layer_norm))
    return evaluate(result, Gates(opts.max_lipschitz, opts.max_layer_norm, baseline, opts.max_increase))


def _read_baseline(path: str) -> dict[str, Any]:
    from lipaudit.baseline import read_baseline

    return read_baseline(path)


def _match_baseline(baseline, model, settings_dict, opts: CheckOptions) -> list[Finding]:
    """Refuse a baseline computed differently (exit 2) unless allowed; a version change is a note."""
    from lipaudit import __version__
    from lipaudit.baseline_match import basis, differences, version_note
    from lipaudit.errors import BaselineMismatch

    old = basis(baseline)
    new = basis({"settings": settings_dict, "model": model, "tool": {"version": __version__}})
    diffs = differences(old, new)
    notes = []
    if diffs:
        listed = "; ".join(diffs)
        if not opts.allow_baseline_mismatch:
            raise BaselineMismatch(f"--baseline {opts.baseline} differs from this run (baseline -> this run): {listed}; "
                                   "not compared (regenerate it alike, or pass --allow-baseline-mismatch)")
        notes.append(Finding("LIP030", f"compared anyway although the baseline differs: {listed}"))
    note = version_note(old, new)
    if note:
        notes.append(Finding("LIP031", note))
    return notes


def _add_context(report: dict[str, Any], baseline, opts: CheckOptions, suppressed: dict[str, int]) -> None:
    """What the numbers depend on, the baseline compared with, and what was suppressed."""
    from lipaudit.baseline_match import basis

    report["basis"] = basis(report)
    if suppressed:
        report["suppressed"] = suppressed
    if baseline is not None:
        old_cert = baseline["network"]["certified"]["value"]
        new_cert = report["network"].get("certified", {}).get("value")
        report["baseline"] = {
            "path": opts.baseline,
            "model_path": (baseline.get("model") or {}).get("path"),
            "model_sha256": (baseline.get("model") or {}).get("sha256"),
            "lipaudit_version": (baseline.get("tool") or {}).get("version"),
            "certified": old_cert,
            "increase": (new_cert / old_cert - 1) if new_cert is not None and old_cert > 0 else None,
        }


def _error_report(model, settings_dict, exc: LipauditError, opts: CheckOptions, code: str | None = None) -> dict[str, Any]:
    from lipaudit.report.json_report import build_report

    if code is None:
        code = exc.code
    node = getattr(exc, "node", None)
    finding = Finding(code, str(exc), node=node)
    if model.get("sha256") is None and os.path.isfile(model["path"]):
        from lipaudit.loaders import sha256

        model["sha256"] = sha256(model["path"])
    return build_report(None, model=model, settings=settings_dict, findings=[finding], verdict="error",
                        elapsed_s=0.0, timed=opts.timed)
