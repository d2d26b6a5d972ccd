"""The Python API: :func:`audit` (what ``lipaudit check`` runs).

Errors are raised as the exception classes of :mod:`lipaudit.errors`, the
same ones the CLI turns into exit code 2; a failed gate is not an error but
``report.verdict == "fail"``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from lipaudit.errors import DataError, UsageError
from lipaudit.report.view import Report

ProgressCallback = Callable[[int, int, str], None]
Shape = Union[Sequence[int], Mapping[str, Sequence[int]]]


def audit(
    model: Any,
    *,
    input_shape: Shape | None = None,
    method: str = "tn",
    compare: Iterable[str] | str = (),
    outputs: Iterable[str] | str = (),
    until: str | None = None,
    input_range: Any = None,
    seed: int = 0,
    jobs: int = 0,
    progress: ProgressCallback | bool | None = None,
    max_lipschitz: float | None = None,
    max_layer_norm: float | None = None,
    baseline: str | os.PathLike | None = None,
    max_increase: float = 0.0,
    iters: int | None = None,
    tol: float | None = None,
    device: str = "auto",
    trust_pickle: bool = False,
    arch: str | None = None,
    attained: bool | None = None,
    max_memory: int | str | None = "4GB",
    timings: bool = True,
) -> Report:
    """Audit a model: per-layer bounds, network Lipschitz constants, findings and gates.

    Args:
        model: a file path (``.onnx``, ``.pt2``, TorchScript, state dict, ...), an ``onnx.ModelProto``,
            or a ``torch.nn.Module``. A module is exported to ONNX in memory and needs ``input_shape``;
            its BatchNorm layers are audited with their running statistics (eval semantics) whatever
            mode the module is in, and the module is left unchanged (modes and buffers).
        input_shape: the network input's shape, e.g. ``(1, 3, 32, 32)`` (or ``{input_name: shape}``).
        method: per-layer method of the main network number: ``tn``, ``f4``, ``fro`` or ``certified``.
        compare: extra per-layer methods: ``exact``, ``f4``, ``fro``, ``fft``, ``symbol``.
        outputs: certify the map to these values only (default: every graph output).
        until: certify the map to this node's outputs.
        input_range: a stated input domain, ``(lo, hi)``, ``"lo,hi;lo,hi;lo,hi"`` per channel, or ``"imagenet"``: products of input-dependent tensors are certified on it,
            and the network number then holds on that box only (``network.certified.valid_on``).
        seed: seed of the random starts; same seed and ``jobs``, same numbers.
        jobs: threads over layers (0: one per CPU core).
        progress: ``progress(done, total, layer_name)`` called as layers finish, or True for a bar on stderr.
        max_lipschitz, max_layer_norm, baseline, max_increase: the gates of ``lipaudit check``;
            a failed gate gives ``verdict == "fail"``.
        iters, tol, device: solver settings (``--iters``, ``--tol``, ``--device``).
        trust_pickle, arch: as the CLI flags; loading pickled code runs code from the file.
        attained: search a verified lower bound (``network.attained``) as ``--attained`` does
            (None: only with ``method="certified"``, like the CLI).
        max_memory: the memory budget (``--max-memory``): bytes, or text such as ``"8GB"``; None: no budget.
            Work estimated above it raises BudgetError before it starts.
        timings: False writes 0 for every time (byte-identical reports).

    Returns:
        a :class:`lipaudit.Report`; ``report.to_dict()`` is the JSON report ``lipaudit check --json`` writes.

    Raises:
        ModelLoadError, InputShapeError, UnsupportedOpError, UsageError, BaselineError: as the CLI's exit 2.
    """
    from lipaudit.runner import audit_report

    opts = check_options(model, input_shape=input_shape, method=method, compare=compare, outputs=outputs,
                         until=until, input_range=input_range, seed=seed, jobs=jobs, max_lipschitz=max_lipschitz,
                         max_layer_norm=max_layer_norm, baseline=baseline, max_increase=max_increase, iters=iters,
                         tol=tol, device=device, trust_pickle=trust_pickle, arch=arch, attained=attained,
                         max_memory=max_memory, timings=timings)
    if progress is True:
        return Report(_with_bar(lambda cb: audit_report(model, opts, cb)))
    if progress is not None and not callable(progress):
        raise UsageError("progress must be a callable progress(done, total, name), True, or None")
    return Report(audit_report(model, opts, progress or None))


def check_options(model: Any, *, input_shape, method, compare, outputs, until, input_range, seed, jobs,
                  max_lipschitz=None, max_layer_norm=None, baseline=None, max_increase=0.0, iters=None, tol=None,
                  device="auto", trust_pickle=False, arch=None, attained=None, max_memory="4GB", timings=True):
    """Validated :class:`lipaudit.runner.CheckOptions` from API arguments (UsageError on bad values)."""
    import math

    from lipaudit.engine import AuditSettings
    from lipaudit.runner import CheckOptions

    compare_t = _names(compare, "compare", split=True)
    AuditSettings(method=method, compare=compare_t)  # raises UsageError for unknown methods
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an integer, not {seed!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise UsageError(f"jobs must be an integer >= 0 (0: one thread per core), not {jobs!r}")
    if iters is not None and (not isinstance(iters, int) or iters < 1):
        raise UsageError("iters must be an integer >= 1")
    if tol is not None and not (0 <= tol < 1):
        raise UsageError("tol must be in [0, 1)")
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"device {device!r}: choose auto, cpu or cuda")
    for name, v in (("max_lipschitz", max_lipschitz), ("max_layer_norm", max_layer_norm)):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise UsageError(f"{name} must be a finite number >= 0, not {v!r}")
    if not (isinstance(max_increase, (int, float)) and math.isfinite(max_increase) and max_increase >= 0):
        raise UsageError(f"max_increase must be a finite fraction >= 0 (0.05 for 5%), not {max_increase!r}")
    if input_range is not None:
        from lipaudit.runner import input_domain

        try:
            input_range = input_domain(input_range)  # (lo, hi), "lo,hi;lo,hi;...", "imagenet" or an InputDomain
        except (TypeError, ValueError):
            raise UsageError(f"input_range must be (lo, hi), 'LO,HI', 'imagenet' or per-channel pairs, not {input_range!r}") from None
    return CheckOptions(
        method=method, compare=compare_t, input_shape=_shape(input_shape), outputs=_names(outputs, "outputs"),
        until=until, seed=seed, iters=iters, tol=tol, device=device,
        max_lipschitz=None if max_lipschitz is None else float(max_lipschitz),
        max_layer_norm=None if max_layer_norm is None else float(max_layer_norm),
        baseline=None if baseline is None else os.fspath(baseline), max_increase=float(max_increase),
        trust_pickle=bool(trust_pickle), arch=arch, timed=bool(timings), layer_jobs=jobs, input_range=input_range,
        attained=None if attained is None else bool(attained), max_memory=_budget(max_memory),
    )


def _budget(value) -> int | None:
    from lipaudit.budget import parse_size

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"max_memory must be bytes (int), a size such as '8GB', or None, not {value!r}")
    return parse_size(str(value))


def _names(value, what: str, split: bool = False) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise UsageError(f"{what}: expected names (strings), got {item!r}")
        out += [p.strip() for p in item.split(",") if p.strip()] if split else [item]
    return tuple(dict.fromkeys(out))


def _shape(value):
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _shape(v) for k, v in value.items()}
    try:
        shape = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        raise UsageError(f"input_shape must be a sequence of positive integers, e.g. (1, 3, 32, 32), not {value!r}") from None
    if not shape or min(shape) < 1:
        raise UsageError(f"input_shape {shape}: every dimension must be a positive integer")
    return shape


def _with_bar(run: Callable[[ProgressCallback], Any]):
    """A rich progress bar on stderr while ``run(callback)`` runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True, highlight=False), transient=True) as bar:
        task = bar.add_task("bounding layers", total=None)

        def callback(done: int, total: int, name: str) -> None:
            bar.update(task, total=total, completed=done)

        return run(callback)


def certify(
    model: Any,
    x: Any,
    y: Any,
    *,
    eps: Iterable[float] | float = (0.05, 0.1, 0.2),
    input_shape: Shape | None = None,
    outputs: Iterable[str] | str = (),
    input_range: Any = None,
    method: str = "certified",
    batch_size: int = 256,
    min_certified_accuracy: Mapping[float, float] | None = None,
    seed: int = 0,
    jobs: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    trust_pickle: bool = False,
    timings: bool = True,
) -> Report:
    """Certified robustness of a classifier on data: clean accuracy, certified accuracy per eps, radii.

    The model is audited (as :func:`audit`) and run with onnxruntime on ``x``. ``L`` is the network's
    ``certified`` composition for the logits (a guaranteed upper bound on their l2 Lipschitz constant at
    the audited input shape); each sample's certified radius is ``margin / (sqrt(2) L)``, with ``margin``
    the gap between its two largest logits. A sample is certified at ``eps`` when it is classified
    correctly and its radius exceeds ``eps``.

    Args:
        model: an ``.onnx`` path, an ``onnx.ModelProto``, a ``torch.nn.Module``, or a file with a graph that
            ``lipaudit check`` exports to ONNX (``.pt2``; TorchScript with ``trust_pickle``). Anything not ONNX
            is exported in memory once and onnxruntime runs that export, so the audited and the evaluated
            model are the same. A module's ``input_shape`` defaults to ``(1, *x.shape[1:])``.
        x: inputs as the model takes them, shape ``(N, *sample_shape)``.
        y: integer labels, shape ``(N,)``.
        eps: l2 radii.
        outputs: the logits output when the model has several.
        input_range: a stated input domain (as :func:`audit`). ``L`` then holds on that box only, so every
            sample must lie inside it (DataError otherwise) and a radius certifies the part of the ball inside it.
        method: the audit's main method; ``certified`` (default) adds the FFT bound, the tightest ``L``.
        batch_size: samples per onnxruntime call (a model with a fixed batch size uses that).
        min_certified_accuracy: ``{eps: accuracy}`` gates; a failure gives ``verdict == "fail"`` and LIP020.
        progress: ``progress(stage, done, total)`` with stage ``"bounds"`` or ``"inference"``.
        trust_pickle: allow TorchScript (code from the file runs), as ``--trust-pickle``.

    Returns:
        a :class:`Report` whose ``robustness`` holds the summary and the per-sample arrays
        (``margins``, ``radii``, ``predictions``, ``labels``).

    Raises:
        DataError: ``x``/``y`` unusable (shapes, labels out of range, NaN), or the model's logits are.
        UsageError, ModelLoadError, UnsupportedOpError, InputShapeError: as :func:`audit`; also when the
            network has no certificate for the logits.
    """
    import numpy as np

    from lipaudit import robustness as rb
    from lipaudit.inference import OnnxRunner, proto_bytes
    from lipaudit.loaders.memory import describe, export_module, is_model_proto, is_torch_module
    from lipaudit.runner import audit_report

    eps_list = rb.check_eps([eps] if isinstance(eps, (int, float)) else list(eps))
    gates = {float(e): float(a) for e, a in (min_certified_accuracy or {}).items()}
    for e, a in gates.items():
        rb.check_eps([e])
        if not 0 <= a <= 1:
            raise UsageError(f"min_certified_accuracy {a} at eps {e}: an accuracy is in [0, 1]")
    eps_list = sorted(set(eps_list) | set(gates))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be an integer >= 1, not {batch_size!r}")
    x_arr = np.asarray(x)
    if x_arr.ndim < 2:
        raise DataError(f"x has shape {tuple(x_arr.shape)}: expected (N, *input shape of one sample)")
    label = None  # (path, format, sha256) shown for a model that is audited as its ONNX export
    if is_torch_module(model):
        label = (describe(model), "torch-module", None)
        shape = _shape(input_shape) or (1, *x_arr.shape[1:])
        source: Any = export_module(model, shape, label[0])
        input_shape = None
    elif isinstance(model, (str, os.PathLike)) and not os.fspath(model).lower().endswith(".onnx"):
        source, label = _exported_graph(os.fspath(model), _shape(input_shape), trust_pickle)
    elif is_model_proto(model) or isinstance(model, (str, os.PathLike)):
        source = model
    else:
        raise UsageError(f"cannot certify a {type(model).__name__}: give an .onnx path, an onnx.ModelProto or a torch.nn.Module")
    opts = check_options(source, input_shape=input_shape, method=method, compare=(), outputs=outputs, until=None,
                         input_range=input_range, seed=seed, jobs=jobs, attained=False, timings=timings)
    bounds_cb = (lambda done, total, name: progress("bounds", done, total)) if progress else None
    report = audit_report(source, opts, bounds_cb)
    if label is not None:
        report["model"].update(path=label[0], format=label[1], sha256=label[2])
    net = report["network"]
    if "certified" not in net:
        why = net.get("unavailable", {}).get("message", "no network certificate")
        raise UsageError(f"certify needs a certified Lipschitz bound of the logits: {why}")
    if len(report["model"]["outputs"]) != 1:
        raise UsageError(f"certify needs one logits output; the model has {', '.join(report['model']['outputs'])}: "
                         "choose one with outputs= (--output)")
    output = report["model"]["outputs"][0]
    cert = net["certified"]
    lipschitz = {"value": cert["value"], "kind": cert["kind"], "composition": "certified", "output": output,
                 "valid_for": "input shape " + "x".join(map(str, report["model"]["input_shape"] or []))}
    if "valid_on" in cert:  # a bound on a stated input domain certifies only balls inside it
        lipschitz["valid_on"] = cert["valid_on"]
        lipschitz["note"] = "L holds on the stated input domain only: a radius certifies the part of the ball inside it"
    sample_shape = tuple(report["model"]["input_shape"][1:])
    x_arr = rb.check_inputs(x_arr, sample_shape)
    if "valid_on" in cert:  # L holds on the domain only: every sample must lie in it
        rb.check_inside(x_arr, *opts.input_range.bounds_for((1, *sample_shape)))
    y_arr = rb.check_labels(y, x_arr.shape[0])
    runner = OnnxRunner(source if isinstance(source, (str, os.PathLike)) else proto_bytes(source), output,
                        threads=jobs)
    infer_cb = (lambda done, total: progress("inference", done, total)) if progress else None
    logits = runner.logits(x_arr, batch_size, infer_cb)
    section, samples = rb.summarise(logits, y_arr, lipschitz, eps_list)
    report["robustness"] = section
    _gate_accuracy(report, section, gates)
    return Report(report, samples)


def _exported_graph(path: str, input_shape, trust_pickle: bool):
    """A torch file's graph as the ONNX ModelProto the loader exported, and the file's label."""
    from lipaudit.loaders import LoadOptions, load_model, sha256

    loaded = load_model(path, LoadOptions(input_shape=input_shape, trust_pickle=bool(trust_pickle)))
    proto = getattr(loaded, "onnx_model", None)
    if loaded.graph is None or proto is None:
        raise UsageError(f"{path}: holds weights without a graph; certify needs the network "
                         "(ONNX, .pt2, TorchScript, or a torch.nn.Module)")
    return proto, (path, loaded.format, sha256(path))


def _gate_accuracy(report: dict, section: dict, gates: Mapping[float, float]) -> None:
    from lipaudit.findings import Finding
    from lipaudit.robustness import eps_key

    for e, need in sorted(gates.items()):
        got = section["certified_accuracy"][eps_key(e)]
        if got < need:
            report["findings"].append(Finding(
                "LIP020", f"certified accuracy {got:.4f} at eps {e:g} is below {need:g}", value=got, threshold=need,
            ).to_json())
            report["verdict"] = "fail"
