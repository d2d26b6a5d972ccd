"""Models already in memory: an ``onnx.ModelProto`` or a ``torch.nn.Module``.

A module is exported to ONNX in memory (torch's TorchScript-based exporter,
BatchNorm kept so the engine folds it) with BatchNorm and Dropout in eval
semantics. The caller's module is left exactly as it was: every submodule's
``training`` flag is restored one by one (``module.train(flag)`` would set
them all alike), and buffers are restored in case a forward pass wrote to them.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from lipaudit.errors import InputShapeError, UsageError
from lipaudit.loaders import LoadedModel, LoadOptions


def is_model_proto(obj: Any) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(obj, onnx.ModelProto)


def is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def describe(obj: Any) -> str:
    """The label an in-memory model gets in messages and in ``model.path``."""
    if is_model_proto(obj):
        name = obj.graph.name or "graph"
        return f"<onnx.ModelProto {name}>"
    if is_torch_module(obj):
        return f"<torch.nn.Module {type(obj).__name__}>"
    return f"<{type(obj).__name__}>"


def load_in_memory(obj: Any, options: LoadOptions) -> tuple[LoadedModel, str | None]:
    """A :class:`LoadedModel` for a ModelProto or module, and the sha256 of its ONNX bytes (None if too large)."""
    from lipaudit.loaders.onnx import load_onnx_model

    label = describe(obj)
    if is_model_proto(obj):
        proto, fmt = obj, "onnx"
    elif is_torch_module(obj):
        proto, fmt = export_module(obj, options.input_shape, label), "torch-module"
    else:
        raise UsageError(f"cannot audit a {type(obj).__name__}: give a file path, an onnx.ModelProto or a torch.nn.Module")
    graph = load_onnx_model(proto, label, options.input_shape if fmt == "onnx" else None)
    graph.source["format"] = fmt
    loaded = LoadedModel(label, fmt, graph=graph, meta={**graph.source, "format": fmt}, onnx_model=proto,
                         torch_module=obj if fmt == "torch-module" else None)
    return loaded, _digest(proto)


def export_module(module, input_shape, label: str):
    """``module`` as an ONNX ModelProto, traced in eval mode; the module itself is not changed."""
    import torch

    from lipaudit.loaders.torch_files import _export_onnx

    if input_shape is None or isinstance(input_shape, dict):
        raise InputShapeError(f"{label}: a torch.nn.Module needs input_shape, e.g. input_shape=(1, 3, 32, 32)")
    modes = [(m, m.training) for m in module.modules()]
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        with torch.no_grad():
            return _export_onnx(module, tuple(int(d) for d in input_shape), label, dynamo=False)
    finally:
        for m, flag in modes:
            m.training = flag
        with torch.no_grad():
            for b, saved in buffers:
                if not torch.equal(b, saved):
                    b.copy_(saved)


def _digest(proto) -> str | None:
    try:
        return hashlib.sha256(proto.SerializeToString()).hexdigest()
    except Exception:  # protobuf refuses > 2 GB
        return None

