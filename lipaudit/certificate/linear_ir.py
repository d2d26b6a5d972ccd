"""The network as linear maps and diagonal activations, for the expansion certificate.

Each input-dependent node becomes one :class:`Op`:

- ``conv`` (Conv, AveragePool): a zero-padded strided conv on a spatial value;
- ``scale``: multiplication by a per-channel (spatial) or element-wise (flat)
  constant: BatchNormalization, Mul/Div by a constant, Neg, Identity, Dropout,
  addition of a constant (the shift does not change the Jacobian);
- ``add`` (Add, Sub, Sum of same-shape input-dependent values), ``concat``;
- ``split``: an element-wise activation with a slope interval (:mod:`slopes`),
  including ``x * sigmoid(x)`` (SiLU);
- ``gemm`` (Gemm/MatMul with a constant weight), ``reshape`` (Flatten, Reshape,
  Squeeze, Unsqueeze) and ``gap`` (GlobalAveragePool): maps into *flat* values;
- ``cut``: anything else (MaxPool, Resize, ...). A cut's output is a fresh
  source whose Jacobian norm is bounded by the product walk's constant.

A value is *spatial* when it has shape ``(1, C, *n)`` and comes from spatial
values through conv/scale/add/concat/split ops (or is an input or a cut
output of that shape); such values live on tori (see :mod:`expansion`).
A spatial value is *clean* when its torus extension vanishes off the grid
(see docs/certificate.md): inputs, cut outputs and split outputs are clean,
a conv output is clean only for a 1x1 kernel without padding on a clean input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from lipaudit.certificate import slopes
from lipaudit.certificate.symbols import dense_weight_of_groups

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class Op:
    kind: str
    name: str
    op: str
    inputs: list[str]
    output: str
    params: dict = field(default_factory=dict)


@dataclass
class Val:
    shape: tuple[int, ...]
    spatial: bool
    clean: bool = True
    comp: int = -1
    ratio: tuple[int, ...] | None = None  # torus period = ratio * base of the component

    @property
    def channels(self) -> int:
        return int(self.shape[1])

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.shape[2:])


@dataclass
class LinearIR:
    ops: list[Op]
    vals: dict[str, Val]
    inputs: list[str]
    base: dict[int, tuple[int, ...]]  # component -> torus base period

    def period(self, v: str) -> tuple[int, ...]:
        val = self.vals[v]
        return tuple(r * b for r, b in zip(val.ratio, self.base[val.comp]))


def _spatial_shape(shape) -> bool:
    return shape is not None and len(shape) >= 3 and shape[0] == 1 and all(int(n) >= 1 for n in shape)


def build(graph, depends, outputs: list[str], bn_scales: dict, forced_cuts: set[str]) -> LinearIR:
    """The IR of the nodes the outputs depend on; ``forced_cuts`` names nodes to cut regardless."""
    producers = graph.producers()
    needed = graph.needed_nodes(outputs)
    seen = set(outputs) | {x for n in graph.nodes if n.name in needed for x in n.inputs if x}  # values used
    vals: dict[str, Val] = {}
    for x in graph.inputs:
        shape = graph.shapes.get(x)
        vals[x] = Val(tuple(shape or ()), _spatial_shape(shape))
    ops: list[Op] = []
    for node in graph.nodes:
        if node.name not in needed or not any(depends(i) for i in node.inputs):
            continue
        converted = None
        if node.name not in forced_cuts and node.domain in DEFAULT_DOMAINS:
            extra_used = [o for o in node.outputs[1:] if o and o in seen]
            if not extra_used:
                try:
                    converted = _convert(node, graph, depends, vals, bn_scales, producers)
                except (KeyError, ValueError, TypeError, IndexError):
                    converted = None
        if converted is None:
            for o in node.outputs:
                if o:
                    shape = graph.shapes.get(o)
                    vals[o] = Val(tuple(shape or ()), _spatial_shape(shape))
                    ops.append(Op("cut", node.name, node.op, [i for i in node.inputs if depends(i)], o))
            continue
        op, val = converted
        vals[op.output] = val
        ops.append(op)
    return LinearIR(ops, vals, list(graph.inputs), {})


def _convert(node, graph, depends, vals, bn_scales, producers):
    """``(Op, Val)`` for a node with a linear or split rule here, else None."""
    data = [i for i in node.inputs if depends(i)]
    out = node.outputs[0]
    out_shape = graph.shapes.get(out)
    if out_shape is None or any(v not in vals for v in data):
        return None
    out_shape = tuple(int(n) for n in out_shape)
    const = graph.constants.get
    ins = [vals[v] for v in data]
    spatial = all(v.spatial for v in ins)
    flat_ok = not any(v.spatial for v in ins)
    op = node.op

    def make(kind, params=None, spatial_out=None, clean=None, inputs=None):
        sp = spatial if spatial_out is None else spatial_out
        cl = all(v.clean for v in ins) if clean is None else clean
        return Op(kind, node.name, op, inputs or data, out, params or {}), Val(out_shape, sp, cl if sp else True)

    if op in ("Conv", "AveragePool"):
        if len(data) != 1 or node.inputs[0] != data[0] or not spatial:
            return None
        u = vals[data[0]]
        d = len(u.grid)
        if op == "Conv":
            w = const(node.inputs[1])
            if w is None or (len(node.inputs) > 2 and node.inputs[2] and const(node.inputs[2]) is None):
                return None
            w = np.asarray(w, dtype=np.float64)
            groups = int(node.attrs.get("group", 1))
            k = list(w.shape[2:])
            dil = [int(x) for x in node.attrs.get("dilations", [1] * d)]
            weight = dense_weight_of_groups(w, groups)
            if weight.shape[1] != u.channels:
                return None
        else:
            if set(node.attrs) - {"kernel_shape", "strides", "pads", "count_include_pad", "ceil_mode", "auto_pad"}:
                return None
            if int(node.attrs.get("ceil_mode", 0)):
                return None
            k = [int(x) for x in node.attrs["kernel_shape"]]
            dil = [1] * d
            weight = np.zeros((u.channels, u.channels) + tuple(k))
            for c in range(u.channels):
                weight[c, c] = 1.0 / math.prod(k)
        if not np.all(np.isfinite(weight)) or len(k) != d:
            return None
        from lipaudit.ops.attrs import resolve_pads

        s = [int(x) for x in node.attrs.get("strides", [1] * d)]
        pads = resolve_pads(node.attrs, u.grid, k, s, dil)
        if op == "AveragePool" and any(pads) and not int(node.attrs.get("count_include_pad", 0)):
            return None
        if any(p < 0 for p in pads):
            return None
        pb, pe = pads[:d], pads[d:]
        if any(pads) and not u.clean:
            return None  # the padding would read the torus off the grid: cut (see docs)
        expect = tuple((n + a + b - (dd * (kk - 1) + 1)) // ss + 1 for n, a, b, kk, ss, dd in zip(u.grid, pb, pe, k, s, dil))
        if out_shape[2:] != expect or out_shape[1] != weight.shape[0]:
            return None
        clean = u.clean and not any(pads) and all(kk == 1 for kk in k)
        return make("conv", {"weight": weight, "stride": tuple(s), "dilation": tuple(dil), "pads_begin": tuple(pb),
                             "pads_end": tuple(pe)}, clean=clean)

    if op in ("BatchNormalization", "Mul", "Div", "Neg", "Identity", "Dropout", "Add", "Sub", "Sum"):
        shapes_equal = all(v.shape == out_shape for v in ins)
        if op in ("Add", "Sub", "Sum") and len(data) >= 2:
            if not shapes_equal or (op == "Sub" and len(data) != 2) or len(data) != len([i for i in node.inputs if i]):
                return None
            signs = [1.0, -1.0] if op == "Sub" else [1.0] * len(data)
            return make("add", {"signs": signs})
        if op == "Mul" and len(data) == 2 and not node.attrs:
            return _silu(node, data, graph, vals, out_shape, producers)  # x * sigmoid(x)
        if len(data) != 1 or not shapes_equal:
            return None
        x = data[0]
        factor = None
        if op == "BatchNormalization":
            from lipaudit.ops.normalization import training_mode_reason

            scale = bn_scales.get(node.name)
            if scale is None or node.inputs[0] != x or training_mode_reason(node, int(graph.source.get("opset") or 13)) or node.attrs.get("training_mode", 0):
                return None
            if len(out_shape) < 2 or scale.shape != (out_shape[1],):
                return None
            factor = np.asarray(scale, dtype=np.float64).reshape((1, -1) + (1,) * (len(out_shape) - 2))
        elif op in ("Identity", "Dropout"):
            if op == "Dropout" and (len(node.inputs) > 2 and node.inputs[2] and const(node.inputs[2]) is None):
                return None
            if op == "Dropout" and len(node.inputs) > 2 and node.inputs[2] and bool(np.asarray(const(node.inputs[2])).any()):
                return None  # training_mode=True
            factor = np.ones(1)
        elif op == "Neg":
            factor = -np.ones(1)
        elif op in ("Add", "Sub"):
            other = [i for i in node.inputs if i and i != x]
            if len(other) != 1 or const(other[0]) is None or set(node.attrs) - {"broadcast", "axis"} or node.attrs:
                return None
            factor = -np.ones(1) if (op == "Sub" and node.inputs[1] == x) else np.ones(1)
        elif op in ("Mul", "Div"):
            if node.attrs:
                return None
            other = [i for i in node.inputs if i and i != x]
            if len(other) != 1:
                return None
            c = const(other[0])
            if c is None:
                return None
            if op == "Div" and node.inputs[0] != x:
                return None
            c = np.asarray(c, dtype=np.float64)
            if op == "Div":
                if np.any(c == 0):
                    return None
                c = 1.0 / c
            factor = c
        if factor is None or not np.all(np.isfinite(factor)):
            return None
        if np.broadcast_shapes(np.shape(factor), out_shape) != out_shape:
            return None
        full = np.broadcast_to(factor, out_shape)
        if spatial:
            per = _per_channel(full)
            if per is None:
                return None
            return make("scale", {"scale": per})
        if not flat_ok:
            return None
        return make("scale", {"scale": np.array(full, dtype=np.float64).reshape(-1)})

    if op == "Concat":
        if len(data) != len([i for i in node.inputs if i]):
            return None
        axis = int(node.attrs.get("axis", 1)) % len(out_shape)
        if spatial and axis != 1:
            return None
        if not (spatial or flat_ok):
            return None
        return make("concat", {"axis": axis})

    if op in ("Gemm", "MatMul") and flat_ok or (op in ("Gemm", "MatMul") and spatial and op == "MatMul"):
        from lipaudit.ops.dense import dense_weight

        class _Ctx:
            @staticmethod
            def const(name):
                return graph.constants.get(name) if name else None

        found = dense_weight(node, _Ctx)
        if found is None or found[0] != node.inputs[0] or len(data) != 1:
            return None
        if op == "Gemm" and (node.attrs.get("transA", 0) or (len(node.inputs) > 2 and node.inputs[2] and const(node.inputs[2]) is None)):
            return None
        w = np.asarray(found[1], dtype=np.float64)
        x_shape = vals[data[0]].shape
        if not x_shape or x_shape[-1] != w.shape[1] or out_shape[-1] != w.shape[0] or not np.all(np.isfinite(w)):
            return None
        if int(np.prod(x_shape[:-1])) != int(np.prod(out_shape[:-1])):
            return None
        return make("gemm", {"weight": w}, spatial_out=False)

    if op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        if len(data) != 1 or node.inputs[0] != data[0]:
            return None
        if int(np.prod(out_shape)) != int(np.prod(vals[data[0]].shape)):
            return None
        return make("reshape", spatial_out=False)

    if op == "GlobalAveragePool":
        if not spatial or len(data) != 1:
            return None
        return make("gap", spatial_out=False)

    if len(data) == 1 and node.inputs[0] == data[0]:
        interval = slopes.slope_interval(node, const, vals[data[0]].shape)
        if interval is not None and vals[data[0]].shape == out_shape:
            return make("split", {"interval": interval}, clean=True)
    return None


def _per_channel(full: np.ndarray) -> np.ndarray | None:
    """The per-channel vector of a factor broadcast to (1, C, *n), or None when it varies in space."""
    per = full.reshape(full.shape[0], full.shape[1], -1)[0]
    if not np.all(per == per[:, :1]):
        return None
    return np.array(per[:, 0], dtype=np.float64)


def _silu(node, data, graph, vals, out_shape, producers):
    a, b = node.inputs[:2]
    for x, g in ((a, b), (b, a)):
        gate = producers.get(g)
        if gate is not None and gate.op == "Sigmoid" and gate.domain in DEFAULT_DOMAINS and gate.inputs[0] == x \
                and not set(gate.attrs) - {"consumed_inputs"} and x in vals and vals[x].shape == out_shape:
            v = vals[x]
            return (Op("split", node.name, "SiLU", [x], node.outputs[0], {"interval": slopes.SILU}),
                    Val(out_shape, v.spatial, True))
    return None


def assign_levels(ir: LinearIR) -> str | None:
    """Give every spatial value a component and an integer torus ratio; returns an op to cut on a conflict."""
    edges: dict[str, list[tuple[str, tuple[Fraction, ...], str]]] = {}

    def link(a, b, factor, name):  # ratio[a] = ratio[b] * factor
        edges.setdefault(a, []).append((b, tuple(Fraction(1) / f for f in factor), name))
        edges.setdefault(b, []).append((a, tuple(factor), name))

    for op in ir.ops:
        out = ir.vals[op.output]
        if not out.spatial or op.kind == "cut":
            continue
        d = len(out.grid)
        for u in op.inputs:
            if not ir.vals[u].spatial or len(ir.vals[u].grid) != d:
                return op.name
            factor = tuple(Fraction(s) for s in op.params["stride"]) if op.kind == "conv" else (Fraction(1),) * d
            link(u, op.output, factor, op.name)
    ratio: dict[str, tuple[Fraction, ...]] = {}
    comp = 0
    for v, val in ir.vals.items():
        if not val.spatial or v in ratio:
            continue
        d = len(val.grid)
        ratio[v] = (Fraction(1),) * d
        members, queue = [v], [v]
        while queue:
            a = queue.pop()
            for b, f, name in edges.get(a, []):
                r = tuple(x * y for x, y in zip(ratio[a], f))
                if b in ratio:
                    if ratio[b] != r:
                        return name
                    continue
                ratio[b] = r
                members.append(b)
                queue.append(b)
        low = [min(ratio[m][i] for m in members) for i in range(d)]
        scaled = {m: tuple(ratio[m][i] / low[i] for i in range(d)) for m in members}
        lcm = [math.lcm(*(scaled[m][i].denominator for m in members)) for i in range(d)]
        for m in members:
            ir.vals[m].comp = comp
            ir.vals[m].ratio = tuple(int(scaled[m][i] * lcm[i]) for i in range(d))
        comp += 1
    # torus periods: every value's grid fits, and every padded read wraps off the grid
    need: dict[int, list[int]] = {}
    for v, val in ir.vals.items():
        if val.spatial:
            base = need.setdefault(val.comp, [1] * len(val.grid))
            for i, n in enumerate(val.grid):
                base[i] = max(base[i], -(-n // val.ratio[i]))
    for op in ir.ops:
        if op.kind == "conv":
            u = ir.vals[op.inputs[0]]
            base = need[u.comp]
            for i, n in enumerate(u.grid):
                extra = max(op.params["pads_begin"][i], op.params["pads_end"][i])
                base[i] = max(base[i], -(-(n + extra) // u.ratio[i]))
    ir.base = {c: tuple(b) for c, b in need.items()}
    return None
