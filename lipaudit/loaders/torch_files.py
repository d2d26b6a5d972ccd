"""PyTorch files: torch.export archives, TorchScript, state dicts, checkpoints, pickled modules, safetensors.

Graphs (``.pt2``, TorchScript, trusted pickled modules, ``--arch``) are
exported to ONNX *in memory* and read by the ONNX loader, so the network
certificate is computed exactly as for an ONNX file. Weights without an
architecture become a per-layer audit (:mod:`lipaudit.loaders.state_dict`).

Safety: pickles are only ever read with ``torch.load(weights_only=True)``,
which refuses to import or call anything but tensors and plain containers;
``.pt2`` archives are inspected first (:mod:`lipaudit.loaders.pt2_archive`); TorchScript is code
and is refused. ``--trust-pickle`` on the command line is the user's explicit opt-out.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from lipaudit.errors import InputShapeError, LipauditError, ModelLoadError, first_line
from lipaudit.loaders import LoadedModel, LoadOptions

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "weights")


def load_torch_file(path: str, fmt: str, options: LoadOptions) -> LoadedModel:
    if fmt == "safetensors":
        return _weights_model(path, "safetensors", _read_safetensors(path), options)
    if fmt == "pt2":
        return _from_exported(path, options)
    if _is_torchscript(path):
        return _from_torchscript(path, options)
    obj = _safe_load(path, options)
    import torch

    if isinstance(obj, torch.nn.Module):  # only reachable with --trust-pickle
        return _graph_from_module(path, "torch-module", obj, options)
    tensors = find_state_dict(obj, path)
    if options.arch:
        return _from_arch(path, tensors, options)
    return _weights_model(path, "state-dict", tensors, options)


# -- reading -------------------------------------------------------------------

def _is_torchscript(path: str) -> bool:
    """torch's own test (a ``constants.pkl`` record), widened to any ``code/`` folder: either means code."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.split("/", 1)[-1] for n in zf.namelist()]
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n == "constants.pkl" or n.startswith("code/") for n in names)


def _safe_load(path: str, options: LoadOptions) -> Any:
    import pickle

    import torch

    _require_unpacked_size(path, options)
    try:
        return torch.load(path, map_location="cpu", weights_only=not options.trust_pickle)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "not an allowed global" in text.lower():
            raise ModelLoadError(
                f"{path}: refusing to unpickle Python objects (e.g. a whole module) because that can run code "
                f"from the file; pass --trust-pickle only if you trust it, or save a state_dict / .pt2 instead"
            ) from None
        raise ModelLoadError(f"{path}: not a readable PyTorch file ({first_line(exc)})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, AttributeError, ImportError) as exc:
        raise ModelLoadError(f"{path}: not a readable PyTorch file ({first_line(exc)})") from None


def _require_unpacked_size(path: str, options: LoadOptions) -> None:
    """A zip checkpoint's records must fit the memory budget once unpacked (a zip bomb does not)."""
    from lipaudit.budget import current, require

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # a raw pickle: its size is the file's
    require(f"{path}: unpacking the checkpoint", total, options.max_bytes if options.max_bytes is not None else current())


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ModelLoadError("reading .safetensors needs the 'safetensors' package (pip install safetensors)") from None
    try:
        tensors = load_file(path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
    # safetensors does not keep the order modules were registered in: take keys in natural
    # order (features.2 before features.10), which keeps conv -> BN neighbours of Sequential models
    return {k: tensors[k] for k in sorted(tensors, key=_natural_key)}


def _natural_key(name: str):
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_state_dict(obj: Any, path: str) -> dict[str, np.ndarray]:
    """The tensors of a state dict, a checkpoint holding one, or a list of them (keys prefixed ``i.``)."""
    import torch

    def tensors_of(d: dict) -> dict[str, np.ndarray] | None:
        out = {}
        for k, v in d.items():
            if isinstance(v, torch.Tensor):
                out[str(k)] = v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
        return out or None

    candidates: list[Any] = [obj]
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj:
                candidates.insert(0, obj[key])
    for cand in candidates:
        if isinstance(cand, dict):
            found = tensors_of(cand)
            if found:
                return found
        if isinstance(cand, (list, tuple)) and cand and all(isinstance(x, dict) for x in cand):
            merged: dict[str, np.ndarray] = {}
            for i, part in enumerate(cand):
                for k, v in (tensors_of(part) or {}).items():
                    merged[f"{i}.{k}" if len(cand) > 1 else k] = v
            if merged:
                return merged
    if isinstance(obj, dict) and not obj:
        raise ModelLoadError(f"{path}: empty state dict")
    raise ModelLoadError(f"{path}: no tensors found (expected a state dict or a checkpoint holding one)")


# -- graphs --------------------------------------------------------------------

def _from_exported(path: str, options: LoadOptions) -> LoadedModel:
    from lipaudit.loaders.pt2_archive import load_exported_program

    try:
        with _quiet():
            program = load_exported_program(path, options.max_bytes)
    except LipauditError:
        raise
    except Exception as exc:
        import pickle

        if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc):
            raise ModelLoadError(f"{path}: refusing to unpickle a Python object stored in the .pt2 archive "
                                 f"(only tensors are read from it)") from None
        raise ModelLoadError(f"{path}: not a readable torch.export archive ({first_line(exc)})") from None
    try:
        import onnxscript  # noqa: F401  (torch's exporter for exported programs needs it)
    except ImportError:
        raise ModelLoadError("reading .pt2 archives needs the 'onnxscript' package (pip install onnxscript)") from None
    onnx_model = _export_onnx(program, None, path, dynamo=True)
    try:
        module = program.module()
    except Exception:  # the attained search then uses the ONNX graph
        module = None
    return _graph_model(path, "pt2", onnx_model, options, module)


def _from_torchscript(path: str, options: LoadOptions) -> LoadedModel:
    if not options.trust_pickle:
        # torch.jit.load runs the archive's code (__setstate__ and friends) while loading
        raise ModelLoadError(
            f"{path}: refusing to load a TorchScript archive because loading runs code from the file; "
            f"pass --trust-pickle only if you trust it, or export a .onnx / .pt2 file instead"
        )
    import torch

    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable TorchScript archive ({first_line(exc)})") from None
    return _graph_from_module(path, "torchscript", module, options)


def _graph_from_module(path: str, fmt: str, module, options: LoadOptions) -> LoadedModel:
    shape = options.input_shape
    if shape is None or isinstance(shape, dict):
        raise InputShapeError(f"{path}: a {fmt} file stores no input shape; give it with --input-shape (e.g. 1,3,32,32)")
    onnx_model = _export_onnx(module, tuple(shape), path, dynamo=False)
    return _graph_model(path, fmt, onnx_model, options, module)


def _from_arch(path: str, tensors: dict[str, np.ndarray], options: LoadOptions) -> LoadedModel:
    from lipaudit.loaders.arch import build, load_into

    model = build(options.arch)
    load_into(model, tensors, path, options.arch)
    return _graph_from_module(path, "state-dict+arch", model, options)


def _export_onnx(model, shape, path: str, dynamo: bool):
    import onnx
    import torch

    try:
        if dynamo:
            with _quiet():
                program = torch.onnx.export(model, (), dynamo=True, verbose=False)
            return program.model_proto
        model.eval()
        buf = io.BytesIO()
        example = torch.zeros(shape)
        with _quiet():
            torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=17,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        return onnx.load_from_string(buf.getvalue())
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path}: could not convert the graph to ONNX ({first_line(exc)})") from None


def _graph_model(path: str, fmt: str, onnx_model, options: LoadOptions, module=None) -> LoadedModel:
    from lipaudit.loaders.onnx import load_onnx_model

    graph = load_onnx_model(onnx_model, path, options.input_shape if fmt == "pt2" else None)
    graph.source["format"] = fmt
    return LoadedModel(path, fmt, graph=graph, meta={**graph.source, "format": fmt}, onnx_model=onnx_model,
                       torch_module=module)


# -- weights only --------------------------------------------------------------

def _weights_model(path: str, fmt: str, tensors: dict[str, np.ndarray], options: LoadOptions) -> LoadedModel:
    from lipaudit.loaders.state_dict import weights_from_state_dict

    if not tensors:
        raise ModelLoadError(f"{path}: empty state dict")
    return LoadedModel(path, fmt, weights=weights_from_state_dict(tensors, path, options.strides), meta={"format": fmt})


class _quiet:
    """Silence torch's exporter: warnings, log lines and progress printed to stdout/stderr."""

    def __enter__(self):
        import contextlib
        import logging
        import warnings

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self._stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        self._levels = {}
        for name in ("torch", "torch.onnx", "torch.export", "onnxscript"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        import logging

        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._stack.close()
        return False
