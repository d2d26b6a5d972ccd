"""BatchNormalization: folded into the adjacent linear layer when possible, else a diagonal map.

Only inference-mode BatchNorm is a fixed affine map. Training mode (opset 14+
``training_mode=1``; opset 1-6 ``is_test=0``, the default; opset 7-9 when the
training outputs are requested) normalises by batch statistics and is refused.
Opset 1-8 ``spatial=0`` keeps one statistic per element, not per channel: refused.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.bounds import bn_norm
from lipaudit.ops import CONST, DATA, rule
from lipaudit.ops.context import LayerRecord
from lipaudit.values import BoundResult, Kind

BN_SLOTS = {"X": DATA, "scale": CONST, "B": CONST, "mean": CONST, "var": CONST, "input_mean": CONST, "input_var": CONST}


def training_mode_reason(node, opset: int) -> str | None:
    """Why this BatchNorm is not the inference-mode affine map, or None."""
    from lipaudit.ops.contract import schema

    sch = schema("BatchNormalization", opset)
    version = sch.since_version if sch is not None else opset
    if node.attrs.get("training_mode", 0):
        return "training_mode=1 normalises by batch statistics (no global Lipschitz constant)"
    if version < 7 and not node.attrs.get("is_test", 0):
        return f"BatchNormalization-{version} with is_test=0 (the default) runs in training mode"
    if version < 14 and sum(1 for o in node.outputs if o) > 1:
        return "the training outputs (running or saved statistics) are requested: training mode"
    if not node.attrs.get("spatial", 1):
        return "spatial=0 keeps one statistic per element; only per-channel BatchNorm is supported"
    return None


@rule("BatchNormalization", inputs=BN_SLOTS, attrs=("epsilon", "momentum", "training_mode", "is_test", "spatial",
                                                    "consumed_inputs"),
      outputs=("Y",), kind="linear",
      constant="folded into the adjacent conv/dense layer, else max |gamma / sqrt(var + eps)| (a diagonal map)")
def batch_norm(node, ctx):
    reason = training_mode_reason(node, ctx.opset())
    if reason:
        ctx.fail(node, reason)
    lip = ctx.lip(node.inputs[0])
    scale = ctx.bn_scales.get(node.name)
    shape = ctx.graph.shapes.get(node.inputs[0])
    if scale is not None and (shape is None or len(shape) < 2 or shape[1] != scale.shape[0]):
        # the specification wants one statistic per entry of axis 1; anything else is a malformed model
        # whose runtime behaviour (broadcasting or an error) is not the map lipaudit would certify
        ctx.fail(node, f"{scale.shape[0]} statistics for an input of shape {list(shape) if shape else 'unknown'}: "
                       f"BatchNorm needs one per channel (axis 1)")
    target = ctx.folded_bns.get(node.name)
    if target is not None:
        ctx.note_factor(node, 1.0, f"folded into {target}")
        return [lip] + [None] * (len(node.outputs) - 1)
    if scale is None:
        ctx.fail(node, "BatchNorm parameters are not constants of one value per channel")
    if np.all(np.isfinite(scale)):
        values = {"certified": bn_norm(scale)}
    else:
        values = {"certified": BoundResult(math.inf, Kind.UPPER, "diag", detail={"nonfinite_weights": True})}
        ctx.note("LIP010", node, f"BatchNorm {node.name}: gamma / sqrt(var + eps) holds NaN or inf")
    values.update({c: values["certified"] for c in ctx.compositions})
    factors = ctx.record_layer(
        LayerRecord(name=node.name, op=node.op, values=values, input_shape=list(ctx.graph.shapes.get(node.inputs[0], ())) or None,
                    note="not adjacent to a linear layer: diagonal map")
    )
    return [ctx.scale(lip, factors)] + [None] * (len(node.outputs) - 1)
