"""One regression test (at least) per class of unsound certificate found by attacking the graph walk.

Each graph is certified soundly against its brute-force witness, or refused
naming the node (and the slot or attribute) that has no proven rule.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lipaudit.errors import LipauditError
from tests.soundness.graphs import Net, assert_sound, certify, witness

rng = np.random.default_rng(7)


def f(*shape):
    return rng.standard_normal(shape)


def ints(*values):
    return np.array(values, dtype=np.int64)


def refusal_of(model, outputs, **kw) -> str:
    value, result = certify(model, outputs=outputs, **kw)
    assert value is None, f"expected a refusal, got certified {value}"
    assert result.refusals
    return " | ".join(r.message() for r in result.refusals)


# --- 1. input slots -------------------------------------------------------------------------------


def test_conv_bias_that_depends_on_the_input_adds_its_constant():
    net = Net()
    x, z = net.input((1, 1, 3, 3)), net.input((1, 2), name="z")
    bias = net.op("Reshape", [net.op("Mul", [z, net.const(np.array(40.0))]), net.const(ints(2))])
    y = net.op("Conv", [x, net.const(f(2, 1, 2, 2)), bias])
    value = assert_sound(net.build([y]), [y])
    assert value > 40  # the bias's own constant (40 * sqrt(4 copies)) is in it


def test_gemm_c_that_depends_on_the_input_adds_beta_times_its_constant():
    net = Net()
    x = net.input((1, 3))
    y = net.op("Gemm", [x, net.const(f(3, 3) * 0.01), x], beta=-30.0)
    assert assert_sound(net.build([y]), [y]) >= 30


def test_conv_weight_that_depends_on_the_input_is_refused():
    net = Net()
    w = net.input((1, 1, 2, 2))
    y = net.op("Conv", [net.const(f(1, 1, 3, 3)), w])
    message = refusal_of(net.build([y]), [y])
    assert "slot 'W'" in message and "Conv" in message


@pytest.mark.parametrize("op,slots", [
    ("Clip", {"min": np.array(-1.0), "max": np.array(1.0)}),
    ("Pad", {"pads": ints(0, 1, 0, 1)}),
    ("Dropout", {"ratio": np.array(0.3)}),
])
def test_control_slot_fed_by_the_input_is_refused_or_composed(op, slots):
    for inject in slots:
        net = Net(opset=17)
        x = net.input((1, 4))
        schema = onnx.defs.get_schema(op, 17)
        inputs = [x]
        for param in schema.inputs[1:]:
            if param.name == inject:
                elem = helper.np_dtype_to_tensor_dtype(np.asarray(slots[inject]).dtype)
                inputs.append(net.input(np.asarray(slots[inject]).shape, name="z", elem_type=elem))
            elif param.name in slots:
                inputs.append(net.const(slots[param.name]))
            else:
                inputs.append("")
        while inputs[-1] == "":
            inputs.pop()
        y = net.op(op, inputs)
        model = net.build([y])
        value, result = certify(model, outputs=[y])
        if value is None:
            assert any(r.slot == inject for r in result.refusals), [r.message() for r in result.refusals]
        else:  # a slot the rule composes (e.g. Clip's bounds: max/min are 1-Lipschitz in each argument)
            assert_sound(model, [y])


def test_pad_constant_value_that_depends_on_the_input_is_counted():
    net = Net(opset=18)
    x, z = net.input((1, 1, 2, 2)), net.input((), name="z")
    y = net.op("Pad", [x, net.const(ints(0, 0, 3, 3, 0, 0, 3, 3)), z])
    assert assert_sound(net.build([y]), [y]) >= math.sqrt(64 - 4)


# --- 2. domains, opsets and attributes -----------------------------------------------------------


def test_custom_domain_op_with_a_familiar_name_is_refused():
    net = Net()
    x = net.input((1, 1, 4, 4))
    y = net.op("Relu", [x], domain="com.example")
    message = refusal_of(net.build([y], extra_opsets=[("com.example", 1)]), [y])
    assert "com.example::Relu" in message and "custom-domain" in message


def test_model_local_function_is_inlined_and_its_body_certified():
    body = [helper.make_node("Mul", ["a", "k"], ["t"]), helper.make_node("Relu", ["t"], ["b"])]
    k = helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kv", TensorProto.DOUBLE, [], [-7.0]))
    fn = helper.make_function("local", "Scale7", ["a"], ["b"], [k] + body, [helper.make_opsetid("", 17)])
    net = Net()
    x = net.input((1, 4))
    y = net.op("Scale7", [x], domain="local")
    model = net.build([y], functions=[fn], extra_opsets=[("local", 1)])
    value = assert_sound(model, [y])
    assert value == pytest.approx(7.0, rel=1e-5)


def test_a_local_function_named_like_an_onnx_op_is_not_matched_by_name():
    body = [helper.make_node("Mul", ["a", "a"], ["b"])]  # "Relu" that squares: not Lipschitz
    fn = helper.make_function("local", "Relu", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    net = Net()
    x = net.input((1, 4))
    y = net.op("Relu", [x], domain="local")
    message = refusal_of(net.build([y], functions=[fn], extra_opsets=[("local", 1)]), [y])
    assert "Mul" in message


def test_opset_newer_than_onnx_supports_is_refused():
    net = Net()
    x = net.input((1, 4))
    y = net.op("Relu", [x])
    model = net.build([y])
    model.opset_import[0].version = onnx.defs.onnx_opset_version() + 5
    with pytest.raises(LipauditError, match="opset"):
        certify(model, outputs=[y])


@pytest.mark.parametrize("to", [TensorProto.INT64, TensorProto.INT8, TensorProto.BOOL])
def test_cast_to_integer_or_bool_is_refused(to):
    net = Net()
    x = net.input((1, 4))
    y = net.op("Cast", [net.op("Cast", [x], to=to)], to=TensorProto.DOUBLE)
    assert "Cast" in refusal_of(net.build([y]), [y])


@pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_cast_to_half_precision_rounds_and_is_not_certified(to):
    net = Net()
    x = net.input((1, 4))
    y = net.op("Cast", [net.op("Cast", [x], to=to)], to=TensorProto.DOUBLE)
    assert "round" in refusal_of(net.build([y]), [y])


def test_dropout_in_training_mode_is_refused():
    net = Net()
    x = net.input((1, 4))
    y = net.op("Dropout", [x, net.const(np.array(0.5)), net.const(np.array(True))])
    assert "training_mode" in refusal_of(net.build([y]), [y])


def test_celu_with_negative_alpha_is_refused_and_elu_is_bounded_by_its_alpha():
    net = Net(opset=12)
    x = net.input((1, 4))
    y = net.op("Celu", [x], alpha=-1.5)
    assert "alpha" in refusal_of(net.build([y]), [y])
    net = Net(opset=12)
    x = net.input((1, 4))
    y = net.op("Elu", [x], alpha=-1.5)  # slope alpha * exp(x) on x < 0: at most |alpha|
    assert assert_sound(net.build([y]), [y]) == pytest.approx(1.5, rel=1e-6)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_negative_pads_crop_before_the_copy_count(mode):
    net = Net(opset=19)
    x = net.input((1, 1, 3, 6))
    y = net.op("Pad", [x, net.const(ints(0, 0, 2, -2, 0, 0, 2, -3))], mode=mode)
    assert_sound(net.build([y]), [y])


def test_resize_axis_that_keeps_its_size_with_a_scale_is_not_the_identity():
    net = Net(opset=13)
    x = net.input((1, 1, 4, 4))
    y = net.op("Resize", [x, net.const(np.zeros(0)), net.const(np.array([1, 1, 1.2, 1.0], dtype=np.float32))],
               mode="linear")
    assert assert_sound(net.build([y]), [y]) > 1.0


def test_resize_with_axes():
    net = Net(opset=18)
    x = net.input((1, 1, 3, 3))
    y = net.op("Resize", [x, "", net.const(np.array([2.0, 3.0], dtype=np.float32))], axes=[2, 3], mode="linear")
    assert_sound(net.build([y]), [y])


def test_resize_tf_half_pixel_for_nn_matches_onnxruntime():
    import onnxruntime as ort

    net = Net(opset=13)
    x = net.input((1, 1, 3, 4))
    y = net.op("Resize", [x, net.const(np.zeros(0)), net.const(np.array([1, 1, 2.5, 1.5], dtype=np.float32))],
               mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn")
    model = net.build([y])
    value, _ = certify(model, outputs=[y])
    assert value is not None
    # nearest resize selects entries: its norm is sqrt of the largest copy count, read off onnxruntime (float32)
    as_float = onnx.ModelProto()
    as_float.CopyFrom(model)
    as_float.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    as_float.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    sess = ort.InferenceSession(as_float.SerializeToString(), providers=["CPUExecutionProvider"])
    jac = np.stack([sess.run(None, {"in0": e.reshape(1, 1, 3, 4).astype(np.float32)})[0].ravel() for e in np.eye(12)])
    truth = float(np.linalg.norm(jac, 2))
    assert truth * (1 - 1e-6) <= value <= truth * (1 + 1e-5)


@pytest.mark.parametrize("alpha,beta", [(1 / 6, 0.5), (0.4, 0.5), (0.25, 0.2)])
def test_hardswish_like_patterns_use_the_matched_constants(alpha, beta):
    net = Net()
    x = net.input((1, 8))
    y = net.op("Mul", [x, net.op("HardSigmoid", [x], alpha=alpha, beta=beta)])
    assert_sound(net.build([y]), [y], points=4)


@pytest.mark.parametrize("k", [0.5, 1.0, 1.702, 8.0, -2.0])
def test_silu_like_patterns_for_any_slope(k):
    net = Net()
    x = net.input((1, 6))
    y = net.op("Mul", [x, net.op("Sigmoid", [net.op("Mul", [x, net.const(np.array(k))])])])
    assert_sound(net.build([y]), [y], points=4)


# --- 3. BatchNorm folding --------------------------------------------------------------------------


def test_bn_is_not_folded_across_an_observed_value():
    net = Net()
    x = net.input((1, 2, 4, 4))
    c = net.op("Conv", [x, net.const(f(2, 2, 3, 3))], pads=[1, 1, 1, 1])
    b = net.op("BatchNormalization", [c, net.const(np.array([50.0, 0.1])), net.const(f(2)), net.const(f(2)),
                                      net.const(np.array([0.01, 1.0]))])
    model = net.build([c, b])
    assert_sound(model, [c])
    assert_sound(model, [b])
    node = next(n.name for n in model.graph.node if n.op_type == "Conv")
    value, _ = certify(model, until=node)
    assert value >= witness(model, [c], points=1) * (1 - 1e-6)


def test_bn_after_a_broadcast_layout_change_is_not_folded_into_the_wrong_axis():
    net = Net()
    x = net.input((1, 4))
    h = net.op("MatMul", [x, net.const(f(4, 3))])  # (1, 3)
    h = net.op("Add", [h, net.const(f(1, 3, 1, 1))])  # broadcasts to (1, 3, 1, 3): features now on axis 3
    y = net.op("BatchNormalization", [h, net.const(np.array([30.0, 0.1, 0.1])), net.const(f(3)), net.const(f(3)),
                                      net.const(np.ones(3))])
    assert assert_sound(net.build([y]), [y]) is not None


def test_bn_whose_statistics_do_not_match_the_channel_axis_is_refused():
    net = Net()
    x = net.input((1, 1, 3))
    y = net.op("BatchNormalization", [x, net.const(np.array([30.0, 0.1, 0.1])), net.const(f(3)), net.const(f(3)),
                                      net.const(np.ones(3))])
    model = net.build([y])
    del model.graph.output[0].type.tensor_type.shape.dim[:]  # let inference decide
    assert "per channel" in refusal_of(model, [y])


# --- 4. shapes, batch and numbers ------------------------------------------------------------------


@pytest.mark.parametrize("declared", [-1, 0, "N"])
def test_undeclared_batch_is_dynamic(declared):
    net = Net()
    x = net.input((1, 4))
    y = net.op("Relu", [net.op("MatMul", [x, net.const(f(4, 3))])])
    model = net.build([y])
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if isinstance(declared, str):
        dim.dim_param = declared
    else:
        dim.dim_value = declared
    value, result = certify(model, outputs=[y])
    assert value is not None and result.dynamic_batch


@pytest.mark.parametrize("case", ["reduce_batch", "reshape_moves_batch", "transpose_moves_batch"])
def test_ops_mixing_the_batch_are_refused_with_a_dynamic_batch(case):
    net = Net()
    x = net.input((1, 4))
    if case == "reduce_batch":
        y = net.op("ReduceSum", [x, net.const(ints(0))], keepdims=1)
    elif case == "reshape_moves_batch":
        y = net.op("Reshape", [x, net.const(ints(1, -1))])
    else:
        y = net.op("Transpose", [x], perm=[1, 0])
    model = net.build([y])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.output[0].type.tensor_type.shape.dim[:]  # let inference decide
    assert "batch" in refusal_of(model, [y])
    # with the batch stated, it is a fixed map again
    value, _ = certify(model, outputs=[y], input_shape=(1, 4))
    assert value is not None


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_give_an_infinite_certificate(bad):
    net = Net()
    x = net.input((1, 1, 4, 4))
    w = f(1, 1, 3, 3)
    w[0, 0, 1, 1] = bad
    y = net.op("Conv", [x, net.const(w)])
    for method in ("tn", "certified"):
        value, _ = certify(net.build([y]), outputs=[y], method=method)
        assert value == math.inf


def test_infinite_times_zero_is_infinite():
    net = Net()
    x = net.input((1, 4))
    h = net.op("Mul", [x, net.const(np.array([np.inf, 1, 1, 1]))])
    y = net.op("Mul", [h, net.const(np.zeros(4))])
    value, _ = certify(net.build([y]), outputs=[y])
    assert value is None or value == math.inf


def test_hopm_does_not_overflow_to_zero():
    from lipaudit.bounds.hopm import tensor_spectral_norm

    K = f(1, 2, 2, 3, 3)
    for scale in (1e-30, 1.0, 1e30, 1e200):
        res = tensor_spectral_norm(K * scale)
        base = tensor_spectral_norm(K)
        assert res.values[0] == pytest.approx(base.values[0] * scale, rel=1e-6)


def test_random_nodes_are_never_constants():
    net = Net()
    x = net.input((1, 3))
    noise = net.op("RandomNormal", [], shape=[1, 3], dtype=TensorProto.DOUBLE)
    y = net.op("Add", [x, noise])
    assert "random" in refusal_of(net.build([y]), [y])


def test_a_constant_computed_from_the_batch_size_is_refused_on_the_data_path():
    from onnx import numpy_helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.DOUBLE), helper.make_node("Mul", ["x", "bf"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])],
                          initializer=[numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert "batch size" in refusal_of(model, ["y"])


def test_flatten_by_the_batch_size_is_still_certified():
    """``x.view(x.size(0), -1)``: the batch-sized shape only reaches Reshape's shape slot."""
    from onnx import numpy_helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b", "zero1"], ["b1"]),
             helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "zero1"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"),
             numpy_helper.from_array(f(6, 2), "w")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    value, result = certify(model, outputs=["y"])
    assert value is not None and result.dynamic_batch


@pytest.mark.parametrize("bias_slot", [True, False])
def test_bn_is_not_folded_into_a_layer_whose_bias_depends_on_the_input(bias_slot):
    net = Net()
    x = net.input((1, 2))
    if bias_slot:
        x4 = net.op("Reshape", [x, net.const(ints(1, 2, 1, 1))])
        h = net.op("Conv", [x4, net.const(f(2, 2, 1, 1) * 0.01), net.op("Reshape", [x, net.const(ints(2))])])
    else:
        h = net.op("Gemm", [x, net.const(f(2, 2) * 0.01), x])
    y = net.op("BatchNormalization", [h, net.const(np.array([100.0, 100.0])), net.const(f(2)), net.const(f(2)),
                                      net.const(np.ones(2))])
    assert assert_sound(net.build([y]), [y]) > 50


def test_average_pool_same_padding_with_dilation_covers_both_conventions():
    net = Net(opset=19)
    x = net.input((1, 1, 5))
    y = net.op("AveragePool", [x], kernel_shape=[2], strides=[3], dilations=[4], auto_pad="SAME_UPPER",
               count_include_pad=1)
    value, _ = certify(net.build([y]), outputs=[y])
    assert value >= 0.7071067811865476  # the runtimes' matrix norm


# --- found by an adversarial review of the graph walk ------------------------------------------------


def test_batch_size_arithmetic_is_refused_even_when_it_agrees_at_batch_two():
    """``rows = N - (N-1)(N-2)`` is N at N = 1, 2 and 1 at N = 3: two sample batch sizes cannot tell."""
    from onnx import numpy_helper

    i64 = lambda v, n: numpy_helper.from_array(np.array(v, dtype=np.int64), n)  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "z1", "o1"], ["n"]),
             helper.make_node("Sub", ["n", "o1"], ["a"]), helper.make_node("Sub", ["n", "t1"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["ab"]), helper.make_node("Sub", ["n", "ab"], ["rows"]),
             helper.make_node("Concat", ["rows", "m1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("ReduceSum", ["r", "ax"], ["y"], keepdims=1)]
    inits = [i64([0], "z1"), i64([1], "o1"), i64([2], "t1"), i64([-1], "m1"), i64([1], "ax")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["R", 1])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert "batch size" in refusal_of(model, ["y"])


def test_dropout_in_training_mode_on_a_constant_is_not_folded_into_a_constant():
    net = Net()
    x = net.input((1, 3))
    drop = net.op("Dropout", [net.const(np.full((1, 3), 1000.0)), net.const(np.array(0.5)), net.const(np.array(True))])
    y = net.op("Add", [x, drop])
    assert "training_mode" in refusal_of(net.build([y]), [y])


def test_mish_gate_needs_softplus_itself():
    net = Net()
    x = net.input((1, 6))
    soft = net.op("Log", [net.op("Add", [net.const(np.array(1e-6)), net.op("Exp", [x])])])  # log(1e-6 + e^x)
    gate = net.op("Sub", [net.op("Tanh", [soft]), net.const(np.array(0.488))])
    y = net.op("Mul", [x, gate])
    assert_sound(net.build([y]), [y], points=4)


def test_softmax_interval_with_huge_logits_stays_sound():
    net = Net()
    x = net.input((1, 2))
    s = net.op("Add", [net.op("Mul", [x, net.const(np.array(31.0))]), net.const(np.array([[1e8 - 31, 1e8 - 50]]))])
    p0 = net.op("Slice", [net.op("Softmax", [s], axis=1), net.const(ints(0)), net.const(ints(1)), net.const(ints(1))])
    r = net.op("Reciprocal", [p0])
    model = net.build([r])
    value, _ = certify(model, outputs=[r], input_range=(0.0, 1.0))
    from tests.soundness.graphs import evaluator

    fn, _ = evaluator(model, [r])
    a, b = np.array([0.0, 1.0]), np.array([0.0, 1.0 - 1e-4])  # both inside the box
    truth = np.linalg.norm(fn(a) - fn(b)) / np.linalg.norm(a - b)
    assert value is None or value >= truth


def test_an_output_listed_twice_counts_twice():
    net = Net()
    x = net.input((1, 3))
    y = net.op("Mul", [x, net.const(np.array(2.0))])
    value, _ = certify(net.build([y]), outputs=[y, y])
    assert value == pytest.approx(2 * math.sqrt(2), rel=1e-5)


@pytest.mark.parametrize("op", ["Gemm", "Conv"])
def test_tiny_weights_never_underflow_to_a_zero_bound(op):
    net = Net()
    if op == "Gemm":
        x = net.input((1, 4))
        y = net.op("Gemm", [x, net.const(f(3, 4) * 1e-170)], transB=1)
    else:
        x = net.input((1, 1, 4, 4))
        y = net.op("Conv", [x, net.const(f(2, 1, 3, 3) * 1e-170)], pads=[1, 1, 1, 1])
    model = net.build([y])
    value, _ = certify(model, outputs=[y])
    for init in model.graph.initializer:  # the witness of the map times 1e170, scaled back (squares would underflow)
        init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 1e170, init.name))
    assert value >= witness(model, [y], points=1) * 1e-170 * (1 - 1e-6) > 0


def test_malformed_nodes_are_refusals_not_crashes():
    net = Net()
    x = net.input((1, 2, 3, 3))
    empty = net.op("Slice", [x, net.const(ints(0)), net.const(ints(0)), net.const(ints(2))])  # zero rows
    y = net.op("GlobalAveragePool", [empty])
    assert "empty" in refusal_of(net.build([y]), [y])


def test_function_attribute_defaults_are_applied_when_inlining():
    inner = helper.make_node("LeakyRelu", ["X"], ["Y"])
    inner.attribute.append(onnx.AttributeProto(name="alpha", ref_attr_name="a", type=onnx.AttributeProto.FLOAT))
    fn = helper.make_function("custom", "LR", ["X"], ["Y"], [inner], [helper.make_opsetid("", 17)], attributes=[])
    fn.attribute_proto.extend([helper.make_attribute("a", -5.0)])
    net = Net()
    x = net.input((1, 3))
    y = net.op("LR", [x], domain="custom")
    model = net.build([y], functions=[fn], extra_opsets=[("custom", 1)])
    model.ir_version = 9
    value, _ = certify(model, outputs=[y])
    assert value == pytest.approx(5.0, rel=1e-5)


def test_a_declared_output_shape_of_minus_one_is_not_a_size():
    """Paddle declares outputs as [-1, 2]: shapes come from inference only, and -1 is never a size."""
    from onnx import numpy_helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b"], ["b1"], axes=[0]),
             helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["h"]),
             helper.make_node("Softmax", ["h"], ["y"], axis=1)]
    inits = [numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "zero1"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"), numpy_helper.from_array(f(6, 2), "w")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [-1, 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [-1, 2])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    value, result = certify(model, outputs=["y"])
    assert value is not None and result.dynamic_batch


def test_constants_that_underflow_when_composed_stay_upper_bounds():
    """The walk multiplies 1e-170 x 1e-170 before 1e300, the network scales x first: the composed constant
    must not underflow to 0 (it is rounded up to the smallest normal number instead)."""
    net = Net()
    x = net.input((1, 2))
    y = x
    for k in (1e-170, 1e-170, 1e300):
        y = net.op("Mul", [y, net.const(np.array(k))])
    value, _ = certify(net.build([y]), input_range=(-1e150, 1e150))
    assert value is not None and value >= 1e-40


def test_a_domain_whose_radius_overflows_gives_no_nan_bounds():
    """|LO|, |HI| ~ 1e300: the l2 radius overflows to inf, and 0 x inf must not become a NaN box."""
    from lipaudit.ops.box import Box

    net = Net()
    x = net.input((1, 1, 2, 2))
    z = net.op("Mul", [x, net.const(np.array(0.0))])
    g = net.op("Mul", [x, net.op("Sigmoid", [z])])
    value, result = certify(net.build([g]), input_range=(-1e300, 1e300))
    assert isinstance(result.boxes[z], Box)
    assert not np.any(np.isnan(result.boxes[z].lo)) and not np.any(np.isnan(result.boxes[z].hi))
    assert value is not None and value >= 0.5  # g = x / 2
