"""What a rule sees: constants, shapes and the Lipschitz constants computed so far."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipaudit.errors import InputShapeError, UnsupportedOpError
from lipaudit.graph import Graph, Node

# Lipschitz constant of a value with respect to the network input, one entry per
# composition (e.g. {"tn": 3.2, "certified": 4.1}); None when the value is constant.
Lip = dict[str, float]


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


@dataclass
class RuleContext:
    graph: Graph
    compositions: list[str]
    conv_methods: tuple[str, ...]
    settings: Any  # lipaudit.engine.AuditSettings
    lips: dict[str, Lip | None] = field(default_factory=dict)
    layers: list[LayerRecord] = field(default_factory=list)
    unsound: dict[str, list[str]] = field(default_factory=dict)  # composition -> layers with estimates
    fold_after: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    fold_before: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    folded_bns: dict[str, str] = field(default_factory=dict)  # BN node -> layer it is folded into
    bn_scales: dict[str, np.ndarray] = field(default_factory=dict)  # BN node -> gamma / sqrt(var + eps)
    factors: list[dict[str, Any]] = field(default_factory=list)  # non-layer factors, for the report
    precomputed: dict[str, dict] = field(default_factory=dict)  # conv node -> values computed in parallel

    # -- lookups -------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name) if name else None

    def lip(self, name: str) -> Lip | None:
        if not name or name in self.graph.constants:
            return None
        if name not in self.lips:
            raise KeyError(f"value {name!r} used before it is computed")
        return self.lips[name]

    def shape(self, name: str, node: Node) -> tuple[int, ...]:
        shape = self.graph.shapes.get(name)
        if shape is None:
            raise InputShapeError(
                f"the shape of {name!r} (input of node {node.name!r}, {node.op}) is unknown; give --input-shape"
            )
        return shape

    # -- building results ----------------------------------------------------
    def fail(self, node: Node, reason: str):
        raise UnsupportedOpError(node.op, node.name, reason)

    def scale(self, lip: Lip | None, factor: float | dict[str, float]) -> Lip | None:
        if lip is None:
            return None
        if isinstance(factor, dict):
            return {c: v * factor[c] for c, v in lip.items()}
        return {c: v * factor for c, v in lip.items()}

    def add(self, lips: list[Lip | None]) -> Lip | None:
        present = [x for x in lips if x is not None]
        if not present:
            return None
        return {c: sum(x[c] for x in present) for c in self.compositions}

    def rss(self, lips: list[Lip | None]) -> Lip | None:
        present = [x for x in lips if x is not None]
        if not present:
            return None
        return {c: math.sqrt(sum(x[c] ** 2 for x in present)) for c in self.compositions}

    def record_layer(self, record: LayerRecord) -> dict[str, float]:
        """Store a layer and return its factor for every composition."""
        self.layers.append(record)
        factors = {}
        for c in self.compositions:
            r = record.values.get(c) or record.values["certified"]
            factors[c] = r.value
            if not r.kind.is_sound_upper:
                self.unsound.setdefault(c, []).append(record.name)
        return factors

    def note_factor(self, node: Node, factor: float, why: str | None = None) -> None:
        """Record the constant factor a non-layer op contributes (shown in reports)."""
        entry: dict[str, Any] = {"name": node.name, "op": node.op, "factor": float(factor)}
        if why:
            entry["rule"] = why
        self.factors.append(entry)

    def broadcast_factor(self, name: str, out_name: str, node: Node) -> float:
        """Norm of broadcasting ``name`` to the output's shape: sqrt(copies)."""
        src = self.graph.shapes.get(name)
        dst = self.graph.shapes.get(out_name)
        if src is None or dst is None:
            self.shape(name if src is None else out_name, node)
        n_src, n_dst = int(np.prod(src)), int(np.prod(dst))
        return math.sqrt(n_dst / n_src) if n_src and n_dst > n_src else 1.0
