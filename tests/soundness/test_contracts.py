"""The rule-contract test: it enumerates the registry.

For every rule: its contract covers every input slot and attribute the ONNX
schemas give the op (so nothing is read silently or ignored silently); a
basic instance is certified soundly against the brute-force witness; and for
every slot that holds a constant in that instance, a graph feeding an
input-dependent value into the slot instead is refused (a ``CONST`` slot,
naming the node and the slot) or certified soundly (``DATA``/``AFFINE``).
A rule added without a contract, or without an instance here, fails this test.
"""

from __future__ import annotations

import numpy as np
import onnx.defs
import pytest
from onnx import TensorProto, helper

from lipaudit.ops import CONST, REVIEWED_OPSET, load_rules
from tests.soundness.graphs import Net, assert_sound, certify

RULES = load_rules()
X = "x"
_rng = np.random.default_rng(0)


def f(*shape):
    return _rng.standard_normal(shape)


def ints(*values):
    return np.array(values, dtype=np.int64)


UNARY = ["Relu", "Tanh", "Sigmoid", "Softplus", "Softsign", "Abs", "Neg", "Erf", "LeakyRelu", "Elu", "Selu",
         "HardSigmoid", "Softmax", "LogSoftmax", "Flatten", "Identity", "GlobalMaxPool", "GlobalAveragePool"]
# op -> (opset, {slot: "x" | ("x", shape) | constant | [variadic values]}, attributes)
RECIPES = {op: (17, {"X": X}, {}) for op in UNARY}
RECIPES.update({
    "Tanh": (17, {"input": X}, {}), "Softsign": (17, {"input": X}, {}), "Erf": (17, {"input": X}, {}),
    "Softmax": (17, {"input": X}, {}), "LogSoftmax": (17, {"input": X}, {}), "Flatten": (17, {"input": X}, {}),
    "Identity": (17, {"input": X}, {}),
    "HardSwish": (14, {"X": X}, {}), "Mish": (18, {"X": X}, {}), "Celu": (12, {"X": X}, {"alpha": 0.7}),
    "Gelu": (20, {"X": X}, {"approximate": "tanh"}),
    "Clip": (17, {"input": X, "min": np.array(-0.5), "max": np.array(0.5)}, {}),
    "PRelu": (17, {"X": X, "slope": f(2, 1, 1) * 2}, {}),
    "Add": (17, {"A": X, "B": f(1, 2, 1, 1)}, {}), "Sub": (17, {"A": X, "B": f(1, 2, 4, 4)}, {}),
    "Mul": (17, {"A": X, "B": f(1, 1, 4, 4)}, {}), "Div": (17, {"A": X, "B": np.array([[[[2.0]], [[-0.5]]]])}, {}),
    "Sum": (17, {"data_0": [X, f(1, 2, 4, 4)]}, {}), "Mean": (17, {"data_0": [X, f(2, 4, 4)]}, {}),
    "Max": (17, {"data_0": [X, f(1, 2, 4, 4)]}, {}), "Min": (17, {"data_0": [X, f(4)]}, {}),
    "Where": (17, {"condition": f(1, 2, 4, 4) > 0, "X": X, "Y": f(1, 2, 4, 4)}, {}),
    "Conv": (17, {"X": X, "W": f(3, 2, 3, 3), "B": f(3)}, {"pads": [1, 1, 1, 1], "strides": [2, 1]}),
    "ConvTranspose": (17, {"X": X, "W": f(2, 3, 3, 3), "B": f(3)}, {"strides": [2, 2]}),
    "Gemm": (17, {"A": (X, (1, 8)), "B": f(4, 8), "C": f(4)}, {"transB": 1, "alpha": 0.7, "beta": -2.0}),
    "MatMul": (17, {"A": (X, (1, 8)), "B": f(8, 4)}, {}),
    "BatchNormalization": (15, {"X": X, "scale": f(2), "B": f(2), "input_mean": f(2), "input_var": np.abs(f(2)) + 0.1}, {}),
    "MaxPool": (17, {"X": X}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "AveragePool": (17, {"X": X}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "ReduceMean": (18, {"data": X, "axes": ints(1)}, {}), "ReduceSum": (13, {"data": X, "axes": ints(2, 3)}, {}),
    "ReduceMax": (18, {"data": X, "axes": ints(3)}, {}), "ReduceMin": (18, {"data": X, "axes": ints(1)}, {}),
    "ReduceL1": (18, {"data": X, "axes": ints(2)}, {}), "ReduceL2": (18, {"data": X, "axes": ints(1)}, {}),
    "Resize": (13, {"X": X, "roi": np.zeros(0), "scales": np.array([1, 1, 2, 1.5], dtype=np.float32)}, {"mode": "linear"}),
    "Upsample": (9, {"X": X, "scales": np.array([1, 1, 2, 2], dtype=np.float32)}, {}),
    "DepthToSpace": (17, {"input": (X, (1, 4, 2, 2))}, {"blocksize": 2}),
    "SpaceToDepth": (17, {"input": X}, {"blocksize": 2}),
    "Squeeze": (17, {"data": (X, (1, 2, 1, 4)), "axes": ints(2)}, {}),
    "Unsqueeze": (17, {"data": X, "axes": ints(4)}, {}),
    "Reshape": (17, {"data": X, "shape": ints(1, -1)}, {}),
    "Transpose": (17, {"data": X}, {"perm": [0, 1, 3, 2]}),
    "Dropout": (17, {"data": X, "ratio": np.array(0.5), "training_mode": np.array(False)}, {}),
    "Cast": (17, {"input": X}, {"to": TensorProto.DOUBLE}),
    "CastLike": (17, {"input": X, "target_type": np.array([1.0])}, {}),
    "Slice": (17, {"data": X, "starts": ints(1), "ends": ints(3), "axes": ints(2), "steps": ints(1)}, {}),
    "Split": (17, {"input": X, "split": ints(1, 3)}, {"axis": 3}),
    "Gather": (17, {"data": X, "indices": ints(0, 2, 2, -1)}, {"axis": 2}),
    "Expand": (17, {"input": (X, (1, 2, 1, 4)), "shape": ints(1, 2, 3, 4)}, {}),
    "Tile": (17, {"input": X, "repeats": ints(1, 1, 2, 1)}, {}),
    "Concat": (17, {"inputs": [X, f(1, 3, 4, 4)]}, {"axis": 1}),
    "Pad": (18, {"data": X, "pads": ints(1, 2, 0, 1), "constant_value": np.array(0.5), "axes": ints(2, 3)}, {}),
    "LayerNormalization": (17, {"X": X, "Scale": f(4), "B": f(2, 4, 4)}, {"axis": -1, "epsilon": 0.1}),
    "GroupNormalization": (21, {"X": X, "scale": f(2), "bias": f(2)}, {"num_groups": 1, "epsilon": 0.1}),
    "InstanceNormalization": (17, {"input": X, "scale": f(2), "B": f(2)}, {"epsilon": 0.1}),
    "GatherND": (13, {"data": X, "indices": ints(0, 1, 0, 0, 0, 1).reshape(3, 2)}, {}),
    "GatherElements": (13, {"data": X, "indices": np.zeros((1, 2, 3, 4), dtype=np.int64)}, {"axis": 2}),
    "LpPool": (18, {"X": X}, {"kernel_shape": [2, 2], "p": 1, "strides": [1, 1]}),
    "GlobalLpPool": (17, {"X": X}, {"p": 3}),
    "ReduceLogSumExp": (18, {"data": X, "axes": ints(1, 3)}, {}),
})
# rules certified on --input-range only: certified on this box, refused without one
DOMAIN_BOX = (0.5, 2.0)
RECIPES.update({
    "Exp": (17, {"input": X}, {}), "Log": (17, {"input": X}, {}), "Sqrt": (17, {"X": X}, {}),
    "Reciprocal": (17, {"X": X}, {}), "Pow": (17, {"X": X, "Y": np.array(3.0)}, {}),
})
CHECKED = sorted(op for op, r in RULES.items() if r.kind != "refused")


def _schema_history(op: str):
    rule = RULES[op]
    return [s for s in onnx.defs.get_all_schemas_with_history()
            if s.domain == "" and s.name == op and rule.min_version <= s.since_version <= REVIEWED_OPSET]


def build(op: str, inject: tuple[str, int] | None = None):
    """The recipe of ``op`` as a model; ``inject=(slot, k)`` turns that constant into a network input."""
    opset, slots, attrs = RECIPES[op]
    net = Net(opset=opset)
    schema = onnx.defs.get_schema(op, opset, "")
    inputs = []
    for param in schema.inputs:
        spec = slots.get(param.name)
        specs = spec if isinstance(spec, list) else [spec]
        for k, item in enumerate(specs):
            if item is None:
                inputs.append("")
            elif isinstance(item, str) or isinstance(item, tuple):
                shape = item[1] if isinstance(item, tuple) else (1, 2, 4, 4)
                inputs.append(net.input(shape, name="x"))
            elif inject == (param.name, k):
                arr = np.asarray(item)
                elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
                inputs.append(net.input(arr.shape, name="z", elem_type=elem))
            else:
                inputs.append(net.const(item))
    while inputs and inputs[-1] == "":
        inputs.pop()
    n_out = 2 if op == "Split" else 1
    out = net.op(op, inputs, n_out=n_out, **attrs)
    outs = out if isinstance(out, list) else [out]
    return net.build(outs), outs


def constant_slots(op: str):
    _, slots, _ = RECIPES[op]
    for slot, spec in slots.items():
        specs = spec if isinstance(spec, list) else [spec]
        for k, item in enumerate(specs):
            if not isinstance(item, (str, tuple)) and item is not None:
                yield slot, k


def test_every_rule_has_a_recipe_and_a_complete_contract():
    missing = [op for op in CHECKED if op not in RECIPES]
    assert not missing, f"add a recipe (and a witness test) for the new rule(s) {missing}"
    for op in CHECKED:
        rule = RULES[op]
        assert rule.constant and rule.kind in ("linear", "diagonal", "nonlinear", "domain"), op
        for schema in _schema_history(op):
            assert {i.name for i in schema.inputs} <= set(rule.inputs), (op, schema.since_version)
            assert set(schema.attributes) <= rule.attrs, (op, schema.since_version, set(schema.attributes) - rule.attrs)


@pytest.mark.parametrize("op", CHECKED)
def test_basic_instance_is_sound(op):
    model, outs = build(op)
    if RULES[op].kind == "domain":
        value, result = certify(model, outputs=outs)
        assert value is None and "--input-range" in result.refusals[0].message()
        value = assert_sound(model, outs, points=2, input_range=DOMAIN_BOX)
        assert value is not None, f"{op}: the basic instance should be certified on {DOMAIN_BOX}"
        return
    value = assert_sound(model, outs, points=2)
    assert value is not None, f"{op}: the basic instance should be certified"


CASES = [(op, slot, k) for op in CHECKED if op in RECIPES for slot, k in constant_slots(op)]


@pytest.mark.parametrize("op,slot,k", CASES, ids=[f"{op}.{slot}{k or ''}" for op, slot, k in CASES])
def test_input_dependent_value_in_every_slot(op, slot, k):
    model, outs = build(op, inject=(slot, k))
    role = RULES[op].inputs[slot]
    if role is CONST:
        value, result = certify(model, outputs=outs)
        assert value is None, f"{op}: input-dependent {slot!r} must be refused"
        refusal = result.refusals[0]
        assert refusal.node.endswith(op) and refusal.slot == slot and slot in refusal.message()
    else:
        assert_sound(model, outs, points=2, **({"input_range": DOMAIN_BOX} if RULES[op].kind == "domain" else {}))
