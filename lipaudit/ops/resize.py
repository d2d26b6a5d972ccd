"""Resize / Upsample: a separable linear map; its norm is the product of one exact norm per axis.

Each axis's matrix is obtained by running onnx's reference Resize on an
identity, with the axis's own scale (or size), so every mode and coordinate
convention is exactly the model's. An axis whose scale is not 1 is resized even
when its size does not change: the ONNX coordinate transform still moves it.
"""

from __future__ import annotations

import numpy as np

from lipaudit.bounds.linalg import spectral_norm
from lipaudit.ops import CONST, DATA, rule
from lipaudit.values import SAFETY

_COPY_ATTRS = ("mode", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "nearest_mode", "antialias")
RESIZE_ATTRS = _COPY_ATTRS + ("axes", "keep_aspect_ratio_policy", "extrapolation_value")


def _plan(node, ctx) -> tuple[list[tuple[int, int, int, float | None]], dict]:
    """``[(axis, n, m, scale or None)]`` for every axis that is resized, and the attributes to copy."""
    in_shape = ctx.shape(node.inputs[0], node)
    out_shape = ctx.shape(node.outputs[0], node)
    rank = len(in_shape)
    if len(out_shape) != rank:
        ctx.fail(node, f"output rank {len(out_shape)} differs from input rank {rank}")
    attrs = {k: node.attrs[k] for k in _COPY_ATTRS if k in node.attrs}
    opset = ctx.opset()
    legacy = node.op == "Upsample" or opset < 11
    if legacy:
        attrs.setdefault("coordinate_transformation_mode", "asymmetric")
        attrs.setdefault("nearest_mode", "floor")
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        ctx.fail(node, "tf_crop_and_resize crops to a region of interest: not supported")
    if node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        ctx.fail(node, "keep_aspect_ratio_policy other than 'stretch' is not supported")
    mode = attrs.get("mode", "nearest")
    attrs["mode"] = {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    axes = [int(a) % rank for a in node.attrs.get("axes", range(rank))]
    scales = _given(node, ctx, "scales", legacy)
    sizes = None if legacy else _given(node, ctx, "sizes", legacy)
    if scales is not None and len(scales) != len(axes):
        ctx.fail(node, f"{len(scales)} scales for {len(axes)} axes")
    if sizes is not None and len(sizes) != len(axes):
        ctx.fail(node, f"{len(sizes)} sizes for {len(axes)} axes")
    plan = []
    for i, axis in enumerate(axes):
        n, m = in_shape[axis], out_shape[axis]
        scale = float(scales[i]) if scales is not None else None
        if scale is not None and not (np.isfinite(scale) and scale > 0):
            ctx.fail(node, f"scale {scale!r} on axis {axis}")
        if sizes is not None and int(sizes[i]) != m:
            ctx.fail(node, f"sizes give {int(sizes[i])} on axis {axis}, shape inference {m}")
        if n != m or (scale is not None and scale != 1.0):
            plan.append((axis, n, m, scale))
    for axis in set(range(rank)) - set(axes):
        if in_shape[axis] != out_shape[axis]:
            ctx.fail(node, f"axis {axis} changes size without being listed in axes")
    return plan, attrs


def _given(node, ctx, what: str, legacy: bool):
    """The model's constant scales or sizes (per listed axis), or None."""
    if node.op == "Upsample" and what == "scales" and "scales" in node.attrs:
        return list(node.attrs["scales"])
    index = {"scales": 1 if legacy else 2, "sizes": 3}[what]
    if len(node.inputs) > index and node.inputs[index]:
        c = ctx.const(node.inputs[index])
        if c is not None and c.size:
            return [float(v) for v in np.asarray(c).ravel()]
    return None


def _batch_axes(node, ctx) -> set[int]:
    try:
        return {axis for axis, *_ in _plan(node, ctx)[0]}
    except Exception:
        return {0}  # the rule itself reports what is wrong


@rule("Resize", inputs={"X": DATA, "roi": CONST, "scales": CONST, "sizes": CONST}, attrs=RESIZE_ATTRS, kind="linear",
      batch_axes=_batch_axes, min_version=10,
      constant="product over resized axes of the exact norm of the axis's interpolation matrix (onnx reference Resize)")
def resize(node, ctx):
    return _resize(node, ctx)


@rule("Upsample", inputs={"X": DATA, "scales": CONST}, attrs=("mode", "scales"), kind="linear", batch_axes=_batch_axes,
      min_version=7, constant="as Resize (asymmetric coordinates, floor rounding)")
def upsample(node, ctx):
    return _resize(node, ctx)


def _resize(node, ctx):
    plan, attrs = _plan(node, ctx)
    factor = 1.0
    for axis, n, m, scale in plan:
        try:
            factor *= spectral_norm(_axis_matrix(n, m, scale, attrs))
        except ValueError as exc:
            ctx.fail(node, f"axis {axis}: {exc}")
    factor *= SAFETY
    ctx.note_factor(node, factor, f"{attrs['mode']} resize, exact separable norm")
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


def _axis_matrix(n: int, m: int, scale: float | None, attrs) -> np.ndarray:
    """The (m x n) matrix of resizing one axis from n to m entries (with the model's scale if it gave one)."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    x = np.eye(n, dtype=np.float64)  # row j: the j-th basis vector; only axis 1 is resized
    if scale is not None:
        inputs, feed = ["X", "", "scales"], {"scales": np.array([1.0, scale], dtype=np.float32)}
        extra = [helper.make_tensor_value_info("scales", TensorProto.FLOAT, [2])]
    else:
        inputs, feed = ["X", "", "", "sizes"], {"sizes": np.array([n, m], dtype=np.int64)}
        extra = [helper.make_tensor_value_info("sizes", TensorProto.INT64, [2])]
    node = helper.make_node("Resize", inputs, ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [n, n])] + extra,
        [helper.make_empty_tensor_value_info("Y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    try:
        (y,) = ReferenceEvaluator(model).run(None, {"X": x, **feed})
    except Exception as exc:
        if attrs.get("mode", "nearest") != "nearest":
            raise ValueError(f"onnx's reference Resize failed ({type(exc).__name__}: {str(exc)[:120]})") from None
        y = _nearest_matrix_by_onnxruntime(x, inputs, feed, attrs, exc)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n, m):
        raise ValueError(f"resize of {n} entries gave {y.shape[1]}, the model says {m}")
    return y.T


def _nearest_matrix_by_onnxruntime(x: np.ndarray, inputs, feed, attrs, reference_error) -> np.ndarray:
    """The same matrix from onnxruntime, for conventions onnx's reference lacks (``tf_half_pixel_for_nn``).

    Only for nearest mode: its matrix selects entries (0/1), so float32 reproduces it exactly.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = x.shape[0]
    extra = [helper.make_tensor_value_info(k, TensorProto.FLOAT if k == "scales" else TensorProto.INT64, [2])
             for k in feed]
    graph = helper.make_graph(
        [helper.make_node("Resize", list(inputs), ["Y"], **attrs)], "resize",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, n])] + extra,
        [helper.make_empty_tensor_value_info("Y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its deprecation notice for tf_half_pixel_for_nn is not the user's business
        sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"X": x.astype(np.float32), **feed})
    except Exception as exc:
        raise ValueError(f"neither onnx's reference Resize ({type(reference_error).__name__}) nor onnxruntime "
                         f"({type(exc).__name__}: {str(exc)[:120]}) could evaluate it") from None
    y = np.asarray(y, dtype=np.float64)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("nearest resize gave a matrix that does not select entries")
    return y
