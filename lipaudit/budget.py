"""Resource budgets: refuse work whose memory estimate, from shapes alone, is above the budget.

The default budget is 4 GB (``--max-memory``). Estimates are taken before anything is allocated:
the unpacked size of an archive, the size of a folded constant, the shape of every value in the
graph, and each per-layer method's working set (:func:`method_bytes`). A refusal is one line that
names the node, the estimate and the flag that raises the budget.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from contextvars import ContextVar

from lipaudit.errors import LipauditError

DEFAULT_MAX_MEMORY = 4 * 10**9
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class BudgetError(LipauditError):
    """The work asked for needs more memory (or time) than the budget allows."""

    code = "LIP107"


def parse_size(text: str) -> int:
    """``4GB``, ``500MB``, ``2GiB``, ``1e9`` -> bytes; a usage error otherwise."""
    from lipaudit.errors import UsageError

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise UsageError(f"--max-memory {text!r}: expected a size such as 4GB, 500MB or 2GiB")
    value = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise UsageError(f"--max-memory {text!r}: must be a positive, finite size")
    return int(value)


def human(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def refuse(what: str, need: float, budget: int) -> BudgetError:
    return BudgetError(f"{what} needs about {human(need)}, above the memory budget of {human(budget)}; "
                       f"raise it with --max-memory {_suggest(need)}")


def _suggest(need: float) -> str:
    want = need * 1.25
    return f"{math.ceil(want / 1e12)}TB" if want >= 1e12 else f"{max(1, math.ceil(want / 1e9))}GB"


def require(what: str, need: float, budget: int | None) -> None:
    """Raise :class:`BudgetError` when ``need`` bytes exceed the budget (None: no budget)."""
    if budget is not None and not need <= budget:
        raise refuse(what, need, budget)


# -- the current run's budget (set by the runner; read by loaders that fold or unpack) -------------

_LIMIT: ContextVar[int | None] = ContextVar("lipaudit_max_memory", default=DEFAULT_MAX_MEMORY)


@contextmanager
def limit(max_bytes: int | None):
    """Within this block, :func:`current` is ``max_bytes`` (loaders read it without new parameters)."""
    token = _LIMIT.set(max_bytes)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def current() -> int | None:
    return _LIMIT.get()


# -- estimates from shapes ---------------------------------------------------------------------

F64, C128 = 8, 16
# rules that build one dense operator matrix per resized axis (onnx reference Resize, pooling matrices)
PER_AXIS_OPS = {"Resize", "Upsample", "AveragePool", "LpPool"}
HOPM_STARTS = 144


def _prod(xs) -> float:
    out = 1.0
    for x in xs:
        out *= max(int(x), 1)
    return out


def conv_method_bytes(method: str, weight_shape, groups: int, in_spatial, pads, dilations, strides,
                      transpose: bool = False) -> float:
    """Working memory of one per-layer method on one conv, from shapes only (a generous estimate).

    Mirrors what :mod:`lipaudit.bounds` allocates: tn the kernel in complex copies and the HOPM
    start vectors; f4 SVDs of the unfoldings; fro the kernel; fft (which ``certified`` adds) the
    dilated kernel and the symbol on the half grid of period ``n + pads`` (one frequency along
    single-tap axes, polyphase for stride); symbol the same on a grid of 8x the dilated kernel;
    exact the fft bracket plus the power iteration's input and output vectors.
    """
    w = _prod(weight_shape)
    taps = [int(t) for t in weight_shape[2:]]
    rank = len(taps)
    g = max(int(groups), 1)
    dil = [int(d) for d in (dilations or [1] * rank)]
    stride = [max(int(x), 1) for x in (strides or [1] * rank)]
    cout = weight_shape[1] * g if transpose else weight_shape[0]
    cin_g = weight_shape[0] // g if transpose else weight_shape[1]
    cout_g = cout // g
    if method == "fro":
        return F64 * w
    if method == "tn":
        return 6 * C128 * w + HOPM_STARTS * C128 * (cout_g + cin_g + sum(taps)) * 4
    if method == "f4":
        return 4 * F64 * w
    span = [d * (k - 1) + 1 for k, d in zip(taps, dil)]
    dilated = 2 * F64 * cout * cin_g * _prod(span)
    if method == "symbol":
        grid = [1 if k == 1 else max(32, 8 * sp) for k, sp in zip(taps, span)]
        return dilated + 2 * C128 * _half(grid) * cout * cin_g
    n = [int(x) for x in (in_spatial or [1] * rank)]
    if transpose:
        n = [ni * s for ni, s in zip(n, stride)]
    p = [int(x) for x in (pads or [0] * (2 * rank))]
    grid = []
    for i in range(rank):
        poly_taps = -(-span[i] // stride[i])
        full = -(-max(n[i] + p[i] + p[i + rank], span[i]) // stride[i])
        grid.append(1 if poly_taps == 1 else max(full, poly_taps))
    fft = dilated + 2 * C128 * _half(grid) * cout * cin_g * _prod(stride)
    if method in ("fft", "certified"):
        return fft
    if method == "exact":
        return fft + 16 * F64 * (cin_g + cout_g) * g * _prod(n)
    return F64 * w


def _half(grid) -> float:
    """Frequencies rfftn evaluates: the last axis halved."""
    if not grid:
        return 1.0
    return _prod(grid[:-1]) * (grid[-1] // 2 + 1)


def node_estimates(graph, methods, input_range: bool = False, expansion: bool = False) -> list[tuple[str, str, float]]:
    """``[(node name, what, bytes)]`` for every step of an audit whose memory depends on shapes."""
    out: list[tuple[str, str, float]] = []
    shapes = graph.shapes
    boxes = 0.0
    for node in graph.nodes:
        ins = [shapes.get(x) for x in node.inputs if x]
        outs = [shapes.get(x) for x in node.outputs if x]
        if input_range:
            boxes += sum(2 * F64 * _prod(s) for s in outs if s is not None)
        if node.op in ("Conv", "ConvTranspose") and len(node.inputs) > 1 and node.inputs[1] in graph.constants:
            weight = graph.constants[node.inputs[1]].shape
            x = ins[0] if ins else None
            spatial = list(x[2:]) if x is not None and len(x) > 2 else None
            attrs = node.attrs
            for m in methods:
                need = conv_method_bytes(m, weight, int(attrs.get("group", 1)), spatial, attrs.get("pads"),
                                         attrs.get("dilations"), attrs.get("strides"), node.op == "ConvTranspose")
                out.append((node.name, f"{node.op} ({m})", need))
            if expansion and spatial:
                out.append((node.name, f"{node.op} (expansion certificate)",
                            conv_method_bytes("fft", weight, int(attrs.get("group", 1)), spatial, attrs.get("pads"),
                                              attrs.get("dilations"), attrs.get("strides"), node.op == "ConvTranspose")))
        elif node.op in ("Gemm", "MatMul"):
            for name in node.inputs[:2]:
                if name in graph.constants:
                    shape = graph.constants[name].shape
                    small = min(shape[-2:]) if len(shape) >= 2 else 1
                    out.append((node.name, f"{node.op} (dense norms)", 2 * F64 * _prod(shape) + 3 * F64 * small * small))
        if node.op in PER_AXIS_OPS and ins and outs and ins[0] is not None and outs[0] is not None \
                and len(ins[0]) == len(outs[0]):
            # shape-dependent rules (resize, pooling, padding, ...) build per-axis operator matrices
            axes = [(n, m) for n, m in zip(ins[0], outs[0]) if n != m or node.op in ("Resize", "Upsample")]
            per_axis = sum(F64 * (n * n + 2 * n * m) for n, m in axes)
            if per_axis:
                out.append((node.name, f"{node.op} (per-axis operator)", per_axis))
        for s in outs:
            if s is not None and expansion:
                out.append((node.name, f"{node.op} (value)", 4 * C128 * _prod(s)))
    if input_range and graph.nodes:
        out.append((graph.nodes[-1].name, "interval bounds of every value (--input-range)", boxes))
    return out


def check_graph(graph, settings, max_bytes: int | None) -> None:
    """Refuse the audit before it starts when any step's estimate is above the budget."""
    if max_bytes is None:
        return
    methods = list(dict.fromkeys(list(settings.conv_methods)))
    expansion = "certified" in settings.compositions and getattr(settings, "expansion_budget", 0) > 0
    items = node_estimates(graph, methods, input_range=getattr(settings, "input_range", None) is not None,
                           expansion=expansion)
    if items:
        node, what, need = max(items, key=lambda t: t[2])
        require(f"node {node!r}: {what}", need, max_bytes)


def folded_numel(node, constants, shapes) -> float:
    """Entries of the largest output of a constant node about to be evaluated (0 when unknown)."""
    import numpy as np

    known = [_prod(shapes[o]) for o in node.outputs if o and o in shapes]
    if known:
        return max(known)
    try:
        args = [np.asarray(constants[x]) if x else None for x in node.inputs]
        if node.op == "ConstantOfShape":
            return _prod(args[0].ravel())
        if node.op == "Expand":
            a, b = list(args[0].shape), [int(v) for v in args[1].ravel()]
            width = max(len(a), len(b))
            a, b = [1] * (width - len(a)) + a, [1] * (width - len(b)) + b
            return _prod(max(x, y) for x, y in zip(a, b))
        if node.op == "Tile":
            return _prod(n * int(r) for n, r in zip(args[0].shape, args[1].ravel()))
        if node.op == "Range":
            start, stop, step = (float(np.asarray(a).ravel()[0]) for a in args[:3])
            return max(math.ceil((stop - start) / step), 0) if step else 0
        return max((a.size for a in args if a is not None), default=0)
    except Exception:
        return 0  # the evaluation itself reports what is wrong


def check_folded(node, constants, shapes) -> None:
    """A constant about to be folded (ConstantOfShape, Expand, Tile, Range, ...) must fit the run's budget."""
    need = folded_numel(node, constants, shapes) * F64
    require(f"folding constant node {node.name!r} ({node.op})", need, current())
