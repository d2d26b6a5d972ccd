"""One Lipschitz rule per ONNX operator, in a registry.

A rule receives the node and the :class:`~lipaudit.ops.context.RuleContext`
(constants, shapes, the Lipschitz constants of its inputs) and returns the
Lipschitz constant of each output with respect to the network input
(``None`` for an output that does not depend on it). Rules that measure a
layer (conv, dense, BatchNorm) also record it in the context.
An op without a rule is an error that names the op and the node.
"""

from __future__ import annotations

from typing import Callable

RULES: dict[str, Callable] = {}


def rule(*ops: str):
    """Register a function as the rule of the given op types."""

    def register(fn):
        for op in ops:
            RULES[op] = fn
        return fn

    return register


def load_rules() -> dict[str, Callable]:
    """Import every rule module (they register themselves) and return the registry."""
    from lipaudit.ops import activations, arithmetic, conv, dense, normalization, pooling, refused, resize, structural  # noqa: F401

    return RULES
