"""The framework-neutral graph every loader produces and the engine walks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Node:
    """One operator. ``name`` is the model's node name, or its first output when unnamed."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    module: str | None = None  # the source module's path (e.g. ``features.1.block.0``) when the exporter recorded it


@dataclass
class Graph:
    """Nodes in topological order, with every constant folded into ``constants``.

    ``inputs`` are the input-dependent graph inputs (the network input),
    ``shapes`` the static shape of every value that has one. When the model's
    batch dimension is dynamic, the graph is built at batch 1 and
    ``batch_shapes`` holds every value's shape at batch 2 (the engine checks that
    no op combines samples); it is ``None`` for a fixed batch. ``batch_dependent``
    names the folded constants that hold only at batch 1 (``Shape(x)[0]`` ...).
    """

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    source: dict[str, Any] = field(default_factory=dict)
    batch_shapes: dict[str, tuple[int, ...]] | None = None
    initializers: set[str] = field(default_factory=set)  # constants stored in the file (the rest were folded)
    batch_dependent: set[str] = field(default_factory=set)  # folded constants whose value depends on the batch size
    batch_computed: set[str] = field(default_factory=set)  # those computed from it (not just copies of it)

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    out.setdefault(name, []).append(node)
        return out

    def producers(self) -> dict[str, Node]:
        return {o: node for node in self.nodes for o in node.outputs if o}

    def needed_nodes(self, outputs) -> set[str]:
        """Names of the nodes the given values depend on."""
        producers = self.producers()
        needed: set[str] = set()
        stack, seen = list(outputs), set()
        while stack:
            value = stack.pop()
            if value in seen:
                continue
            seen.add(value)
            node = producers.get(value)
            if node is not None and node.name not in needed:
                needed.add(node.name)
                stack.extend(x for x in node.inputs if x)
        return needed

    def node(self, name: str) -> Node | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None
