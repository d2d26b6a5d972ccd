"""The conv kernels benchmarks run on: torchvision ResNet-18 shapes (random, seeded) and the trained samples."""

from __future__ import annotations

import numpy as np

# (c_out, c_in, k, stride, input size) of torchvision's resnet18, in order: 20 convs
RESNET18 = [
    (64, 3, 7, 2, 224),
    (64, 64, 3, 1, 56), (64, 64, 3, 1, 56), (64, 64, 3, 1, 56), (64, 64, 3, 1, 56),
    (128, 64, 3, 2, 56), (128, 128, 3, 1, 28), (128, 64, 1, 2, 56), (128, 128, 3, 1, 28), (128, 128, 3, 1, 28),
    (256, 128, 3, 2, 28), (256, 256, 3, 1, 14), (256, 128, 1, 2, 28), (256, 256, 3, 1, 14), (256, 256, 3, 1, 14),
    (512, 256, 3, 2, 14), (512, 512, 3, 1, 7), (512, 256, 1, 2, 14), (512, 512, 3, 1, 7), (512, 512, 3, 1, 7),
]


def resnet18_kernels(seed: int = 0):
    """[(name, weight, stride, input size)] with He-initialised random weights."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (co, ci, k, s, n) in enumerate(RESNET18):
        w = (rng.standard_normal((co, ci, k, k)) * np.sqrt(2.0 / (co * k * k))).astype(np.float32)
        out.append((f"conv{i:02d}_{co}x{ci}x{k}x{k}_s{s}", w, s, n))
    return out


def sample_kernels():
    """Conv kernels of the trained sample models (BN folded), from their ONNX files."""
    from pathlib import Path

    from lipaudit.engine import AuditSettings, audit
    from lipaudit.loaders.onnx import load_onnx

    out = []
    root = Path(__file__).resolve().parent.parent / "sample_models"
    for path in sorted(root.glob("*.onnx")):
        g = load_onnx(str(path))
        for node in g.nodes:
            if node.op == "Conv":
                w = g.constants[node.inputs[1]].astype(np.float32)
                s = int(node.attrs.get("strides", [1, 1])[0])
                n = g.shapes[node.inputs[0]][2]
                out.append((f"{path.stem}:{node.name}", w, s, n))
    del AuditSettings, audit
    return out
