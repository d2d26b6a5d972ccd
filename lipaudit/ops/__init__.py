"""One Lipschitz rule per ONNX operator, each with a declared contract, in a registry.

A rule is registered with :func:`rule` and states, besides its function:

- ``inputs``: every input slot it reads, by its ONNX name, with a role:
  ``DATA`` (may depend on the network input; the rule composes it),
  ``AFFINE`` (may depend on the input; it is *added* to the output and the rule
  adds its constant), or ``CONST`` (must be a constant). A present input in a
  slot the rule does not list, or an input-dependent value in a ``CONST`` slot,
  is refused by the engine before the rule runs, naming the node and the slot.
- ``attrs``: every attribute it reads. A node carrying any other attribute is
  refused: a new or unusual attribute can change the mathematics.
- ``outputs``: the outputs it gives a constant for (default: all). Any other
  output (e.g. MaxPool ``Indices``) is marked as having no Lipschitz constant,
  so a node that uses it is refused.
- ``kind``: ``linear`` (linear in its data inputs, up to a constant shift),
  ``diagonal`` (an element-wise activation), ``nonlinear`` or ``refused``.
- ``batch_axes``: an optional function giving the axes of the data input the op
  combines entries along; with a dynamic batch dimension the engine refuses an
  op that combines along the batch axis (a batch-1 certificate would not hold
  for larger batches).

Rules apply to the default ONNX domain only, to schema versions up to
:data:`REVIEWED_OPSET`. The function receives the node and the
:class:`~lipaudit.ops.context.RuleContext` and returns the Lipschitz constant of
each output with respect to the network input (``None`` for a constant output).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

# Every rule's semantics was checked against the ONNX schemas of this opset and below
# (onnx 1.23). A node whose schema is newer is refused until its rule is reviewed.
REVIEWED_OPSET = 28


class Slot(str, enum.Enum):
    DATA = "data"
    AFFINE = "affine"
    CONST = "const"


DATA, AFFINE, CONST = Slot.DATA, Slot.AFFINE, Slot.CONST
KINDS = ("linear", "diagonal", "nonlinear", "domain", "refused")  # domain: certified on --input-range only


@dataclass(frozen=True)
class Rule:
    """A registered rule: the contract the engine checks, and the function it calls."""

    op: str
    fn: Callable
    inputs: dict[str, Slot]
    attrs: frozenset[str]
    outputs: tuple[str, ...] | None
    kind: str
    constant: str  # what the rule multiplies by, in words (for `lipaudit ops` and docs/soundness.md)
    batch_axes: Callable | None = None
    reviewed_opset: int = REVIEWED_OPSET
    min_version: int = 1

    def slot_role(self, slot: str) -> Slot | None:
        return self.inputs.get(slot)

    @property
    def interval(self) -> Callable | None:
        """The op's second quantity: its interval rule (bounds on the input domain, see ``ops/box.py``), or None."""
        from lipaudit.ops.box import INTERVALS

        return INTERVALS.get(self.op)


RULES: dict[str, Rule] = {}


def rule(
    *ops: str,
    inputs: dict[str, Slot],
    attrs: tuple[str, ...] | frozenset[str] = (),
    outputs: tuple[str, ...] | None = None,
    kind: str,
    constant: str,
    batch_axes: Callable | None = None,
    min_version: int = 1,
):
    """Register a function as the rule of ``ops`` with its contract (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown rule kind {kind!r}")
    if not inputs and kind != "refused":
        raise ValueError("a rule must declare its input slots")

    def register(fn):
        for op in ops:
            if op in RULES:
                raise ValueError(f"two rules for {op}")
            RULES[op] = Rule(op, fn, dict(inputs), frozenset(attrs), outputs, kind, constant, batch_axes,
                             min_version=min_version)
        return fn

    return register


def load_rules() -> dict[str, Rule]:
    """Import every rule module (they register themselves) and return the registry."""
    from lipaudit.ops import (  # noqa: F401
        activations, arithmetic, conv, dense, domain_elementwise, intervals, normalization, norm_pooling, patterns,
        pooling, refused, resize, selection, standardize, structural,
    )

    return RULES
