"""The Python API: :func:`audit` (what ``lipaudit check`` runs).

Errors are raised as the exception classes of :mod:`lipaudit.errors`, the
same ones the CLI turns into exit code 2; a failed gate is not an error but
``report.verdict == "fail"``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from lipaudit.errors import UsageError
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
    input_range: tuple[float, float] | None = None,
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
        input_range: a stated input domain ``(lo, hi)``: products of input-dependent tensors are certified on it,
            and the network number then holds on that box only (``network.certified.valid_on``).
        seed: seed of the random starts; same seed and ``jobs``, same numbers.
        jobs: threads over layers (0: one per CPU core).
        progress: ``progress(done, total, layer_name)`` called as layers finish, or True for a bar on stderr.
        max_lipschitz, max_layer_norm, baseline, max_increase: the gates of ``lipaudit check``;
            a failed gate gives ``verdict == "fail"``.
        iters, tol, device: solver settings (``--iters``, ``--tol``, ``--device``).
        trust_pickle, arch: as the CLI flags; loading pickled code runs code from the file.
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
                         tol=tol, device=device, trust_pickle=trust_pickle, arch=arch, timings=timings)
    if progress is True:
        return Report(_with_bar(lambda cb: audit_report(model, opts, cb)))
    if progress is not None and not callable(progress):
        raise UsageError("progress must be a callable progress(done, total, name), True, or None")
    return Report(audit_report(model, opts, progress or None))


def check_options(model: Any, *, input_shape, method, compare, outputs, until, input_range, seed, jobs,
                  max_lipschitz=None, max_layer_norm=None, baseline=None, max_increase=0.0, iters=None, tol=None,
                  device="auto", trust_pickle=False, arch=None, timings=True):
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
        try:
            lo, hi = (float(v) for v in input_range)
        except (TypeError, ValueError):
            raise UsageError(f"input_range must be (lo, hi), not {input_range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise UsageError(f"input_range ({lo}, {hi}): need finite lo <= hi")
        input_range = (lo, hi)
    return CheckOptions(
        method=method, compare=compare_t, input_shape=_shape(input_shape), outputs=_names(outputs, "outputs"),
        until=until, seed=seed, iters=iters, tol=tol, device=device,
        max_lipschitz=None if max_lipschitz is None else float(max_lipschitz),
        max_layer_norm=None if max_layer_norm is None else float(max_layer_norm),
        baseline=None if baseline is None else os.fspath(baseline), max_increase=float(max_increase),
        trust_pickle=bool(trust_pickle), arch=arch, timed=bool(timings), layer_jobs=jobs, input_range=input_range,
    )


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
