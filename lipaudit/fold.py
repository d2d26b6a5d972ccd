"""Plan which BatchNorm nodes fold into an adjacent linear layer.

A BN folds *after* a Conv/ConvTranspose/Gemm/MatMul when the chain between
them holds only constant bias additions that keep the tensor's shape, each
value consumed once; it folds *before* a conv when its output feeds only that
conv's data input. In both cases nothing non-linear sits between them, so the
pair is one affine map whose linear part is the folded kernel.

Two more conditions make the fold mean what it says:
- no value strictly inside the pair is observed (a graph output or an
  ``--output``/``--until`` target): the observed value would otherwise carry
  the BN's scale (after) or miss it (before);
- the BN's channel axis (axis 1) is the layer's output-feature axis in the
  tensor that reaches it: the conv's channel axis, or for a dense layer the
  feature axis of an ``(N, features)`` output of a row-wise layer.
Any other BN stays a diagonal map.
"""

from __future__ import annotations

import numpy as np

from lipaudit.graph import Graph
from lipaudit.ops.context import RuleContext
from lipaudit.ops.normalization import training_mode_reason

LINEAR = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
DEFAULT_DOMAINS = ("", "ai.onnx")


def plan_bn_folds(graph: Graph, ctx: RuleContext, observed: set[str] = frozenset()) -> None:
    consumers = graph.consumers()
    producers = graph.producers()
    observed = set(observed) | set(graph.outputs)
    opset = ctx.opset()
    for node in graph.nodes:
        if node.op != "BatchNormalization" or node.domain not in DEFAULT_DOMAINS:
            continue
        scale = _bn_scale(node, graph)
        if scale is None:
            continue  # the rule reports it
        ctx.bn_scales[node.name] = scale
        if training_mode_reason(node, opset) or set(node.attrs) - {"epsilon", "momentum", "training_mode", "is_test",
                                                                    "spatial", "consumed_inputs"}:
            continue
        if graph.shapes.get(node.inputs[0]) is not None and len(graph.shapes[node.inputs[0]]) >= 2 \
                and graph.shapes[node.inputs[0]][1] != scale.shape[0]:
            continue
        layer = _linear_upstream(node.inputs[0], graph, producers, consumers, observed)
        if layer is not None and _fits(layer, graph, scale, "after", node.inputs[0]):
            ctx.fold_after.setdefault(layer.name, []).append((node.name, scale))
            ctx.folded_bns[node.name] = layer.name
            continue
        users = consumers.get(node.outputs[0], [])
        if len(users) == 1 and node.outputs[0] not in observed:
            user = users[0]
            if (user.op in ("Conv", "ConvTranspose") and user.domain in DEFAULT_DOMAINS
                    and user.inputs[0] == node.outputs[0] and _fits(user, graph, scale, "before", node.outputs[0])):
                ctx.fold_before.setdefault(user.name, []).append((node.name, scale))
                ctx.folded_bns[node.name] = user.name


def _bn_scale(node, graph: Graph) -> np.ndarray | None:
    """``gamma / sqrt(var + eps)`` per channel (inf where not finite), or None when not constants of one rank."""
    params = [graph.constants.get(name) for name in node.inputs[1:5]]
    if len(params) < 4 or any(p is None for p in params):
        return None
    gamma, _beta, _mean, var = (np.asarray(p, dtype=np.float64) for p in params)
    if gamma.ndim != 1 or var.shape != gamma.shape:
        return None
    eps = float(node.attrs.get("epsilon", 1e-5))
    with np.errstate(all="ignore"):
        scale = gamma / np.sqrt(var + eps)
    return np.where(np.isfinite(scale), scale, np.inf)


def _linear_upstream(value, graph, producers, consumers, observed):
    """The linear layer that produces ``value`` through shape-preserving constant bias additions only."""
    while True:
        if value in observed or len(consumers.get(value, [])) != 1:
            return None
        node = producers.get(value)
        if node is None or node.domain not in DEFAULT_DOMAINS:
            return None
        if node.op in LINEAR:
            return node
        if node.op in ("Add", "Sub") and not node.attrs and sum(1 for i in node.inputs if i in graph.constants) == 1:
            data = next(i for i in node.inputs if i not in graph.constants)
            if node.op == "Sub" and node.inputs[1] != next(i for i in node.inputs if i in graph.constants):
                return None  # const - x negates x: not a bias addition
            if graph.shapes.get(data) is None or graph.shapes.get(data) != graph.shapes.get(node.outputs[0]):
                return None  # the constant broadcasts the tensor to another layout
            value = data
            continue
        return None


def _fits(layer, graph: Graph, scale, side: str, bn_input: str) -> bool:
    """The BN's channel axis is the layer's output (after) or input (before) channel axis."""
    weight = graph.constants.get(layer.inputs[1]) if len(layer.inputs) > 1 else None
    if weight is None or not np.all(np.isfinite(scale)):
        return False
    if any(name and name not in graph.constants for name in layer.inputs[1:]):
        return False  # an input-dependent bias (Conv B, Gemm C) would pass through the BN unscaled by the fold
    groups = int(layer.attrs.get("group", 1))
    if layer.op == "Conv":
        channels = weight.shape[0] if side == "after" else weight.shape[1] * groups
    elif layer.op == "ConvTranspose":
        channels = weight.shape[1] * groups if side == "after" else weight.shape[0]
    else:
        # a row-wise dense layer (data is the first operand, contracted on its last axis) with an
        # (N, features) output: BN's axis 1 is then the feature axis the weight produces
        if side != "after" or weight.ndim != 2 or layer.inputs[0] in graph.constants or layer.inputs[1] not in graph.constants:
            return False
        if layer.op == "Gemm" and layer.attrs.get("transA", 0):
            return False
        out_shape = graph.shapes.get(layer.outputs[0])
        if out_shape is None or len(out_shape) != 2 or graph.shapes.get(bn_input) != out_shape:
            return False
        trans_b = layer.op == "Gemm" and layer.attrs.get("transB", 0)
        channels = weight.shape[0] if trans_b else weight.shape[1]
    return scale.shape == (channels,)
