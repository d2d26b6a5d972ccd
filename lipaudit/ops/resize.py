"""Resize / Upsample: a separable linear map; its norm is the product of one exact norm per axis.

Each axis's matrix is obtained by running onnx's reference Resize on an
identity, so every mode and coordinate convention is exactly the model's.
"""

from __future__ import annotations

import numpy as np

from lipaudit.bounds.linalg import spectral_norm
from lipaudit.ops import rule
from lipaudit.values import SAFETY

_COPY_ATTRS = ("mode", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "nearest_mode", "antialias")


@rule("Resize", "Upsample")
def resize(node, ctx):
    for extra in node.inputs[1:]:
        if extra and ctx.lip(extra) is not None:
            ctx.fail(node, "scales/sizes depend on the input")
    in_shape = ctx.shape(node.inputs[0], node)
    out_shape = ctx.shape(node.outputs[0], node)
    attrs = {k: node.attrs[k] for k in _COPY_ATTRS if k in node.attrs}
    opset = ctx.graph.source.get("opset") or 13
    if node.op == "Upsample" or opset < 11:
        attrs.setdefault("coordinate_transformation_mode", "asymmetric")
        attrs.setdefault("nearest_mode", "floor")
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        ctx.fail(node, "tf_crop_and_resize is not supported")
    attrs["mode"] = {"bilinear": "linear", "trilinear": "linear"}.get(attrs.get("mode", "nearest"), attrs.get("mode", "nearest"))
    scales = _scales(node, ctx, opset)
    factor = 1.0
    for axis, (n, m) in enumerate(zip(in_shape, out_shape)):
        if n != m:
            scale = float(scales[axis]) if scales is not None else None
            try:
                factor *= spectral_norm(_axis_matrix(n, m, scale, attrs))
            except ValueError as exc:
                ctx.fail(node, str(exc))
    factor *= SAFETY
    ctx.note_factor(node, factor, f"{attrs['mode']} resize, exact separable norm")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


def _scales(node, ctx, opset: int):
    """The per-axis scales the model gave, or None when it gave sizes."""
    if node.op == "Upsample" and "scales" in node.attrs:
        return list(node.attrs["scales"])
    index = 1 if (node.op == "Upsample" or opset < 11) else 2
    if len(node.inputs) > index and node.inputs[index]:
        c = ctx.const(node.inputs[index])
        if c is not None and c.size:
            return [float(v) for v in c.ravel()]
    return None


def _axis_matrix(n: int, m: int, scale: float | None, attrs) -> np.ndarray:
    """The (m x n) matrix of resizing one axis from n to m entries (with the model's scale if it gave one)."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    x = np.eye(n, dtype=np.float32)  # row j: the j-th basis vector; only axis 1 is resized
    if scale is not None:
        inputs, feed = ["X", "", "scales"], {"scales": np.array([1.0, scale], dtype=np.float32)}
        extra = [helper.make_tensor_value_info("scales", TensorProto.FLOAT, [2])]
    else:
        inputs, feed = ["X", "", "", "sizes"], {"sizes": np.array([n, m], dtype=np.int64)}
        extra = [helper.make_tensor_value_info("sizes", TensorProto.INT64, [2])]
    node = helper.make_node("Resize", inputs, ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, n])] + extra,
        [helper.make_empty_tensor_value_info("Y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    (y,) = ReferenceEvaluator(model).run(None, {"X": x, **feed})
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n, m):
        raise ValueError(f"resize of {n} entries gave {y.shape[1]}, the model says {m}")
    return y.T
