"""Plan which BatchNorm nodes fold into an adjacent linear layer.

A BN folds *after* a Conv/ConvTranspose/Gemm/MatMul when the chain between
them holds only constant bias additions, each value consumed once; it folds
*before* a layer when its output feeds only that layer's data input. In both
cases nothing non-linear sits between them, so the pair is one affine map
whose linear part is the folded kernel. Any other BN stays a diagonal map.
"""

from __future__ import annotations

from lipaudit.bounds import bn_scale
from lipaudit.graph import Graph
from lipaudit.ops.context import RuleContext

LINEAR = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def plan_bn_folds(graph: Graph, ctx: RuleContext) -> None:
    consumers = graph.consumers()
    producers = graph.producers()
    outputs = set(graph.outputs)
    for node in graph.nodes:
        if node.op != "BatchNormalization":
            continue
        params = [graph.constants.get(name) for name in node.inputs[1:5]]
        if any(p is None for p in params):
            continue  # the rule reports it
        gamma, _beta, _mean, var = params
        ctx.bn_scales[node.name] = bn_scale(gamma, var, float(node.attrs.get("epsilon", 1e-5)))
        if node.attrs.get("training_mode", 0):
            continue
        layer = _linear_upstream(node.inputs[0], graph, producers, consumers, outputs)
        if layer is not None and _fits(layer, graph, ctx.bn_scales[node.name], "after"):
            ctx.fold_after.setdefault(layer.name, []).append((node.name, ctx.bn_scales[node.name]))
            ctx.folded_bns[node.name] = layer.name
            continue
        users = consumers.get(node.outputs[0], [])
        if len(users) == 1 and node.outputs[0] not in outputs:
            user = users[0]
            if user.op in ("Conv", "ConvTranspose") and user.inputs[0] == node.outputs[0] and _fits(user, graph, ctx.bn_scales[node.name], "before"):
                ctx.fold_before.setdefault(user.name, []).append((node.name, ctx.bn_scales[node.name]))
                ctx.folded_bns[node.name] = user.name


def _linear_upstream(value, graph, producers, consumers, outputs):
    """The linear layer that produces ``value`` through constant bias additions only."""
    while True:
        if value in outputs or len(consumers.get(value, [])) != 1:
            return None
        node = producers.get(value)
        if node is None:
            return None
        if node.op in LINEAR:
            return node
        if node.op in ("Add", "Sub") and sum(1 for i in node.inputs if i in graph.constants) == 1:
            value = next(i for i in node.inputs if i not in graph.constants)
            continue
        return None


def _fits(layer, graph: Graph, scale, side: str) -> bool:
    """The BN's channel count matches the layer's output (after) or input (before) channels."""
    weight = graph.constants.get(layer.inputs[1]) if len(layer.inputs) > 1 else None
    if weight is None:
        return False
    groups = int(layer.attrs.get("group", 1))
    if layer.op == "Conv":
        channels = weight.shape[0] if side == "after" else weight.shape[1] * groups
    elif layer.op == "ConvTranspose":
        channels = weight.shape[1] * groups if side == "after" else weight.shape[0]
    else:
        if side != "after" or weight.ndim != 2 or layer.inputs[0] in graph.constants:
            return False
        out_shape = graph.shapes.get(layer.outputs[0])
        if out_shape is None or len(out_shape) != 2:
            return False  # BN's channel axis is 1: only (N, features) outputs line up
        trans_b = layer.op == "Gemm" and layer.attrs.get("transB", 0)
        channels = weight.shape[0] if trans_b else weight.shape[1]
    return scale.shape == (channels,)
