"""BatchNormalization: folded into the adjacent linear layer when possible, else a diagonal map."""

from __future__ import annotations

from lipaudit.bounds import bn_norm
from lipaudit.ops import rule
from lipaudit.ops.context import LayerRecord


@rule("BatchNormalization")
def batch_norm(node, ctx):
    if node.attrs.get("training_mode", 0):
        ctx.fail(node, "training-mode BatchNorm normalises by batch statistics (no global Lipschitz constant)")
    lip = ctx.lip(node.inputs[0])
    target = ctx.folded_bns.get(node.name)
    if target is not None:
        ctx.note_factor(node, 1.0, f"folded into {target}")
        return [lip] + [None] * (len(node.outputs) - 1)
    scale = ctx.bn_scales.get(node.name)
    if scale is None:
        ctx.fail(node, "BatchNorm parameters are not constants")
    values = {"certified": bn_norm(scale)}
    values.update({c: values["certified"] for c in ctx.compositions})
    factors = ctx.record_layer(
        LayerRecord(name=node.name, op=node.op, values=values, input_shape=list(ctx.graph.shapes.get(node.inputs[0], ())) or None,
                    note="not adjacent to a linear layer: diagonal map")
    )
    return [ctx.scale(lip, factors)] + [None] * (len(node.outputs) - 1)
