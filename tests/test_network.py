"""Network certificates on small synthetic graphs, against the brute-forced true constant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lipaudit.engine import AuditSettings, audit
from lipaudit.loaders.onnx import load_onnx
from lipaudit.values import Kind
from tests.bruteforce import dense_norm
from tests.conftest import export_onnx


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.b(self.a(x))


class ConcatConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


def _linear_models():
    torch.manual_seed(0)
    return {
        "residual": (Residual(), (1, 3, 6, 6)),
        "concat": (ConcatConvs(), (1, 2, 6, 6)),
        "avgpool": (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2)), (1, 2, 6, 6)),
        "avgpool_pad": (nn.Sequential(nn.Conv2d(2, 2, 3), nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)), (1, 2, 9, 9)),
        "global_avg": (nn.Sequential(nn.Conv2d(2, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), (1, 2, 6, 6)),
        "depthwise": (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 2, 1)), (1, 4, 6, 6)),
        "transpose": (nn.Sequential(nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1)), (1, 3, 4, 4)),
        "strided_1d": (nn.Sequential(nn.Conv1d(2, 3, 5, stride=2, padding=2), nn.Conv1d(3, 2, 3, dilation=2)), (1, 2, 16)),
        "upsample": (nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Upsample(scale_factor=2, mode="nearest")), (1, 2, 4, 4)),
        "bilinear": (nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(2, 2, 3)), (1, 2, 4, 4)),
        "reflect_pad": (nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(2, 2, 3)), (1, 2, 5, 5)),
        "bn_alone": (nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten(), nn.BatchNorm1d(2 * 16)), (1, 2, 6, 6)),
    }


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.weight.data.uniform_(0.5, 2.0)
            m.running_var.data.uniform_(0.2, 3.0)
            m.running_mean.data.normal_()


@pytest.mark.parametrize("name", sorted(_linear_models()))
def test_linear_network_bound_against_dense_jacobian(name, tmp_path):
    model, shape = _linear_models()[name]
    _randomize_bn(model)
    model = model.double().eval()
    truth = dense_norm(lambda x: model(x), shape)  # linear (affine) network: L = ||J||
    path = export_onnx(model.float(), torch.zeros(shape), tmp_path / f"{name}.onnx")
    result = audit(load_onnx(path), AuditSettings(compare=("exact",)))
    cert = result.network["certified"]
    assert cert.kind is Kind.UPPER and cert.value >= truth * (1 - 1e-5)
    assert result.network["tn"].value >= truth * (1 - 1e-5)
    assert result.network["exact"].value >= truth * (1 - 1e-4)
    if len(result.layers) == 1 and not result.factors:
        # one layer and nothing else: the exact composition is the true norm
        assert result.network["exact"].value == pytest.approx(truth, rel=1e-4)


def test_maxpool_relu_network_is_sound(tmp_path):
    from tests.empirical import lower_bound

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(27, 4))
    path = export_onnx(model, torch.zeros(1, 1, 7, 7), tmp_path / "m.onnx")
    result = audit(load_onnx(path))
    assert lower_bound(path, (1, 1, 7, 7)) <= result.network["certified"].value


def test_bn_kept_and_folded_give_the_same_bounds(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )
    _randomize_bn(model)
    x = torch.zeros(1, 3, 8, 8)
    kept = load_onnx(export_onnx(model, x, tmp_path / "kept.onnx", keep_bn=True))
    folded = load_onnx(export_onnx(model, x, tmp_path / "folded.onnx", keep_bn=False))
    assert any(n.op == "BatchNormalization" for n in kept.nodes)
    assert not any(n.op == "BatchNormalization" for n in folded.nodes)
    a, b = audit(kept), audit(folded)
    assert [l.op for l in a.layers] == [l.op for l in b.layers]
    assert [len(l.folded) for l in a.layers] == [1, 1, 0]
    for la, lb in zip(a.layers, b.layers):
        for method in ("tn", "f4", "fro", "certified"):
            assert la.values[method].value == pytest.approx(lb.values[method].value, rel=1e-5), (la.name, method)
    for comp in ("tn", "certified"):
        assert a.network[comp].value == pytest.approx(b.network[comp].value, rel=1e-5)


def test_product_of_two_input_dependent_tensors_is_refused(tmp_path):
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    path = export_onnx(Square(), torch.zeros(1, 2, 3, 3), tmp_path / "sq.onnx")
    result = audit(load_onnx(path))
    assert result.network == {} and "product of two input-dependent" in result.refusals[0].reason


@pytest.mark.parametrize("act,slope", [(nn.SiLU(), 1.1), (nn.GELU(), 1.129), (nn.Hardswish(), 1.5), (nn.Sigmoid(), 0.25)])
def test_activation_patterns(act, slope, tmp_path):
    # SiLU / GELU export as x * gate(x) at opset 13: recognised, with the right slope
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), act)
    model[0].weight.data.fill_(2.0)
    path = export_onnx(model, torch.zeros(1, 1, 3, 3), tmp_path / "act.onnx")
    result = audit(load_onnx(path))
    assert result.network["certified"].value == pytest.approx(2.0 * slope, rel=1e-3)


def test_output_selection_skips_unsupported_tail(tmp_path):
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.exp(self.conv(x))

    path = export_onnx(Head(), torch.zeros(1, 1, 5, 5), tmp_path / "head.onnx")
    graph = load_onnx(path)
    refused = audit(graph)
    assert refused.network == {} and refused.refusals[0].op == "Exp" and len(refused.layers) == 1
    conv = next(n for n in graph.nodes if n.op == "Conv")
    assert audit(graph, AuditSettings(outputs=(conv.outputs[0],))).network["certified"].value > 0
    assert audit(graph, AuditSettings(until=conv.name)).network["certified"].value > 0
