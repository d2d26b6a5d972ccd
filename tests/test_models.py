"""Every real model either audits fully or stops with a clear, correct refusal; bounds are sound."""

from __future__ import annotations

from collections import Counter

import pytest

from lipaudit.engine import AuditSettings, audit
from lipaudit.loaders.onnx import load_onnx
from lipaudit.values import Kind
from tests.conftest import light_model, shared_model
from tests.empirical import lower_bound

# model -> (expected layers measured, outputs to certify or None)
AUDITS = {
    "Convnet_avgpool.onnx": 2,
    "Convnet_maxpool.onnx": 2,
    "HAR-CNN.onnx": 4,
    "cifar_base_kw.onnx": 4,
    "cifar_deep_kw.onnx": 6,
    "marabou_cifar10_small.onnx": 5,
    "onnxzoo_mnist-8.onnx": 3,
    "resnet_2b.onnx": 8,
    "resnet_4b.onnx": 13,
    "yunet_n_320_320.onnx": 59,
}
# model -> (measured layers by op, BatchNorms folded into a conv)
LIGHT_AUDITS = {
    # pre-activation BN after a Concat has no linear neighbour: a diagonal map
    "light_densenet121.onnx": ({"Conv": 121, "BatchNormalization": 62}, 59),
    "light_inception_v2.onnx": ({"Conv": 69, "Gemm": 1}, 69),
    "light_resnet50.onnx": ({"Conv": 53, "Gemm": 1}, 53),
    "light_shufflenet.onnx": ({"Conv": 49, "Gemm": 1}, 49),
    "light_squeezenet.onnx": ({"Conv": 26}, 0),
    "light_vgg19.onnx": ({"Conv": 16, "Gemm": 3}, 0),
}
LIGHT_REFUSALS = {"light_bvlc_alexnet.onnx": "LRN", "light_inception_v1.onnx": "LRN", "light_zfnet512.onnx": "LRN"}


@pytest.mark.parametrize("name", sorted(AUDITS))
def test_shared_model_audits_and_is_sound(name):
    path = shared_model(name)
    graph = load_onnx(path)
    result = audit(graph, AuditSettings())
    convs_and_dense = [l for l in result.layers if l.op != "BatchNormalization"]
    assert len(convs_and_dense) == AUDITS[name]
    cert = result.network["certified"]
    assert cert.kind is Kind.UPPER
    for layer in result.layers:
        assert layer.values["certified"].kind.is_sound_upper
        assert "tn" in layer.values
    shape = graph.shapes[graph.inputs[0]]
    empirical = lower_bound(path, shape, points=2 if name.startswith("yunet") else 3)
    assert 0 < empirical <= cert.value
    assert empirical <= result.network["tn"].value


def test_version_slim_refuses_exp_and_audits_raw_heads():
    path = shared_model("version-slim-320.onnx")
    graph = load_onnx(path)
    refused = audit(graph, AuditSettings())
    assert refused.network == {} and refused.refusals[0].op == "Exp" and refused.refusals[0].node
    assert sum(1 for l in refused.layers if l.op == "Conv") == 42  # every layer is still measured
    softmax = next(n for n in graph.nodes if n.op == "Softmax")
    box_concat = next(n for n in graph.nodes if n.op == "Slice").inputs[0]
    heads = (softmax.inputs[0], box_concat)
    result = audit(graph, AuditSettings(outputs=heads))
    measured = [l for l in result.layers]
    assert sum(1 for l in measured if l.op == "Conv") == 42
    assert any(l.folded for l in measured), "BatchNorm after a conv must be folded"
    assert result.network["certified"].kind is Kind.UPPER
    assert lower_bound(path, graph.shapes[graph.inputs[0]], outputs=heads, points=1) <= result.network["certified"].value


@pytest.mark.parametrize("name", sorted(LIGHT_AUDITS))
def test_light_model_audits(name):
    graph = load_onnx(light_model(name))
    result = audit(graph, AuditSettings(method="fro"))
    ops, folded = LIGHT_AUDITS[name]
    assert dict(Counter(l.op for l in result.layers)) == ops
    assert sum(1 for l in result.layers if l.folded) == folded
    assert result.network["certified"].kind is Kind.UPPER


@pytest.mark.parametrize("name", sorted(LIGHT_REFUSALS))
def test_light_model_refusal_names_the_node(name):
    graph = load_onnx(light_model(name))
    result = audit(graph, AuditSettings(method="fro"))
    assert result.network == {} and result.layers
    refusal = result.refusals[0]
    assert refusal.op == LIGHT_REFUSALS[name]
    assert refusal.node and refusal.node in refusal.message()
