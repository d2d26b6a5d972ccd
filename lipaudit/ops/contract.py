"""The engine's check of a node against its rule's declared contract, before the rule runs.

Each check returns a :class:`~lipaudit.ops.context.Refusal` naming the node (and
the slot or attribute), or ``None`` when the rule may run. Slots are named by
the node's own ONNX schema version (``onnx.defs``), so a slot is the same thing
the ONNX specification calls it.
"""

from __future__ import annotations

import functools

from lipaudit.graph import Node
from lipaudit.ops import CONST, Rule
from lipaudit.ops.context import Refusal, RuleContext

DEFAULT_DOMAINS = ("", "ai.onnx")
HINT_STOP = "use --output/--until to certify up to a value before it"
# Slots where a constant computed from the batch size (``x.view(x.size(0), -1)``) is fine: they only set the
# output's shape, and the engine checks at batch 2 that the batch stays on axis 0 and samples stay apart.
BATCH_SIZED_SLOTS = {("Reshape", "shape"), ("Expand", "shape")}
# Ops whose output is not a function of their inputs: never constants, even without inputs.
NON_DETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


@functools.lru_cache(maxsize=None)
def schema(op: str, opset: int):
    """The ONNX schema in force for ``op`` at ``opset`` in the default domain, or None."""
    import onnx.defs

    try:
        return onnx.defs.get_schema(op, opset, "")
    except Exception:  # onnx raises SchemaError for unknown ops / versions
        return None


def slot_name(formals, index: int) -> str:
    """The ONNX name of input/output ``index`` (variadic parameters cover the rest)."""
    if index < len(formals):
        return formals[index].name
    if formals and _is_variadic(formals[-1]):
        return formals[-1].name
    return f"#{index}"


def _is_variadic(param) -> bool:
    import onnx.defs

    return param.option == onnx.defs.OpSchema.FormalParameterOption.Variadic


def unknown_op(node: Node) -> Refusal:
    if node.domain not in DEFAULT_DOMAINS:
        return Refusal(node.name, f"{node.domain}::{node.op}",
                       f"custom-domain op: lipaudit's rules cover the default ONNX domain only, never ops matched by name",
                       hint=HINT_STOP)
    return Refusal(node.name, node.op, "no Lipschitz rule for this op (run `lipaudit ops` to list supported ops)",
                   hint=HINT_STOP)


def check_node(rule: Rule, node: Node, ctx: RuleContext, dynamic_batch: bool) -> Refusal | None:
    """Every contract check, in order: domain, schema version, attributes, input slots, batch axis."""
    if node.domain not in DEFAULT_DOMAINS:
        return unknown_op(node)
    opset = ctx.opset()
    sch = schema(node.op, opset)
    if sch is None:
        return Refusal(node.name, node.op, f"onnx has no schema for {node.op} at opset {opset}")
    if sch.since_version > rule.reviewed_opset:
        return Refusal(node.name, node.op, f"{node.op}-{sch.since_version} is newer than the versions lipaudit's rule "
                                           f"was checked against (up to opset {rule.reviewed_opset})")
    if sch.since_version < rule.min_version:
        return Refusal(node.name, node.op, f"{node.op}-{sch.since_version} (opset {opset}) is older than the versions "
                                           f"lipaudit's rule supports ({node.op}-{rule.min_version} and newer)")
    for attr in node.attrs:
        if attr not in rule.attrs:
            return Refusal(node.name, node.op, f"attribute {attr!r} is not read by lipaudit's rule for {node.op}, "
                                               f"and it may change the mathematics")
    for index, value in enumerate(node.inputs):
        if not value:
            continue
        slot = slot_name(sch.inputs, index)
        role = rule.slot_role(slot)
        if role is None:
            return Refusal(node.name, node.op, f"input slot {slot!r} is not read by lipaudit's rule for {node.op}",
                           slot=slot)
        if role is CONST and ctx.depends(value):
            return Refusal(node.name, node.op,
                           f"an input-dependent value ({value!r}) reaches slot {slot!r}, which the rule can only "
                           f"treat as a constant", slot=slot, hint=HINT_STOP)
    if dynamic_batch:
        for index, value in enumerate(node.inputs):
            if value in ctx.graph.batch_computed or (value in ctx.graph.batch_dependent
                                                     and (node.op, slot_name(sch.inputs, index)) not in BATCH_SIZED_SLOTS):
                return Refusal(node.name, node.op, f"{value!r} was computed from the batch size (e.g. Shape of an "
                                                   f"input) and holds only at batch 1; in slot "
                                                   f"{slot_name(sch.inputs, index)!r} it changes the map with the batch",
                               slot=slot_name(sch.inputs, index), hint="give --input-shape with your batch size")
    if dynamic_batch and rule.batch_axes is not None:
        axes = rule.batch_axes(node, ctx)
        if 0 in axes:
            return Refusal(node.name, node.op, "combines entries along the batch axis: a certificate for one sample "
                                               "would not hold for a batch", hint="give --input-shape with your batch size")
    return None


def undeclared_outputs(rule: Rule, node: Node, ctx: RuleContext) -> dict[str, Refusal]:
    """Outputs the rule gives no constant for (e.g. MaxPool ``Indices``): each becomes a refusal."""
    if rule.outputs is None:
        return {}
    sch = schema(node.op, ctx.opset())
    out = {}
    for index, value in enumerate(node.outputs):
        if not value:
            continue
        slot = slot_name(sch.outputs, index) if sch is not None else f"#{index}"
        if slot not in rule.outputs:
            out[value] = Refusal(node.name, node.op, f"output {slot!r} has no Lipschitz constant (not a continuous "
                                                     f"function of the input, or not an inference-mode output)",
                                 slot=slot, hint=HINT_STOP)
    return out
