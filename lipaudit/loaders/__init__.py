"""Model loaders: one module per format, each returning a :class:`lipaudit.graph.Graph`
(or, for weights without an architecture, a list of standalone layers)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from lipaudit.errors import ModelLoadError
from lipaudit.graph import Graph


@dataclass
class LoadOptions:
    input_shape: Any = None  # tuple, or {input name: tuple}
    trust_pickle: bool = False
    arch: str | None = None
    strides: dict[str, tuple[int, ...]] = field(default_factory=dict)  # state dicts: name pattern -> stride
    max_bytes: int | None = None  # memory budget (lipaudit.budget); None: unlimited


@dataclass
class LoadedModel:
    """What a loader found: a graph, or weights only (``graph`` None, ``layers`` set)."""

    path: str
    format: str
    graph: Graph | None = None
    weights: Any = None  # lipaudit.loaders.state_dict.WeightsOnly
    meta: dict[str, Any] = field(default_factory=dict)
    onnx_model: Any = None  # the ONNX ModelProto when it was built in memory (torch inputs)
    torch_module: Any = None  # the torch module itself (.pt2, TorchScript, --arch, in-memory modules)


def sha256(path: str) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def require_model_file(path: str) -> None:
    """One clear error for a path that cannot be a model file (missing, a folder, empty, a FIFO or device)."""
    from lipaudit.safe_io import require_regular_file

    require_regular_file(path, "model")


def detect_format(path: str) -> str:
    """``onnx``, ``torch`` (zip/pickle), ``pt2`` (torch.export) or ``safetensors``, by suffix then content."""
    require_model_file(path)
    lower = path.lower()
    if lower.endswith(".onnx"):
        return "onnx"
    if lower.endswith(".pt2"):
        return "pt2"
    if lower.endswith(".safetensors"):
        return "safetensors"
    if lower.endswith((".pt", ".pth", ".ckpt", ".bin", ".tar")):
        return "torch"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        return "torch"
    if head[:1] == b"\x80":
        return "torch"  # a raw pickle
    return "onnx"  # let the ONNX parser say what is wrong


def load_model(path: str, options: LoadOptions | None = None) -> LoadedModel:
    options = options or LoadOptions()
    fmt = detect_format(path)
    if fmt == "onnx":
        from lipaudit.loaders.onnx import load_onnx

        graph = load_onnx(path, options.input_shape)
        return LoadedModel(path, "onnx", graph=graph, meta=dict(graph.source))
    from lipaudit.loaders.torch_files import load_torch_file

    return load_torch_file(path, fmt, options)
