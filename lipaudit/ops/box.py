"""The second quantity of a rule: sound interval bounds of every value on the input domain.

With ``--input-range``, every value ``v`` gets a :class:`Box` ``lo <= v(x) <= hi``
(entry-wise, for every input ``x`` in the domain), computed in float64 and
widened for rounding. An op gets its box from an *interval rule*, registered
like a Lipschitz rule::

    @interval("Relu", "Sigmoid")
    def my_interval(node, ctx):
        return [monotone(node, ctx)]

An interval rule returns one :class:`Box` per output (``None`` for an output
that has none). It reads its inputs' boxes with ``ctx.known_box(node, name)``,
which stops the rule when an input has no box. An op without an interval rule
is sound by default: its outputs get a :class:`NoBox` naming the node, and any
rule that needs that box (a product certified on the domain) refuses, naming it.

Shared strategies for interval rules live here: :func:`monotone` (an op
non-decreasing or non-increasing in each data input, evaluated by onnx's
reference evaluator at the box's corners), :func:`affine` (center/radius
through a linear op with its weights replaced by their absolute values) and
:func:`unimodal` (element-wise functions with one known minimum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

# relative widening of every computed bound, and the relative error allowed per term of a sum
# (float64 sums of n terms err by at most n * 2**-52 of the sum of |terms|: 1e-9 covers n < 4.5e6)
ROUNDING = 1e-9
# element-wise functions run by onnx's reference operators differ from the exact function by up to ~1e-7
# (erf approximations, float32 constants such as HardSwish's 1/6): their bounds are widened by this, relative
# to (|value| + 1)
APPROX = 1e-6


@dataclass(frozen=True)
class Box:
    """``lo <= value <= hi`` entry-wise (arrays broadcastable to the value's shape)."""

    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def point(c) -> "Box":
        c = np.asarray(c, dtype=np.float64)
        return Box(c, c)

    def mag(self) -> np.ndarray:
        """Entry-wise ``sup |value|`` on the domain."""
        return np.maximum(np.abs(self.lo), np.abs(self.hi))

    def mid_rad(self) -> tuple[np.ndarray, np.ndarray]:
        mid = (self.lo + self.hi) / 2
        return mid, np.maximum(self.hi - mid, mid - self.lo)

    def widened(self, slack=0.0) -> "Box":
        """Outward by ``ROUNDING`` relative plus ``slack`` (absolute, entry-wise)."""
        lo = self.lo - ROUNDING * np.abs(self.lo) - slack
        hi = self.hi + ROUNDING * np.abs(self.hi) + slack
        return Box(np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf))

    def describe(self) -> str:
        return f"[{float(np.min(self.lo)):.4g}, {float(np.max(self.hi)):.4g}]"


@dataclass(frozen=True)
class NoBox:
    """A value without interval bounds: the node where they were lost, and why."""

    node: str
    op: str
    reason: str

    def message(self) -> str:
        return f"node {self.node!r} ({self.op}): {self.reason}"


class NoInterval(Exception):
    """Raised inside an interval rule: the output has no box (``upstream`` when an input had none)."""

    def __init__(self, reason: str, upstream: NoBox | None = None):
        super().__init__(reason)
        self.reason, self.upstream = reason, upstream


INTERVALS: dict[str, Callable] = {}


def interval(*ops: str):
    """Register a function as the interval rule of ``ops``: ``fn(node, ctx) -> [Box | None per output]``."""

    def register(fn):
        for op in ops:
            if op in INTERVALS:
                raise ValueError(f"two interval rules for {op}")
            INTERVALS[op] = fn
        return fn

    return register


def checked(box: Box, shape=None) -> Box:
    """A box whose bounds are finite, as float64 arrays (broadcast to ``shape`` when given)."""
    lo, hi = np.asarray(box.lo, dtype=np.float64), np.asarray(box.hi, dtype=np.float64)
    if shape is not None:
        lo, hi = np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise NoInterval("its values on the domain are unbounded or NaN")
    if np.any(lo > hi):
        raise NoInterval("internal: an interval with lo > hi")
    return Box(lo, hi)


# -- evaluating one node with onnx's reference operators -----------------------------------------


def evaluate(node, ctx, feeds: dict[str, np.ndarray], outputs=None) -> list[np.ndarray]:
    """Run ``node`` on ``feeds`` (its inputs by name) in float64, at the model's opset (ONNX semantics)."""
    fast = _fast_pool(node, ctx, feeds, outputs)
    if fast is not None:
        return fast
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    attrs = {k: (numpy_helper.from_array(np.asarray(v)) if isinstance(v, np.ndarray) else v) for k, v in node.attrs.items()}
    proto = helper.make_node(node.op, list(node.inputs), list(node.outputs), domain=node.domain, **attrs)
    names = [n for n in dict.fromkeys(node.inputs) if n]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(feeds[n]).dtype),
                                            np.asarray(feeds[n]).shape) for n in names]
    wanted = [o for o in (outputs or node.outputs) if o]
    graph = helper.make_graph([proto], "box", inputs, [helper.make_empty_tensor_value_info(o) for o in wanted])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ctx.opset())])
    try:
        with np.errstate(all="ignore"):  # e.g. Sigmoid evaluates exp on both branches; results are checked finite
            results = ReferenceEvaluator(model).run(wanted, {n: feeds[n] for n in names})
    except Exception as exc:
        raise NoInterval(f"onnx's reference evaluator failed on the bounds ({type(exc).__name__}: {str(exc)[:100]})") from None
    return [np.asarray(r) for r in results]


def _fast_pool(node, ctx, feeds, outputs):
    """2-D MaxPool/AveragePool (floor mode) by torch in float64, with ONNX's padding and divisor; else None.

    The divisor of AveragePool without ``count_include_pad`` is the number of real entries in each window,
    counted by pooling a padded tensor of ones. Any other case runs onnx's reference operator.
    """
    if node.op not in ("MaxPool", "AveragePool") or len(node.inputs) != 1:
        return None
    wanted = [o for o in (outputs or node.outputs) if o]
    if wanted != [node.outputs[0]] or node.attrs.get("ceil_mode", 0) or node.attrs.get("storage_order", 0) \
            or node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None  # SAME padding conventions differ between the specification and runtimes: the reference decides
    x = np.asarray(feeds[node.inputs[0]], dtype=np.float64)
    k = [int(v) for v in node.attrs.get("kernel_shape", [])]
    if x.ndim != 4 or len(k) != 2:
        return None
    s = [int(v) for v in node.attrs.get("strides", [1, 1])]
    dil = [int(v) for v in node.attrs.get("dilations", [1, 1])]
    from lipaudit.ops.attrs import resolve_pads

    pads = resolve_pads(node.attrs, list(x.shape[2:]), k, s, dil)
    if any(p < 0 for p in pads):
        return None
    import torch
    import torch.nn.functional as F

    torch_pads = [pads[1], pads[3], pads[0], pads[2]]
    t = torch.tensor(x)
    with torch.no_grad():
        if node.op == "MaxPool":
            y = F.max_pool2d(F.pad(t, torch_pads, value=-np.inf), k, s, dilation=dil)
        else:
            if dil != [1, 1]:
                return None
            sums = F.avg_pool2d(F.pad(t, torch_pads), k, s) * (k[0] * k[1])
            if node.attrs.get("count_include_pad", 0):
                y = sums / (k[0] * k[1])
            else:
                ones = F.pad(torch.ones((1, 1) + x.shape[2:], dtype=torch.float64), torch_pads)
                y = sums / (F.avg_pool2d(ones, k, s) * (k[0] * k[1]))
    y = y.numpy()
    expected = ctx.graph.shapes.get(node.outputs[0])
    if expected is None or tuple(y.shape) != tuple(expected):
        return None
    return [y]


def _feed_const(c) -> np.ndarray:
    c = np.asarray(c)
    return c.astype(np.float64) if np.issubdtype(c.dtype, np.floating) else c


def monotone(node, ctx, signs: dict[str, int] | None = None, exact: bool = False, outputs=None) -> list[Box]:
    """An op non-decreasing (sign +1, the default) or non-increasing (-1) in each input-dependent input.

    The output's bounds are the op at the lower and upper corners. Unless the op
    is ``exact`` (it only moves, selects or takes max/min of entries), the bounds
    are widened by ``ROUNDING`` times the op applied to the inputs' magnitudes,
    which covers the rounding of sums (see ``ROUNDING``); such ops must have
    non-negative coefficients (pooling, means, interpolation).
    """
    signs = signs or {}
    approx = node.op in APPROXIMATE
    low, high, mags = {}, {}, {}
    for name in node.inputs:
        if not name or name in low:
            continue
        if ctx.depends(name):
            box = ctx.known_box(node, name)
            shape = ctx.graph.shapes.get(name)
            b = checked(box, shape)
            lo, hi = (b.lo, b.hi) if signs.get(name, 1) > 0 else (b.hi, b.lo)
            low[name], high[name], mags[name] = np.ascontiguousarray(lo), np.ascontiguousarray(hi), b.mag()
        else:
            c = ctx.const(name)
            if c is None:
                raise NoInterval(f"input {name!r} is neither a constant nor bounded")
            low[name] = high[name] = _feed_const(c)
            mags[name] = np.abs(low[name]) if np.issubdtype(low[name].dtype, np.floating) else low[name]
    outs = outputs or [o for o in node.outputs if o]
    los, his = evaluate(node, ctx, low, outs), evaluate(node, ctx, high, outs)
    slacks = [0.0] * len(outs) if exact else [ROUNDING * np.abs(m) for m in evaluate(node, ctx, mags, outs)]
    boxes = []
    for lo, hi, slack in zip(los, his, slacks):
        if not np.issubdtype(lo.dtype, np.floating):
            boxes.append(None)
            continue
        if approx:
            slack = slack + APPROX * (np.maximum(np.abs(lo), np.abs(hi)) + 1.0)
        boxes.append(checked(Box(np.minimum(lo, hi), np.maximum(lo, hi)).widened(slack)))
    return boxes


# element-wise functions (not selections or sums): see APPROX
APPROXIMATE = {"Sigmoid", "Tanh", "Softplus", "Softsign", "Erf", "Exp", "Log", "Sqrt", "LeakyRelu", "Elu", "Celu",
               "Selu", "HardSigmoid", "PRelu", "HardSwish", "Mish", "Gelu"}


def unimodal(node, ctx, t_min: float, f_min_lower: float, tol: float = 1e-3) -> Box:
    """An element-wise function decreasing up to ``t_min`` and increasing after it, with minimum >= ``f_min_lower``.

    ``t_min`` may be approximate (within ``tol``): an interval that comes within
    ``tol`` of it gets the global lower bound ``f_min_lower``; any other lies on
    one monotone side, so its extremes are at its ends.
    """
    x = node.inputs[0]
    b = checked(ctx.known_box(node, x), ctx.graph.shapes.get(x))
    out = [o for o in node.outputs if o][:1]
    f_lo = evaluate(node, ctx, {x: np.ascontiguousarray(b.lo)}, out)[0]
    f_hi = evaluate(node, ctx, {x: np.ascontiguousarray(b.hi)}, out)[0]
    crosses = (b.lo <= t_min + tol) & (b.hi >= t_min - tol)
    lo = np.where(crosses, f_min_lower, np.minimum(f_lo, f_hi))
    hi = np.maximum(f_lo, f_hi)
    return checked(Box(lo, hi).widened(APPROX * (np.maximum(np.abs(lo), np.abs(hi)) + 1.0)))


def affine(node, ctx, data: str, weights: dict[str, np.ndarray], drop: tuple[str, ...] = ()) -> Box:
    """A node linear in ``data`` with constant ``weights``: center through the node, radius through |weights|.

    ``drop`` names inputs left out (e.g. a bias, added by the caller); rounding of
    the center is covered by passing ``ROUNDING * |center|`` through the absolute op.
    """
    b = checked(ctx.known_box(node, data), ctx.graph.shapes.get(data))
    mid, rad = b.mid_rad()
    names = [n for n in node.inputs if n]
    center_feed = {n: (mid if n == data else _feed_const(weights[n])) for n in names if n not in drop}
    radius_feed = {n: (rad + ROUNDING * np.abs(mid) if n == data else np.abs(_feed_const(weights[n])))
                   for n in names if n not in drop}
    stripped = _without(node, drop)
    out = node.outputs[:1]
    run = _torch_conv(stripped, ctx) or (lambda feed: evaluate(stripped, ctx, feed, out)[0])
    center = run(center_feed)
    radius = run(radius_feed)
    # the radius's own rounding, and that of center +- radius, are covered by ROUNDING x radius
    return Box(center - radius, center + radius).widened(ROUNDING * (np.abs(center) + radius))


def _torch_conv(node, ctx):
    """A fast float64 Conv (numpy, one matrix product per kernel tap) with ONNX's padding conventions, for
    interval bounds; None to use onnx's reference.

    The result is the same sum of products in another order: the rounding allowance (``ROUNDING``) covers it.
    """
    if node.op != "Conv" or len([i for i in node.inputs if i]) != 2 or node.attrs.keys() - {
            "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"} \
            or node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None  # SAME padding: the reference decides (conventions differ with dilations)
    x, w = node.inputs[0], node.inputs[1]
    shape = ctx.graph.shapes.get(x)
    weight = ctx.const(w)
    if shape is None or weight is None or weight.ndim not in (3, 4, 5) or len(shape) != weight.ndim:
        return None
    from lipaudit.ops.attrs import resolve_pads

    d = weight.ndim - 2
    k = list(weight.shape[2:])
    s = [int(v) for v in node.attrs.get("strides", [1] * d)]
    dil = [int(v) for v in node.attrs.get("dilations", [1] * d)]
    pads = resolve_pads(node.attrs, list(shape[2:]), k, s, dil)
    if any(p < 0 for p in pads):
        return None
    groups = int(node.attrs.get("group", 1))
    expected = ctx.graph.shapes.get(node.outputs[0])

    def run(feed):
        y = _conv_numpy(np.asarray(feed[x], dtype=np.float64), np.asarray(feed[w], dtype=np.float64), s, dil, pads,
                        groups)
        if expected is not None and tuple(y.shape) != tuple(expected):
            raise NoInterval(f"internal: conv bounds of shape {list(y.shape)}, the model says {list(expected)}")
        return y

    return run


def _conv_numpy(x, w, s, dil, pads, groups) -> np.ndarray:
    """ONNX Conv without bias in float64: zero-pad, then for every kernel tap add W[:, :, tap] @ x[shifted, strided]."""
    d = w.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + d]) for i in range(d)])
    n, c = x.shape[:2]
    co, cg = w.shape[:2]
    k = w.shape[2:]
    out = [(x.shape[2 + i] - dil[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(d)]
    xg = x.reshape((n, groups, cg) + x.shape[2:])
    wg = w.reshape((groups, co // groups, cg) + tuple(k))
    y = np.zeros((n, groups, co // groups) + tuple(out))
    for tap in np.ndindex(*k):
        window = tuple(slice(tap[i] * dil[i], tap[i] * dil[i] + (out[i] - 1) * s[i] + 1, s[i]) for i in range(d))
        patch = xg[(slice(None), slice(None), slice(None)) + window]  # (n, groups, cg, *out)
        y += np.einsum("goc,ngc...->ngo...", wg[(slice(None), slice(None), slice(None)) + tap], patch, optimize=True)
    return y.reshape((n, co) + tuple(out))


def _without(node, drop):
    from dataclasses import replace

    return replace(node, inputs=[("" if n in drop else n) for n in node.inputs]) if drop else node


def mul_boxes(a: Box, b: Box) -> Box:
    """Entry-wise product of two intervals (numpy broadcasting, as ONNX's)."""
    corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    return Box(np.minimum.reduce(corners), np.maximum.reduce(corners)).widened()


def reciprocal_box(b: Box, node_label: str = "divisor") -> Box:
    """``1/v`` for a box that excludes 0."""
    if np.any((b.lo <= 0) & (b.hi >= 0)):
        raise NoInterval(f"the {node_label}'s interval contains 0 on the domain")
    return Box(1.0 / b.hi, 1.0 / b.lo).widened()


def matmul_boxes(a: Box, b: Box) -> Box:
    """Interval matrix product (numpy matmul broadcasting, as ONNX MatMul), mid-radius form (Rump)."""
    am, ar = a.mid_rad()
    bm, br = b.mid_rad()
    center = am @ bm
    radius = np.abs(am) @ br + ar @ (np.abs(bm) + br) + ROUNDING * ((np.abs(am) + ar) @ (np.abs(bm) + br))
    return Box(center - radius, center + radius).widened()


# -- the walk's second quantity (called by lipaudit.engine for every node, after its Lipschitz rule) --------


def start_boxes(graph, ctx, domain):
    """With a domain: the inputs' boxes, their centers and the domain's l2 radius; returns the interval rules.

    Returns None without a domain (no bounds are computed).
    """
    if domain is None:
        return None
    from lipaudit.errors import UsageError

    ctx.domain = domain
    squares = 0.0
    for name in graph.inputs:
        shape = graph.shapes.get(name)
        if shape is None:
            raise UsageError(f"--input-range: the shape of input {name!r} is unknown; give --input-shape")
        lo, hi = domain.bounds_for(tuple(shape))
        ctx.boxes[name] = Box(lo, hi)
        mid = (lo + hi) / 2
        ctx.centers[name] = Box(mid, mid)
        rad = np.maximum(hi - mid, mid - lo)
        top = float(np.max(rad, initial=0.0))
        if top > 0:  # scaled, so that huge ranges do not overflow the squares
            squares += top * top * float(np.sum(np.square(rad / top))) if math.isfinite(top * top) else math.inf
    ctx.domain_radius = math.sqrt(squares) * (1 + 1e-12)
    return INTERVALS


def node_boxes(node, ctx, intervals, contract_ok: bool) -> None:
    """The node's outputs' boxes on the domain; a ``NoBox`` naming the node where none can be given.

    Each box is intersected with a Lipschitz box: for ``x`` in the domain with center ``x0``
    and l2 radius ``R``, every entry satisfies ``|v_i(x) - v_i(x0)| <= ||v(x) - v(x0)|| <= L_v R``,
    where ``L_v`` is the value's certified constant and ``v(x0)`` is enclosed by the same interval
    rules run on the center (a point). Deep networks keep useful bounds this way, where plain
    interval arithmetic grows geometrically with depth.
    """
    fn = intervals.get(node.op) if node.domain in ("", "ai.onnx") else None
    outs = node.outputs
    if fn is None or not contract_ok:
        why = "no interval rule for this op" if fn is None else "the node breaks its rule's contract"
        boxes = [NoBox(node.name, node.op, why)] * len(outs)
        centers = boxes
    else:
        boxes = _run(fn, node, ctx)
        saved, ctx.boxes = ctx.boxes, ctx.centers
        try:
            centers = _run(fn, node, ctx)
        finally:
            ctx.boxes = saved
    form = _form_box(node, ctx) if fn is not None and contract_ok and isinstance(boxes[0], Box) else None
    for o, b, c in zip(outs, boxes, centers):
        if not o:
            continue
        shape = ctx.graph.shapes.get(o)
        b, c = _fits(node, b, shape), _fits(node, c, shape)
        if form is not None and o == outs[0] and isinstance(b, Box):
            b = _intersect(b, form)
        if isinstance(b, Box) and isinstance(c, Box) and o not in _inside_folds(ctx):
            b = _intersect_lipschitz(b, c, ctx.lips.get(o), ctx.domain_radius)
        ctx.boxes[o] = b
        ctx.centers[o] = c
    _release_forms(node, ctx)


def _release_forms(node, ctx) -> None:
    """Forget the forms of the node's inputs once their last consumer has run (each holds a value-sized midpoint)."""
    if ctx.form_users is None:
        ctx.form_users = {name: len({n.name for n in users}) for name, users in ctx.graph.consumers().items()}
    for name in dict.fromkeys(n for n in node.inputs if n):
        left = ctx.form_users.get(name, 0) - 1
        ctx.form_users[name] = left
        if left <= 0:
            ctx.forms.pop(name, None)


def _inside_folds(ctx) -> set[str]:
    """Values strictly inside a folded BatchNorm pair: their ``lips`` entry is the whole pair's constant
    (the BN scale is in the layer's kernel), not their own, so it bounds nothing about them."""
    if ctx.shared_lips is None:
        producers = ctx.producers()
        inside: set[str] = set()
        for bn_name, layer in ctx.folded_bns.items():
            bn = ctx.graph.node(bn_name)
            if bn is None:
                continue
            if any(name == bn_name for name, _ in ctx.fold_before.get(layer, [])):
                inside.update(o for o in bn.outputs if o)
                continue
            value = bn.inputs[0]
            for _ in range(len(ctx.graph.nodes)):  # walk up the chain of constant bias additions to the layer
                inside.add(value)
                p = producers.get(value)
                if p is None or p.name == layer:
                    break
                value = next((x for x in p.inputs if x and x not in ctx.graph.constants), "")
        ctx.shared_lips = inside
    return ctx.shared_lips


def _run(fn, node, ctx) -> list:
    n = len(node.outputs)
    try:
        out = list(fn(node, ctx)) + [None] * n
    except NoInterval as exc:
        return [exc.upstream or NoBox(node.name, node.op, exc.reason)] * n
    except Exception as exc:  # a rule that cannot bound this instance: no bounds, never a guess
        return [NoBox(node.name, node.op, f"interval rule failed ({type(exc).__name__}: {str(exc)[:100]})")] * n
    return [b if b is not None else NoBox(node.name, node.op, "this output has no interval bounds") for b in out[:n]]


def _fits(node, b, shape):
    if not isinstance(b, Box):
        return b
    try:
        ok = shape is not None and np.broadcast_shapes(np.shape(b.lo), np.shape(b.hi), tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    return b if ok else NoBox(node.name, node.op, "internal: the bounds do not match the value's shape")


def _form_box(node, ctx) -> Box | None:
    """The first output's box from its affine form (ops/linear_forms.py), or None; records the form."""
    from lipaudit.ops.linear_forms import node_form

    try:
        form = node_form(node, ctx)
        box = form.box(ctx.form_radii) if form is not None else None
    except Exception:  # a form is only ever a refinement: without one the interval box stands
        return None
    if box is None or not (np.all(np.isfinite(box.lo)) and np.all(np.isfinite(box.hi))):
        return None
    ctx.forms[node.outputs[0]] = form
    return box


def _intersect(b: Box, other: Box) -> Box:
    """Two sound boxes of one value: their intersection (``b`` when they do not meet, which sound ones always do)."""
    lo, hi = np.maximum(b.lo, other.lo), np.minimum(b.hi, other.hi)
    return b if np.any(lo > hi) else Box(lo, hi)


def _intersect_lipschitz(b: Box, center: Box, lip, radius: float) -> Box:
    """``b`` intersected with ``[v(x0) - L R, v(x0) + L R]`` (L: the certified constant, sound on the domain)."""
    if not isinstance(lip, dict):
        return b
    L = lip.get("certified")
    if L is None or not math.isfinite(L):
        return b
    reach = L * radius * (1 + 1e-12)
    if not math.isfinite(reach):  # e.g. 0 x an infinite radius (a domain whose l2 radius overflows)
        return b
    return _intersect(b, Box(center.lo - reach, center.hi + reach))


def add_with_rounding(a: Box, b: Box) -> Box:
    """``a + b``, widened for the rounding of each sum (relative to the terms, not to the result)."""
    return Box(a.lo + b.lo, a.hi + b.hi).widened(ROUNDING * (a.mag() + b.mag()))
