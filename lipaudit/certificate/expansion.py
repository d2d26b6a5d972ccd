"""The expansion certificate (Combettes & Pesquet; LipLT, Fazlyab et al. 2023) with guaranteed segment norms.

Every split activation has Jacobian ``c I + r S`` (``|S| <= 1`` diagonal). Seen
as a linear network in the input and the *injections* ``e_j = r_j S_j dz_j``
(the centred network, every activation replaced by ``c_j``), any value ``v``
of the DAG has ``dv = M_v0 dx + sum_j M_vj e_j + sum_q M_vq dy_q`` where ``q``
runs over cut outputs. Hence, with ``A`` bounds on the Jacobian norms,

    A_v = ||M_v0|| + sum_j ||M_vj diag(r_j)|| A_{z_j} + sum_q ||M_vq|| B_q,

for any DAG of linear ops (adds, concats, strides, ...): the rule needs no case
per op. Each ``||M||`` is a guaranteed bound: zero-padded convs are written as
``R X E`` on a torus (embed, circular conv, restrict), the ``E R`` pairs
between layers are absorbed into the neighbouring activation's diagonal (its
slope interval then contains 0), and every segment between splits is a
circulant whose norm is the largest singular value of the product of
polyphase symbols over the frequencies; a segment that ends at a non-spatial
value (e.g. logits) is measured exactly through the Gram matrix of its rows.
The proofs are in docs/certificate.md.

The sweep of one target may stop at an activation output instead of going
through it (when the polyphase blow-up is too large or the work budget is
spent): that activation's output is then a source bounded by
``min(product constant, max|slope| A_z)``, which is the product rule there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from lipaudit.bounds.linalg import max_singular_values, stack_max_singular
from lipaudit.certificate import linear_ir
from lipaudit.certificate.symbols import coarse_conv_taps, grid_rows_to_symbol, half_grid, symbol
from lipaudit.values import SAFETY

_EPS = np.finfo(np.float64).eps

# Unary ops whose product rule multiplies the input's constant by a factor that does not depend on it
# (pooling, resampling, layout, and activations without a slope interval here): across such a cut,
# the output's Jacobian norm is at most factor x the input's, with factor = product(out) / product(in).
SCALING_CUTS = {
    "MaxPool", "GlobalMaxPool", "AveragePool", "GlobalAveragePool", "LpPool", "GlobalLpPool", "Pad", "Resize",
    "Upsample", "Transpose", "Slice", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "DepthToSpace",
    "SpaceToDepth", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2",
    "Elu", "Selu", "Celu", "Softplus", "Softsign", "HardSigmoid", "Mish", "Erf", "Identity", "Dropout",
}


@dataclass(frozen=True)
class ExpansionSettings:
    """How much work the expansion may do.

    Attributes:
        budget: complex multiply-adds (in units of 1e9) over all segment sweeps (symbols, products,
            norms); the sweep that would pass it and every later one fall back to the product.
        max_phases: largest polyphase blow-up (product of stride ratios) a sweep goes through.
        max_rows: largest non-spatial value measured by its rows (larger ones use the product).
        max_bytes: largest array one sweep may hold (per-frequency matrices of a value or a symbol).
    """

    budget: float = 5.0
    max_phases: int = 16
    max_rows: int = 4096
    max_bytes: int = 256 * 2**20  # largest array of a sweep; a target needing more uses the product


@dataclass
class ExpansionResult:
    value: float  # root-sum-square over the outputs of min(expansion, product)
    raw: float  # the expansion alone
    per_output: dict[str, float]
    splits: int
    cuts: list[str]
    stopped: int  # sweeps that stopped at an activation (budget or phase limit)
    budget_exhausted: bool
    work: float
    time_s: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "value": self.value, "expansion": self.raw, "per_output": self.per_output, "splits": self.splits,
            "cuts": self.cuts, "stopped_sweeps": self.stopped, "budget_exhausted": self.budget_exhausted,
            "work_gmac": round(self.work / 1e9, 6), "time_s": round(self.time_s, 6),
        }


def expansion_bound(graph, lips: dict, outputs: list[str], bn_scales: dict,
                    settings: ExpansionSettings = ExpansionSettings(), composition: str = "certified",
                    progress=None, shifted: set[str] = frozenset()) -> ExpansionResult:
    """Expansion certificate for the map from the graph inputs to ``outputs``.

    ``lips`` are the product walk's constants per value (true bounds, used for
    cut outputs and for the per-value minimum); ``shifted`` names values whose
    constant is not their own (inside a BatchNorm fold), which are never used.
    """
    t0 = time.perf_counter()

    def depends(v):
        return bool(v) and v not in graph.constants and lips.get(v) is not None

    def prod(v) -> float:
        lip = lips.get(v)
        if v in graph.inputs:
            return 1.0
        if v in shifted:
            return math.inf
        return float(lip.get(composition, math.inf)) if isinstance(lip, dict) else math.inf

    forced: set[str] = set()
    while True:
        ir = linear_ir.build(graph, depends, outputs, bn_scales, forced)
        bad = linear_ir.assign_levels(ir)
        if bad is None:
            break
        forced.add(bad)
    sweeper = _Sweeper(ir, settings, prod)
    position = {op.output: i for i, op in enumerate(ir.ops)}
    used = _used_ops(ir, outputs, lambda op: _scaling_cut(op, graph, depends))
    splits = [op for op in ir.ops if op.kind == "split" and op.name in used]
    scaling = [op for op in ir.ops if op.kind == "cut" and op.name in used and _scaling_cut(op, graph, depends)]
    sweeper.cut_inputs = {op.output: op.inputs[0] for op in scaling}
    targets = sorted({op.inputs[0] for op in splits} | {op.inputs[0] for op in scaling} | {o for o in outputs if depends(o)},
                     key=lambda v: position.get(v, -1))
    for i, t in enumerate(targets):
        sweeper.bound(t, position.get(t, -1))
        if progress is not None:
            progress(i + 1, len(targets), t)
    per_output, raw = {}, {}
    for o in outputs:
        if not depends(o):
            per_output[o], raw[o] = 0.0, 0.0
            continue
        raw[o] = sweeper.A[o]
        per_output[o] = min(raw[o], prod(o))
    cuts = sorted({f"{op.name} ({op.op})" for op in ir.ops if op.kind == "cut" and op.name in used})
    return ExpansionResult(
        value=_finite(math.hypot(*per_output.values())),
        raw=_finite(math.hypot(*raw.values())), per_output=per_output,
        splits=len(splits), cuts=cuts, stopped=sweeper.stopped + sweeper.fallbacks, budget_exhausted=sweeper.exhausted,
        work=sweeper.work, time_s=time.perf_counter() - t0,
    )


def _scaling_cut(op, graph, depends) -> bool:
    node = next((n for n in graph.nodes if n.name == op.name), None)
    return (op.op in SCALING_CUTS and node is not None and len([i for i in node.inputs if depends(i)]) == 1
            and len([o for o in node.outputs if o]) == 1)


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else math.inf


def _used_ops(ir, outputs, through=lambda op: False) -> set[str]:
    producer = {op.output: op for op in ir.ops}
    used, stack, seen = set(), list(outputs), set()
    while stack:
        v = stack.pop()
        if v in seen or v not in producer:
            continue
        seen.add(v)
        op = producer[v]
        used.add(op.name)
        if op.kind != "cut" or through(op):
            stack.extend(op.inputs)
    return used


class _Sweeper:
    """Backward sweeps of the centred network, one per target value."""

    def __init__(self, ir, settings: ExpansionSettings, prod):
        self.ir, self.settings, self.prod = ir, settings, prod
        self.A: dict[str, float] = {x: 1.0 for x in ir.inputs}
        self.work = 0.0
        self.exhausted = False
        self.stopped = 0
        self.fallbacks = 0
        self.cut_inputs: dict[str, str] = {}  # scaling cut output -> its input
        self._symbols: dict = {}
        self._grids: dict = {}

    # -- references: the torus on which a sweep writes spatial adjoints ------------------
    def _grid(self, period):
        if period not in self._grids:
            self._grids[period] = half_grid(period)
        return self._grids[period]

    def _ref(self, u: str):
        """``(period, q)`` of value ``u`` in the current sweep's reference."""
        val = self.ir.vals[u]
        if self.mode == "torus":
            rt = self.ref_ratio
            if val.comp != self.ref_comp or any(r % t for r, t in zip(val.ratio, rt)):
                raise _Unsupported(u)
            return self.ref_period, tuple(r // t for r, t in zip(val.ratio, rt))
        return self.ir.base[val.comp], tuple(val.ratio)

    # -- one target ------------------------------------------------------------------------
    def bound(self, t: str, pos: int) -> None:
        if t in self.A:
            return
        if self.exhausted:
            self._fallback(t)
            return
        val = self.ir.vals[t]
        if val.spatial:
            self.mode = "torus"
            self.ref_comp, self.ref_ratio = val.comp, val.ratio
            self.ref_period = self.ir.period(t)
            omega, _ = self._grid(self.ref_period)
            c = val.channels
            self.rows = c
            if omega.shape[0] * c * c * 16 > self.settings.max_bytes:
                self._fallback(t)
                return
            start = np.broadcast_to(np.eye(c, dtype=np.complex128), (omega.shape[0], c, c)).copy()
            adj = {t: ("freq", start)}
        else:
            self.mode = "rows"
            n = int(np.prod(val.shape)) if val.shape else 1
            if n > self.settings.max_rows:
                self._fallback(t)
                return
            self.rows = n
            adj = {t: ("flat", np.eye(n))}
        try:
            total = self._sweep(adj, pos)
        except _Unsupported:
            self._fallback(t)
            return
        if val.spatial is False or val.clean:
            total = min(total, self.prod(t))  # the true Jacobian: the product constant bounds it too
        self.A[t] = total * SAFETY if math.isfinite(total) else math.inf

    def _fallback(self, t: str) -> None:
        """No expansion bound for ``t``: later sweeps stop at the split it feeds (product rule across)."""
        self.A[t] = math.inf
        self.fallbacks += 1

    def _check_size(self, *shape) -> None:
        if int(np.prod(shape)) * 16 > self.settings.max_bytes:
            raise _Unsupported("too large")

    def _spend(self, cost: float) -> None:
        """Count work before doing it: a step that does not fit in what is left of the budget is not done,
        and the current sweep falls back to the product (the work done never exceeds the budget)."""
        left = self.settings.budget * 1e9 - self.work
        if float(cost) > left:
            if left < 0.01 * self.settings.budget * 1e9:
                self.exhausted = True  # nothing useful is left: later sweeps fall back at once
            raise _Unsupported("budget")
        self.work += float(cost)

    def _sweep(self, adj: dict, pos: int) -> float:
        ir = self.ir
        terms = 0.0
        for op in reversed(ir.ops[: pos + 1]):
            if op.output not in adj:
                continue
            form, a = self._take(adj, op.output)
            kind = op.kind
            if kind == "cut":
                terms += self._norm(form, a, op.output) * self._cut_bound(op.output)
            elif kind == "split":
                terms += self._split(op, form, a, adj)
            elif kind == "conv":
                u = op.inputs[0]
                period, q_out = self._ref(op.output)
                x = self._conv_symbol(op, q_out, period)
                self._check_size(a.shape[0], a.shape[1], x.shape[2])
                self._spend(a.shape[0] * a.shape[1] * x.shape[1] * x.shape[2])
                self._add(adj, u, "freq", a @ x)
            elif kind == "scale":
                self._add(adj, op.inputs[0], form, a * self._cols(op.output, op.params["scale"], form))
            elif kind == "add":
                for u, sign in zip(op.inputs, op.params["signs"]):
                    self._add(adj, u, form, a if sign == 1.0 else sign * a)
            elif kind == "concat":
                self._concat(op, form, a, adj)
            elif kind == "gemm":
                w = op.params["weight"]
                r = a.shape[0]
                self._spend(a.size * w.shape[1])
                out = (a.reshape(r, -1, w.shape[0]) @ w).reshape(r, -1)
                self._add(adj, op.inputs[0], "flat", out)
            elif kind == "reshape":
                self._add(adj, op.inputs[0], "flat", a)
            elif kind == "gap":
                u = ir.vals[op.inputs[0]]
                grid = np.broadcast_to(a.reshape(a.shape[0], u.channels, *([1] * len(u.grid))),
                                       (a.shape[0], u.channels) + u.grid) / float(np.prod(u.grid))
                self._add(adj, op.inputs[0], "flat", grid.reshape(a.shape[0], -1))
            else:
                raise _Unsupported(op.name)
        for x in list(adj):
            form, a = self._take(adj, x)
            if x not in self.A:
                raise _Unsupported(x)
            terms += self._norm(form, a, x) * self.A[x]
        return terms

    def _cut_bound(self, y: str) -> float:
        """Bound on a cut output's Jacobian norm: the product's, or factor x the expansion of its input."""
        bound = self.prod(y)
        z = self.cut_inputs.get(y)
        if z is not None and math.isfinite(self.A.get(z, math.inf)):
            pz = self.prod(z)
            if 0 < pz < math.inf and math.isfinite(bound):
                bound = min(bound, bound / pz * self.A[z] * SAFETY)
        return bound

    def _split(self, op, form, a, adj) -> float:
        z, y = op.inputs[0], op.output
        lo, hi = op.params["interval"]
        zval = self.ir.vals[z]
        a_z = self.A.get(z, math.inf)
        phases = int(np.prod(self._ref(z)[1])) if zval.spatial else 1
        if self.exhausted or not math.isfinite(a_z) or phases > self.settings.max_phases:
            # stop here: y is clean, so the product rule bounds its true Jacobian
            self.stopped += 1
            bound = min(self.prod(y), float(np.max(np.maximum(np.abs(lo), np.abs(hi)))) * a_z)
            return self._norm(form, a, y) * bound
        if zval.spatial and not zval.clean:
            lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)  # absorb the torus projection
        c, r = (np.asarray(hi) + np.asarray(lo)) / 2, (np.asarray(hi) - np.asarray(lo)) / 2
        term = self._norm(form, a, y, self._cols(y, r, form)) * a_z if np.any(r) else 0.0
        self._add(adj, z, form, a * self._cols(y, c, form))
        return term

    def _concat(self, op, form, a, adj) -> None:
        vals = self.ir.vals
        if form == "freq":
            q = int(np.prod(self._ref(op.output)[1]))
            start = 0
            for u in op.inputs:
                width = vals[u].channels * q
                self._add(adj, u, "freq", a[:, :, start:start + width])
                start += width
            return
        shape = vals[op.output].shape
        axis = op.params["axis"]
        index = np.arange(int(np.prod(shape))).reshape(shape)
        bounds = np.cumsum([vals[u].shape[axis] for u in op.inputs])[:-1]
        for u, part in zip(op.inputs, np.split(index, bounds, axis=axis)):
            self._add(adj, u, "flat", a[:, part.reshape(-1)])

    # -- helpers --------------------------------------------------------------------------
    def _cols(self, v: str, per, form) -> np.ndarray | float:
        """A per-channel (spatial) or broadcast (flat) factor as column multipliers of an adjoint."""
        per = np.asarray(per, dtype=np.float64)
        val = self.ir.vals[v]
        if per.size == 1:
            return float(per.reshape(()))
        if form == "freq":
            q = int(np.prod(self._ref(v)[1]))
            return np.repeat(np.broadcast_to(per.reshape(-1), (val.channels,)), q)
        if per.size == int(np.prod(val.shape)):
            return per.reshape(-1)
        # per channel on a flat value: broadcast along axis 1
        shape = (1, val.shape[1]) + (1,) * (len(val.shape) - 2)
        return np.broadcast_to(per.reshape(shape), val.shape).reshape(-1)

    def _add(self, adj, u, form, a) -> None:
        if u in adj:
            f0, a0 = adj[u]
            if f0 != form:
                f0, a0 = self._to_freq(u, f0, a0)
                form, a = self._to_freq(u, form, a)
            adj[u] = (form, a0 + a)
        else:
            adj[u] = (form, a)

    def _take(self, adj, v):
        form, a = adj.pop(v)
        if self.ir.vals[v].spatial:
            return self._to_freq(v, form, a)
        return form, a

    def _to_freq(self, u, form, a):
        if form == "freq":
            return form, a
        val = self.ir.vals[u]
        if not val.spatial:
            raise _Unsupported(u)
        period, q = self._ref(u)
        self._check_size(a.shape[0], val.channels * int(np.prod(q)), int(np.prod(period)))
        self._spend(a.shape[0] * val.channels * int(np.prod(q)) * int(np.prod(period)) * 8)
        rows = a.reshape((a.shape[0], val.channels) + val.grid)
        return "freq", grid_rows_to_symbol(rows, val.grid, q, period)

    def _conv_symbol(self, op, q_out, period) -> np.ndarray:
        key = (op.name, q_out, period)
        if key not in self._symbols:
            p = op.params
            qo, qi = int(np.prod(q_out)), int(np.prod(q_out)) * int(np.prod(p["stride"]))
            f = self._grid(period)[0].shape[0]
            self._check_size(f, p["weight"].shape[0] * qo, p["weight"].shape[1] * qi)
            taps = int(np.prod(p["weight"].shape[2:])) * qo
            self._spend(f * min(taps, f) * p["weight"].shape[0] * qo * p["weight"].shape[1] * qi)
            offsets, mats = coarse_conv_taps(p["weight"], p["stride"], p["dilation"], p["pads_begin"], q_out)
            self._symbols[key] = symbol(offsets, mats, self._grid(period)[0])
        return self._symbols[key]

    def _norm(self, form, a, v, cols=None) -> float:
        """Guaranteed bound on the norm of the segment whose adjoint is ``a`` (columns scaled by ``cols``)."""
        if cols is not None:
            a = a * cols
        self._spend(a.size * min(a.shape[-1], a.shape[-2]))
        if form == "flat":
            if a.size == 0:
                return 0.0
            return float(max_singular_values(a[None])[0])
        if self.mode == "torus":
            return stack_max_singular(a) if a.size else 0.0
        period, _ = self._ref(v)
        _, weight = self._grid(period)
        peak = float(np.abs(a).max()) if a.size else 0.0
        if not math.isfinite(peak):
            return math.inf
        if peak == 0.0:
            return 0.0
        e = max(math.frexp(peak)[1], -1000)  # 2^1000 still fits a float64
        a = a * 2.0 ** -e  # a power of two (exact): the Gram sum neither underflows nor overflows
        b = (a * np.sqrt(weight)[:, None, None]).transpose(1, 0, 2).reshape(a.shape[1], -1)
        gram = float(np.prod(period)) * (b @ np.conj(b).T).real  # sum over frequencies of A A^H, by BLAS
        gram = (gram + gram.T) / 2
        top = float(np.linalg.eigvalsh(gram)[-1])
        # rounding of the Gram sum (F terms) and of the eigensolver
        slack = (4 * gram.shape[0] + a.shape[0] * a.shape[2]) * _EPS * float(np.abs(gram).sum())
        return math.ldexp(math.sqrt(max(top + slack, 0.0)), e)


class _Unsupported(Exception):
    """A sweep met a value it cannot represent; the target falls back to the product."""
