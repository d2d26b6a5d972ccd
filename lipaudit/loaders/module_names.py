"""The PyTorch module a node came from, read from the dynamo exporter's node metadata.

``torch.onnx.export(..., dynamo=True)`` names nodes ``node_Conv_292`` but records
where each came from in ``metadata_props``:

- ``pkg.torch.onnx.name_scopes``: ``['', 'features', 'features.1', 'features.1.block.0', 'conv2d_3']``
  (the module paths from the root, then the traced op's own name);
- ``namespace``: ``': Net/features: Sequential/features.1: Block/conv2d_3: aten.conv2d.default'``.

The module path is the last module scope (``features.1.block.0``). The
TorchScript exporter already writes paths into node names
(``/features/features.1/Conv``), so nothing is read for it. The text is the
model's own: it is parsed as a Python literal (never evaluated as code), and
only printable characters are kept, so it cannot carry terminal codes.
"""

from __future__ import annotations

import ast

MAX_LEN = 200


def module_path(metadata: dict[str, str]) -> str | None:
    """The module path of a node from its metadata, or None when the exporter recorded none."""
    scopes = metadata.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parts = ast.literal_eval(scopes)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parts = None
        if isinstance(parts, (list, tuple)) and all(isinstance(p, str) for p in parts) and len(parts) >= 2:
            return clean(parts[-2])  # the last entry is the traced op itself
    namespace = metadata.get("namespace")
    if namespace:
        names = [part.split(":", 1)[0].strip() for part in namespace.split("/")]
        if len(names) >= 2:
            return clean(names[-2])
    return None


def clean(text: str) -> str | None:
    """Printable characters only (no terminal codes, no newlines), at most MAX_LEN; None when nothing is left."""
    kept = "".join(ch for ch in text if ch.isprintable())[:MAX_LEN].strip()
    return kept or None
