"""What a rule sees: constants, shapes and the Lipschitz constants computed so far.

A value's entry in ``RuleContext.lips`` is one of:
- ``None``: the value does not depend on the network input (a function of constants);
- a :data:`Lip` dict: its Lipschitz constant w.r.t. the network input, per composition;
- a :class:`Refusal`: it depends on the input, but no constant can be given for it
  (an op without a sound rule upstream). Refusals propagate through the helpers
  below, so per-layer values are still computed downstream while the network
  certificate says why it is unavailable.

All arithmetic on constants is non-finite safe: NaN or an infinite factor gives
``inf`` (never NaN, never a finite number), including ``inf * 0``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from lipaudit.errors import InputShapeError, UnsupportedOpError
from lipaudit.graph import Graph, Node

# Lipschitz constant of a value with respect to the network input, one entry per
# composition (e.g. {"tn": 3.2, "certified": 4.1}).
Lip = dict[str, float]


@dataclass(frozen=True)
class Refusal:
    """Why a value has no Lipschitz constant: the node, its op, the reason, and what would help."""

    node: str
    op: str
    reason: str
    slot: str | None = None
    hint: str | None = None
    module: str | None = None  # the source module's path, when the exporter recorded it

    def message(self) -> str:
        where = (f"node {self.node!r} ({self.op})" + (f" in module {self.module!r}" if self.module else "")
                 + (f", slot {self.slot!r}" if self.slot else ""))
        return f"{where}: {self.reason}" + (f"; {self.hint}" if self.hint else "")


LipValue = Union[Lip, None, Refusal]


def safe_mul(a: float, b: float) -> float:
    """``a * b`` for non-negative constants, with NaN or inf in either giving inf (so ``inf * 0`` is inf)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    product = a * b
    if a > 0 and b > 0 and product < sys.float_info.min:  # underflow: the exact product is at most the
        return sys.float_info.min  # smallest normal number, which stays an upper bound through later factors
    return product


def finite_or_inf(v: float) -> float:
    return float(v) if math.isfinite(v) else math.inf


@dataclass
class LayerRecord:
    """A measured layer: conv, transposed conv, dense or stand-alone BatchNorm."""

    name: str
    op: str
    values: dict[str, Any]  # method -> BoundResult
    kernel_shape: list[int] | None = None
    strides: list[int] | None = None
    pads: list[int] | None = None
    dilations: list[int] | None = None
    groups: int | None = None
    padding_mode: str | None = None
    input_shape: list[int] | None = None
    weight_shape: list[int] | None = None
    folded: list[str] = field(default_factory=list)
    note: str | None = None
    share: float = 0.0
    module: str | None = None  # the source module's path (dynamo exporter metadata), filled in by record_layer


@dataclass
class RuleContext:
    graph: Graph
    compositions: list[str]
    conv_methods: tuple[str, ...]
    settings: Any  # lipaudit.engine.AuditSettings
    lips: dict[str, LipValue] = field(default_factory=dict)
    layers: list[LayerRecord] = field(default_factory=list)
    unsound: dict[str, list[str]] = field(default_factory=dict)  # composition -> layers with estimates
    fold_after: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    fold_before: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    folded_bns: dict[str, str] = field(default_factory=dict)  # BN node -> layer it is folded into
    bn_scales: dict[str, np.ndarray] = field(default_factory=dict)  # BN node -> gamma / sqrt(var + eps)
    factors: list[dict[str, Any]] = field(default_factory=list)  # non-layer factors, for the report
    precomputed: dict[str, dict] = field(default_factory=dict)  # conv node -> values computed in parallel
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (code, node, message) for findings
    domain: Any = None  # lipaudit.domain.InputDomain: --input-range, or None (global certificates only)
    boxes: dict[str, Any] = field(default_factory=dict)  # value -> Box | NoBox on the domain (see ops/box.py)
    centers: dict[str, Any] = field(default_factory=dict)  # value -> Box enclosing it at the domain's center
    domain_radius: float = 0.0  # l2 radius of the domain around its center
    forms: dict[str, Any] = field(default_factory=dict)  # value -> its affine form in earlier boxes (ops/linear_forms.py)
    form_radii: dict[str, Any] = field(default_factory=dict)  # base value -> its radius, as used by the forms
    form_users: dict[str, int] | None = None  # value -> consumers not yet walked (forms are freed after the last)
    shared_lips: set[str] | None = None  # values inside a folded BN pair: their entry in lips is the pair's constant
    domain_uses: list[dict[str, Any]] = field(default_factory=list)  # factors that hold on the domain only
    _producers: dict[str, Node] | None = None
    _modules: dict[str, str] | None = None

    # -- lookups -------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name) if name else None

    def lip(self, name: str) -> LipValue:
        if not name or name in self.graph.constants:
            return None
        if name not in self.lips:
            raise KeyError(f"value {name!r} used before it is computed")
        return self.lips[name]

    def depends(self, name: str) -> bool:
        """True when the value depends on the network input (refused values included)."""
        return bool(name) and name not in self.graph.constants and self.lips.get(name) is not None

    def producers(self) -> dict[str, Node]:
        if self._producers is None:
            self._producers = self.graph.producers()
        return self._producers

    def shape(self, name: str, node: Node) -> tuple[int, ...]:
        shape = self.graph.shapes.get(name)
        if shape is None:
            where = f" in module {node.module!r}" if getattr(node, "module", None) else ""
            raise InputShapeError(
                f"the shape of {name!r} (input of node {node.name!r}, {node.op}{where}) is unknown; give --input-shape"
            )
        return shape

    def opset(self) -> int:
        return int(self.graph.source.get("opset") or 13)

    # -- bounds on the input domain (see lipaudit/ops/box.py) ------------------
    def box(self, name: str):
        """The value's :class:`~lipaudit.ops.box.Box` on the domain, or a ``NoBox`` saying why there is none."""
        from lipaudit.ops.box import Box, NoBox

        c = self.const(name)
        if c is not None:
            c = np.asarray(c)
            if np.issubdtype(c.dtype, np.number) or c.dtype == bool:
                return Box.point(c.astype(np.float64))
            return NoBox(name, "constant", "not a numeric constant")
        found = self.boxes.get(name)
        if found is None:
            return NoBox(name, "?", "no bounds were computed for this value" if self.domain is not None
                         else "no --input-range was given")
        return found

    def known_box(self, node: Node, name: str):
        """For interval rules: the input's box, or stop the rule (its outputs get no box, naming the cause)."""
        from lipaudit.ops.box import NoBox, NoInterval

        if self.domain is None:
            raise NoInterval("no --input-range was given")
        b = self.box(name)
        if isinstance(b, NoBox):
            raise NoInterval(f"input {name!r} has no bounds", upstream=b)
        return b

    def domain_box(self, node: Node, name: str, what: str):
        """For Lipschitz rules that hold on the domain only: the box of ``name``, or refuse the node saying why."""
        from lipaudit.ops.box import NoBox

        if self.domain is None:
            self.fail(node, f"{what} has no global Lipschitz constant",
                      hint="give --input-range LO,HI to certify it on an input domain, or use --output/--until to "
                           "certify up to a value before it")
        b = self.box(name)
        if isinstance(b, NoBox):
            self.fail(node, f"{what} is certified on the input domain from bounds on {name!r}, which are unavailable "
                            f"(lost at {b.message()})", hint="use --output/--until to certify up to a value before it")
        return b

    def used_domain(self, node: Node, rule: str, factor: float | None = None) -> None:
        """Record that a factor holds on the input domain only (the network certificate then does too)."""
        entry: dict[str, Any] = {"name": node.name, "op": node.op, "rule": rule}
        if getattr(node, "module", None):
            entry["module"] = node.module
        if factor is not None:
            entry["factor"] = finite_or_inf(float(factor))
        self.domain_uses.append(entry)

    # -- building results ----------------------------------------------------
    def fail(self, node: Node, reason: str, hint: str | None = None):
        raise UnsupportedOpError(node.op, node.name, reason, hint=hint)

    def scale(self, lip: LipValue, factor: float | dict[str, float]) -> LipValue:
        if lip is None or isinstance(lip, Refusal):
            return lip
        if isinstance(factor, dict):
            return {c: safe_mul(v, factor[c]) for c, v in lip.items()}
        return {c: safe_mul(v, factor) for c, v in lip.items()}

    def add(self, lips: list[LipValue]) -> LipValue:
        """Triangle inequality: the constant of a sum is at most the sum of the constants."""
        present = [x for x in lips if x is not None]
        refused = [x for x in present if isinstance(x, Refusal)]
        if refused:
            return refused[0]
        if not present:
            return None
        return {c: finite_or_inf(sum(x[c] for x in present)) for c in self.compositions}

    def rss(self, lips: list[LipValue]) -> LipValue:
        """Root-sum-square: for a concatenation, or a max/min of several values."""
        present = [x for x in lips if x is not None]
        refused = [x for x in present if isinstance(x, Refusal)]
        if refused:
            return refused[0]
        if not present:
            return None
        return {c: finite_or_inf(math.hypot(*(x[c] for x in present))) for c in self.compositions}

    def record_layer(self, record: LayerRecord) -> dict[str, float]:
        """Store a layer and return its factor for every composition."""
        if record.module is None:
            record.module = self.module_of(record.name)
        self.layers.append(record)
        factors = {}
        for c in self.compositions:
            r = record.values.get(c) or record.values["certified"]
            factors[c] = finite_or_inf(r.value)
            if not r.kind.is_sound_upper:
                self.unsound.setdefault(c, []).append(record.name)
        return factors

    def note_factor(self, node: Node, factor: float, why: str | None = None) -> None:
        """Record the constant factor a non-layer op contributes (shown in reports)."""
        entry: dict[str, Any] = {"name": node.name, "op": node.op, "factor": finite_or_inf(float(factor))}
        if why:
            entry["rule"] = why
        if getattr(node, "module", None):
            entry["module"] = node.module
        self.factors.append(entry)

    def module_of(self, node_name: str) -> str | None:
        """The source module's path of a node (dynamo exporter metadata), or None."""
        if self._modules is None:
            self._modules = {n.name: n.module for n in self.graph.nodes if getattr(n, "module", None)}
        return self._modules.get(node_name)

    def note(self, code: str, node: Node, message: str) -> None:
        """A finding the report should carry about this node (e.g. a rounding cast, non-finite weights)."""
        self.notes.append((code, node.name, message))

    def broadcast_factor(self, name: str, out_name: str, node: Node) -> float:
        """Norm of broadcasting ``name`` to the output's shape: sqrt(copies) (broadcasting copies uniformly)."""
        src = self.graph.shapes.get(name)
        dst = self.graph.shapes.get(out_name)
        if src is None or dst is None:
            self.shape(name if src is None else out_name, node)
        n_src, n_dst = int(np.prod(src)), int(np.prod(dst))
        return math.sqrt(n_dst / n_src) if n_src and n_dst > n_src else 1.0
