"""VGG-style dense heads, random weights (seed 0), exported to ONNX for the dense-layer benchmark.

``python benchmarks/dense_head.py`` writes ``benchmarks/_work/vgg_head.onnx`` (Gemm 8192->4096, ReLU,
4096->1000) and ``benchmarks/_work/vgg11_fc1.onnx`` (torchvision VGG-11's first classifier layer,
25088->4096). Not committed; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WORK = Path(__file__).resolve().parent / "_work"


def head(sizes: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def export(sizes: tuple[int, ...], path: Path) -> Path:
    import warnings

    torch.manual_seed(0)
    model = head(sizes)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, sizes[0]),), str(path), dynamo=False, opset_version=17,
                          input_names=["features"], output_names=["logits"])
    return path


def ensure_heads() -> dict[str, Path]:
    out = {}
    for name, sizes in (("vgg_head", (8192, 4096, 1000)), ("vgg11_fc1", (25088, 4096))):
        path = WORK / f"{name}.onnx"
        if not path.exists():
            export(sizes, path)
        out[name] = path
    return out


if __name__ == "__main__":
    for name, path in ensure_heads().items():
        print(name, path, f"{path.stat().st_size / 2**20:.1f} MiB")
