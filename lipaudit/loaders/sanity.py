"""Checks that onnx's checker leaves to the runtime, made before any rule reads a shape.

A model that onnxruntime would refuse to run is refused here too, with one line naming the node,
rather than reaching a rule with impossible shapes (a negative size, a kernel that contradicts its
weight). Found by the seeded mutation fuzz in ``tests/hostile/test_fuzz_onnx.py``.
"""

from __future__ import annotations

from lipaudit.errors import ModelLoadError
from lipaudit.safe_io import clean_text


def check_graph(graph, path: str) -> None:
    for name, shape in graph.shapes.items():
        if any(int(d) < 0 for d in shape):
            raise ModelLoadError(f"{path}: value {clean_text(name)!r} has negative size {list(shape)} "
                                 "(the node that makes it cannot run)")
    for node in graph.nodes:
        if node.op in ("Conv", "ConvTranspose") and len(node.inputs) > 1 and node.inputs[1] in graph.constants:
            taps = tuple(graph.constants[node.inputs[1]].shape[2:])
            declared = node.attrs.get("kernel_shape")
            if declared is not None and tuple(int(k) for k in declared) != taps:
                raise ModelLoadError(f"{path}: node {clean_text(node.name)!r}: kernel_shape {list(declared)} "
                                     f"does not match its weight's {list(taps)}")


def fix_invalid_utf8(model, path: str) -> None:
    """Decode names that are not UTF-8 (protobuf hands them over as bytes) with visible escapes.

    Only done on a model this process read from a file. The escape form must not merge two
    values into one: a collision with another name is refused.
    """
    from google.protobuf.descriptor import FieldDescriptor

    fixed: dict[bytes, str] = {}
    seen: set[str] = set()

    def fix(raw: bytes) -> str:
        fixed[raw] = raw.decode("utf-8", "backslashreplace")
        return fixed[raw]

    def visit(msg) -> None:
        if msg.DESCRIPTOR.name == "TensorProto":  # never touch (or copy) the weights themselves
            for attr in ("name", "doc_string"):
                value = getattr(msg, attr)
                if isinstance(value, bytes):
                    setattr(msg, attr, fix(value))
                else:
                    seen.add(value)
            return
        for field, value in msg.ListFields():
            repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
            if field.type == FieldDescriptor.TYPE_STRING:
                values = list(value) if repeated else [value]
                if any(isinstance(v, bytes) for v in values):
                    clean = [fix(v) if isinstance(v, bytes) else v for v in values]
                    if repeated:
                        del value[:]
                        value.extend(clean)
                    else:
                        setattr(msg, field.name, clean[0])
                seen.update(v for v in values if isinstance(v, str))
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in (value if repeated else [value]):
                    visit(item)

    visit(model)
    if fixed and (len(set(fixed.values())) < len(fixed) or set(fixed.values()) & seen):
        raise ModelLoadError(f"{path}: names that are not UTF-8 collide with other names once decoded")
