"""ONNX files -> :class:`lipaudit.graph.Graph`.

Steps: read (external data from the model's directory), ``onnx.checker``,
fix the input shape (symbolic batch -> 1, other symbolic dims from the user),
shape inference, then fold every constant subgraph (initializers,
``Constant``, ``ConstantOfShape``, ``Cast``/``Reshape``/... of constants, and
``Shape`` of a statically shaped tensor) so weights always appear as arrays.
No code from the file is executed: ONNX is a protobuf, evaluated here by
onnx's own reference operators on constants only.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lipaudit.ops.contract import NON_DETERMINISTIC  # never folded: not functions of their inputs
from lipaudit.errors import InputShapeError, ModelLoadError, UnsupportedOpError, first_line
from lipaudit.graph import Graph, Node
from lipaudit.loaders.module_names import module_path

CONTROL_FLOW = {"If", "Loop", "Scan", "SequenceMap"}


def load_onnx(path: str, input_shape: dict[str, tuple[int, ...]] | tuple[int, ...] | None = None) -> Graph:
    """Read an ONNX model into a :class:`Graph`.

    Args:
        path: the ``.onnx`` file; external data files are read from its directory.
        input_shape: the network input's shape (or ``{input_name: shape}``), used
            for symbolic dimensions other than a leading batch dimension.

    Raises:
        ModelLoadError: not a file, not ONNX, truncated, fails the checker, missing weights.
        InputShapeError: a symbolic dimension needs ``--input-shape``.
    """
    return load_onnx_model(_read(path), path, input_shape)


def load_onnx_model(model, path: str, input_shape=None) -> Graph:
    """:func:`load_onnx` for a ``ModelProto`` already in memory (``path`` labels messages).

    Model-local functions are inlined first (onnx.inliner), so their bodies are
    analysed op by op; a call to a function the model does not define stays a
    custom-domain node, which the engine refuses. With a dynamic batch dimension
    (symbolic, or declared as -1 or 0) the graph is built at batch 1 and every
    value's shape at batch 2 is recorded in ``Graph.batch_shapes``.
    """
    import onnx

    _check_opset(model, path)
    model = _inline_functions(model, path)
    skeleton = _skeleton(model)  # a copy: the caller's ModelProto is never modified
    _normalise_dims(skeleton)
    try:
        onnx.checker.check_model(skeleton)
    except Exception as exc:  # onnx raises ValidationError and friends
        raise ModelLoadError(f"{path}: fails onnx.checker: {first_line(exc)}") from None
    for node in model.graph.node:
        if node.op_type in CONTROL_FLOW:
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], "control flow is not analysed")
    initializers = {t.name for t in model.graph.initializer}
    net_inputs = [i for i in skeleton.graph.input if i.name not in initializers]
    if not net_inputs:
        raise ModelLoadError(f"{path}: the model has no input that is not a constant")
    _forget_declared_shapes(skeleton)
    at_batch_2 = onnx.ModelProto()
    at_batch_2.CopyFrom(skeleton)
    dynamic = _fix_input_shapes(skeleton, net_inputs, input_shape)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: shape inference failed: {first_line(exc)}") from None
    at_2 = _graph_at_batch(model, at_batch_2, dynamic, 2) if dynamic else None
    taint = _BatchTaint(at_2.shapes if at_2 is not None else None) if dynamic else None
    graph = _to_graph(model, inferred, path, [i.name for i in net_inputs], taint)
    from lipaudit.loaders.sanity import check_graph

    check_graph(graph, path)  # what the checker leaves to the runtime (negative sizes, kernel_shape)
    if dynamic:
        graph.batch_shapes = dict(at_2.shapes) if at_2 is not None else {}
        differs = _batch_dependent_constants(graph, at_2)
        graph.batch_dependent = differs | set(taint.moved) | set(taint.computed)
        graph.batch_computed = (differs - set(taint.moved)) | set(taint.computed)
        graph.source["dynamic_batch"] = True
    return graph


class _BatchTaint:
    """Which folded constants are computed from the batch size, followed symbolically through the folds.

    ``Shape`` of a value whose (selected) dimensions change with the batch gives a *moved* constant: its
    entries are copies of dimensions. Ops that only move entries (gather, slice, concat ...) keep it moved;
    any other op (arithmetic, ``Size``, indexing by it) makes it *computed*. A moved constant may set a
    Reshape/Expand shape (checked at batch 2); a computed one is refused wherever it is used, since two
    sample batch sizes cannot tell what a computation of the batch size does at a third.
    """

    MOVING = {"Gather", "Slice", "Squeeze", "Unsqueeze", "Concat", "Identity", "Reshape", "Flatten", "Cast"}

    def __init__(self, shapes_at_2):
        self.at_2 = shapes_at_2
        self.moved: set[str] = set()
        self.computed: set[str] = set()

    def fold(self, node, shapes, constants) -> None:
        outs = [o for o in node.outputs if o]
        if node.op in ("Shape", "Size") and node.inputs[0] not in constants:
            s1 = shapes.get(node.inputs[0])
            s2 = self.at_2.get(node.inputs[0]) if self.at_2 is not None else None
            if node.op == "Shape":
                start, end = int(node.attrs.get("start", 0)), node.attrs.get("end")
                s1 = None if s1 is None else tuple(s1)[start:end]
                s2 = None if s2 is None else tuple(s2)[start:end]
            if s1 is None or s2 is None or tuple(s1) != tuple(s2):
                (self.moved if node.op == "Shape" else self.computed).update(outs)
            return
        tainted = [i for i in node.inputs if i in self.moved or i in self.computed]
        if not tainted:
            return
        data = node.inputs if node.op == "Concat" else node.inputs[:1]
        if node.op in self.MOVING and all(i in data and i in self.moved for i in tainted):
            self.moved.update(outs)
        else:
            self.computed.update(outs)


def _forget_declared_shapes(skeleton) -> None:
    """Shapes come from inference only, never from the file's value_info or output declarations.

    Rules read shapes (broadcast copies, pooling and resize matrices): a wrong
    declared shape would change a constant. Only the inputs' shapes are given.
    """
    del skeleton.graph.value_info[:]
    for out in skeleton.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _check_opset(model, path: str) -> None:
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > newest:
            raise ModelLoadError(f"{path}: ONNX opset {imp.version} is newer than the installed onnx supports "
                                 f"(up to {newest}); upgrade onnx, or export with opset <= {newest}")


def _inline_functions(model, path: str):
    """Inline the model's local functions, so their bodies are analysed (never matched by name)."""
    if not model.functions:
        return model
    model = _with_attribute_defaults(model)
    try:
        from onnx import inliner

        inlined = inliner.inline_local_functions(model)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot inline the model's local functions ({first_line(exc)})") from None
    del inlined.functions[:]
    for node in inlined.graph.node:
        for attr in node.attribute:
            if attr.ref_attr_name:  # an attribute reference the inliner could not resolve: its value is unknown
                raise ModelLoadError(f"{path}: node {node.name or node.op_type!r} ({node.op_type}) refers to function "
                                     f"attribute {attr.ref_attr_name!r}, which has no value after inlining")
    return inlined


def _with_attribute_defaults(model):
    """A copy whose calls of local functions spell out every attribute default the call omits.

    ``onnx.inliner`` drops a reference to an attribute the call does not give, even when the function
    declares a default (``attribute_proto``); onnxruntime applies the default. Spelling it out makes both agree.
    """
    import onnx

    defaults = {(f.domain, f.name, getattr(f, "overload", "")): {a.name: a for a in f.attribute_proto}
                for f in model.functions if len(f.attribute_proto)}
    if not defaults:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        found = defaults.get((node.domain, node.op_type, getattr(node, "overload", "")))
        if not found:
            continue
        given = {a.name for a in node.attribute}
        for name, attr in found.items():
            if name not in given:
                node.attribute.append(attr)
    return copy


def _normalise_dims(model) -> None:
    """A dimension declared as -1 or 0 is dynamic (some exporters write the batch that way), like a symbolic one."""
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    for value in values:
        t = value.type.tensor_type
        if not t.HasField("shape"):
            continue
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.dim_param = "dynamic"


def _graph_at_batch(model, skeleton, dynamic: list[str], batch: int) -> Graph | None:
    """The graph when the dynamic batch dimensions are ``batch`` (best effort: None on failure)."""
    import onnx

    for value in skeleton.graph.input:
        if value.name in dynamic:
            value.type.tensor_type.shape.dim[0].dim_value = batch
    for value in skeleton.graph.input:
        for d in value.type.tensor_type.shape.dim[1:]:
            if not d.HasField("dim_value"):
                return None
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
        return _to_graph(model, inferred, f"<batch {batch}>", [])
    except Exception:
        return None


def _batch_dependent_constants(graph: Graph, at_2: Graph | None) -> set[str]:
    """Folded constants whose value changes with the batch size (``Shape(x)[0]`` and what is computed from it).

    Folding happens at batch 1; such a constant is only right for batch 1, so the engine lets it reach
    nothing but the shape slots whose effect it checks at batch 2. Unknown at batch 2: every folded constant.
    """
    folded = set(graph.constants) - graph.initializers
    if at_2 is None:
        return folded
    return {name for name in folded
            if name not in at_2.constants or np.shape(graph.constants[name]) != np.shape(at_2.constants[name])
            or not np.array_equal(graph.constants[name], at_2.constants[name])}


_SMALL = 4096  # initializers up to this many elements stay in the skeleton (shapes, axes, scales)


def _skeleton(model):
    """The model without its large weights: they become typed graph inputs.

    The checker and shape inference serialise the whole model; they need the
    structure and the small shape-like constants only, not 100 MB of weights.
    """
    from onnx import helper

    import onnx

    g = model.graph
    big = [t for t in g.initializer if _numel(t) > _SMALL]
    if not big:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    big_names = {t.name for t in big}
    declared = {i.name for i in g.input}
    extra = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in big if t.name not in declared]
    graph = helper.make_graph(
        list(g.node), g.name, list(g.input) + extra, list(g.output),
        initializer=[t for t in g.initializer if t.name not in big_names], value_info=list(g.value_info),
    )
    skeleton = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                                 producer_name=model.producer_name)
    skeleton.functions.extend(model.functions)
    return skeleton


def _numel(t) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def _read(path: str):
    import onnx

    from lipaudit.loaders import require_model_file

    require_model_file(path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    if not model.graph.node and not model.graph.input:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph found)")
    from lipaudit.loaders.sanity import fix_invalid_utf8

    fix_invalid_utf8(model, path)  # names that are not UTF-8 arrive as bytes
    from lipaudit.safe_io import check_external_data

    check_external_data(model, os.path.dirname(os.path.abspath(path)), path)  # regular files, within budget
    try:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except Exception as exc:
        raise ModelLoadError(f"{path}: missing or unreadable external weights ({first_line(exc)})") from None
    return model


def _fix_input_shapes(model, net_inputs, input_shape) -> list[str]:
    """Make every input shape static; returns the inputs whose (leading) batch dimension was dynamic."""
    dynamic: list[str] = []
    wanted: dict[str, tuple[int, ...]] = {}
    if isinstance(input_shape, dict):
        wanted = {k: tuple(v) for k, v in input_shape.items()}
        unknown = set(wanted) - {i.name for i in net_inputs}
        if unknown:
            raise InputShapeError(f"--input-shape names unknown input(s) {sorted(unknown)}; inputs are {[i.name for i in net_inputs]}")
    elif input_shape is not None:
        wanted = {net_inputs[0].name: tuple(input_shape)}
    for value in net_inputs:
        dims = value.type.tensor_type.shape.dim
        given = wanted.get(value.name)
        if given is not None:
            if len(given) != len(dims):
                raise InputShapeError(
                    f"--input-shape {','.join(map(str, given))} has rank {len(given)}, input {value.name!r} has rank {len(dims)}"
                )
            for d, n in zip(dims, given):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != n:
                    raise InputShapeError(f"--input-shape gives {n} where input {value.name!r} has fixed size {d.dim_value}")
                d.dim_value = int(n)
            continue
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if axis == 0:
                d.dim_value = 1  # a symbolic leading batch dimension: certified per sample
                dynamic.append(value.name)
            else:
                raise InputShapeError(
                    f"input {value.name!r} has a symbolic dimension {d.dim_param or '?'!r} at axis {axis}; "
                    f"give the full shape with --input-shape (e.g. --input-shape 1,3,224,224)"
                )
    return dynamic


def _to_graph(model, inferred, path: str, input_names: list[str], taint: _BatchTaint | None = None) -> Graph:
    """``model`` holds the weights; ``inferred`` (its skeleton after shape inference) the shapes."""
    from onnx import numpy_helper

    g = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = v.type.tensor_type
        # onnx's data propagation can leave -1 (a Reshape's "infer this") as a dim_value: that is unknown, not a size
        if t.HasField("shape") and all(d.HasField("dim_value") and d.dim_value != -1 for d in t.shape.dim):
            shapes[v.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    constants: dict[str, np.ndarray] = {}
    for init in g.initializer:
        try:
            constants[init.name] = numpy_helper.to_array(init)
        except Exception as exc:
            raise ModelLoadError(f"{path}: weight {init.name!r} cannot be read ({first_line(exc)})") from None
    opset = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    nodes: list[Node] = []
    kept = []
    used_names: set[str] = set()
    for proto in g.node:
        node = Node(
            name=proto.name or (proto.output[0] if proto.output else proto.op_type),
            op=proto.op_type,
            inputs=list(proto.input),
            outputs=list(proto.output),
            attrs={a.name: _attr_value(a) for a in proto.attribute},
            domain=proto.domain,
            module=module_path({p.key: p.value for p in proto.metadata_props}) if proto.metadata_props else None,
        )
        node.name = _unique(node.name, used_names)
        folded = _try_fold(proto, node, constants, shapes, opset.get("ai.onnx", 21))
        if folded is not None and taint is not None:
            taint.fold(node, shapes, constants)
        if folded is not None:
            for name, arr in zip(node.outputs, folded):
                if name:
                    constants[name] = arr
                    shapes[name] = tuple(arr.shape)
            continue
        nodes.append(node)
        kept.append(proto)
    for name, arr in constants.items():
        shapes.setdefault(name, tuple(arr.shape))
    if any(n.outputs and n.outputs[0] not in shapes for n in nodes):
        _reinfer_shapes(model, kept, nodes, constants, shapes)
    return Graph(
        nodes=nodes,
        inputs=input_names,
        outputs=[o.name for o in g.output],
        constants=constants,
        shapes=shapes,
        initializers={init.name for init in g.initializer},
        source={"format": "onnx", "opset": opset.get("ai.onnx"), "producer": model.producer_name or None},
    )


def _reinfer_shapes(model, kept, nodes, constants, shapes) -> None:
    """Shape inference again, now that computed shapes (Shape -> Gather -> Concat -> Reshape) are constants."""
    import onnx
    from onnx import helper, numpy_helper

    used = sorted({i for n in nodes for i in n.inputs if i in constants})
    g = model.graph
    # inference needs the values of shape-like constants only; weights go in as typed inputs
    small = [name for name in used if np.asarray(constants[name]).size <= 4096]
    large = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(constants[name].dtype), constants[name].shape)
        for name in used if name not in small
    ]
    # the inputs at the shapes this load fixed (the file may declare -1 or symbols for them)
    net_inputs = [helper.make_tensor_value_info(i.name, i.type.tensor_type.elem_type, shapes.get(i.name))
                  for i in g.input if i.name not in constants]
    graph = helper.make_graph(
        kept, g.name, net_inputs + large, [helper.make_empty_tensor_value_info(o.name) for o in g.output],  # no declared shapes
        initializer=[numpy_helper.from_array(np.asarray(constants[name]), name) for name in small],
    )
    redo = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(redo, data_prop=True)
    except Exception:
        return  # keep what the first pass found; a rule needing a shape says so
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = v.type.tensor_type
        if v.name not in shapes and t.HasField("shape") and all(d.HasField("dim_value") and d.dim_value != -1
                                                                 for d in t.shape.dim):
            shapes[v.name] = tuple(int(d.dim_value) for d in t.shape.dim)


def _unique(name: str, used: set[str]) -> str:
    """Node names are not required to be unique in ONNX; lipaudit's are (suffix ``#k``)."""
    base, k = name, 1
    while name in used:
        k += 1
        name = f"{base}#{k}"
    used.add(name)
    return name


def _try_fold(proto, node: Node, constants: dict[str, np.ndarray], shapes, opset: int) -> list[np.ndarray] | None:
    """Evaluate a node whose inputs are all constant; ``None`` when it depends on the input."""
    if node.op in NON_DETERMINISTIC or node.op in CONTROL_FLOW or node.domain not in ("", "ai.onnx"):
        return None
    if node.op == "Dropout":
        from lipaudit.ops.structural import dropout_training_reason

        if dropout_training_reason(node, constants.get, opset):
            return None  # a random mask: the engine refuses it
    if node.op in ("Shape", "Size") and node.inputs[0] in shapes and node.inputs[0] not in constants:
        # the shape of a statically shaped tensor is a constant
        shape = np.array(shapes[node.inputs[0]], dtype=np.int64)
        if node.op == "Size":
            return [np.array(int(np.prod(shape)), dtype=np.int64)]
        start = int(node.attrs.get("start", 0))
        end = node.attrs.get("end")
        return [shape[start:end] if end is not None else shape[start:]]
    if not all((not name) or name in constants for name in node.inputs):
        return None
    from lipaudit.budget import check_folded

    check_folded(node, constants, shapes)  # a 300-byte ConstantOfShape can ask for terabytes
    try:
        feeds = {name: constants[name] for name in node.inputs if name}
        return [np.asarray(x) for x in _evaluate(proto, feeds, opset)]
    except Exception as exc:
        raise ModelLoadError(f"cannot evaluate constant node {node.name!r} ({node.op}): {first_line(exc)}") from None


def _evaluate(proto, feeds: dict[str, np.ndarray], opset: int) -> list:
    """Run one node with onnx's reference operators, at the model's opset."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape)
        for name, arr in feeds.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(name) for name in proto.output if name]
    graph = helper.make_graph([proto], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, feeds)


def _attr_value(attr) -> Any:
    from onnx import AttributeProto, helper, numpy_helper

    if attr.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return "<subgraph>"
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    return value
