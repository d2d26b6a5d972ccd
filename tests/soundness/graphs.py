"""Small ONNX graphs and their brute-force witness, for the soundness suites.

The witness of a graph is a verified lower bound of its Lipschitz constant
(l2 -> l2, jointly over every input): onnx's reference evaluator runs the model
in float64 (the ONNX specification's semantics), a central finite-difference
Jacobian at a few random points gives the top singular direction, and the
largest secant ``||f(x + t u) - f(x - t u)|| / (2 t ||u||)`` found along it (and
along random directions) is the witness. A certificate must be at least it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference.op_run import OpRun

DOUBLE = TensorProto.DOUBLE


@dataclass
class Net:
    """A graph under construction: inputs, constants, nodes; ``build`` makes the ModelProto."""

    opset: int = 17
    inputs: list = field(default_factory=list)  # (name, shape, elem_type)
    inits: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    _k: int = 0

    def input(self, shape, name=None, elem_type=DOUBLE) -> str:
        name = name or f"in{len(self.inputs)}"
        self.inputs.append((name, list(shape), elem_type))
        return name

    def const(self, value, name=None) -> str:
        self._k += 1
        name = name or f"c{self._k}"
        arr = np.asarray(value)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type, inputs, n_out=1, domain="", **attrs) -> str | list[str]:
        self._k += 1
        outs = [f"v{self._k}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"n{self._k}_{op_type}", domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def build(self, outputs, functions=(), extra_opsets=()) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info(n, t, s) for n, s, t in self.inputs],
            [helper.make_tensor_value_info(o, DOUBLE, None) for o in outputs],
            initializer=self.inits,
        )
        opsets = [helper.make_opsetid("", self.opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
        model = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
        model.ir_version = 8 if self.opset <= 17 else 9 if self.opset <= 20 else 10
        # graph outputs need a type with a shape: take them from shape inference where it knows them
        done = onnx.shape_inference.infer_shapes(model).graph
        inferred = {v.name: v for v in list(done.value_info) + list(done.output)}
        for out in model.graph.output:
            if out.name in inferred and inferred[out.name].type.tensor_type.HasField("shape"):
                out.type.CopyFrom(inferred[out.name].type)
            else:
                out.type.tensor_type.shape.SetInParent()
        return model


def certify(model: onnx.ModelProto, method: str = "certified", outputs=(), until=None, input_shape=None,
            input_range=None):
    """``(value or None, AuditResult)``: the network ``certified`` value, None when refused.

    ``input_range``: ``(lo, hi)`` for ``--input-range`` (the value then holds on that box only).
    """
    from lipaudit.engine import AuditSettings, audit
    from lipaudit.loaders.onnx import load_onnx_model
    from lipaudit.runner import input_domain

    graph = load_onnx_model(model, "<test>", input_shape)
    result = audit(graph, AuditSettings(method=method, outputs=tuple(outputs), until=until,
                                        input_range=input_domain(input_range)))
    cert = result.network.get("certified")
    return (cert.value if cert is not None else None), result


def evaluator(model: onnx.ModelProto, outputs):
    """``f(flat) -> flat``: the model in float64 with onnx's reference evaluator, jointly over its float inputs."""
    from onnx.reference import ReferenceEvaluator

    sess = _Session(model)
    specs = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim], i.type.tensor_type.elem_type)
             for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    sizes = [int(np.prod(s)) for _, s, _ in specs]

    def f(v: np.ndarray) -> np.ndarray:
        feeds, start = {}, 0
        for (name, shape, _), n in zip(specs, sizes):
            feeds[name] = v[start:start + n].reshape(shape).astype(np.float64)
            start += n
        outs = sess.run(list(outputs), feeds)
        return np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in outs])

    return f, int(sum(sizes))


class _GlobalLpPool(OpRun):
    """onnx's reference evaluator lacks GlobalLpPool (and onnxruntime its float64 kernel): the formula of the spec."""

    op_domain = ""

    def _run(self, x, p=None):
        p = 2 if p is None else p
        axes = tuple(range(2, x.ndim))
        return ((np.sum(np.abs(x) ** p, axis=axes, keepdims=True)) ** (1.0 / p),)


_GlobalLpPool.__name__ = "GlobalLpPool"


class _Session:
    """onnx's reference evaluator (float64, the specification's semantics); onnxruntime where it lacks an op's case."""

    def __init__(self, model):
        from onnx.reference import ReferenceEvaluator

        self.model = model
        self.ort = None
        try:
            self.ref = ReferenceEvaluator(model, new_ops=[_GlobalLpPool])
        except Exception:  # an op without a reference implementation (e.g. GlobalLpPool)
            self.ref = None

    def run(self, outputs, feeds):
        if self.ort is None and self.ref is not None:
            try:
                return self.ref.run(outputs, feeds)
            except Exception:
                import onnxruntime as ort

                self.ort = ort.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])
        if self.ort is None:
            import onnxruntime as ort

            self.ort = ort.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])
        return self.ort.run(outputs, feeds)


def witness(model: onnx.ModelProto, outputs, *, seed: int = 0, points: int = 3, scale: float = 1.0, box=None) -> float:
    """Largest verified secant found (see the module docstring); ``box=(lo, hi)``: points and secants inside it."""
    f, n = evaluator(model, outputs)
    rng = np.random.default_rng(seed)
    lo, hi = (float(box[0]), float(box[1])) if box is not None else (-np.inf, np.inf)
    best = 0.0
    for _ in range(points):
        x = rng.uniform(lo, hi, n) * 0.98 + 0.01 * (lo + hi) if box is not None else rng.standard_normal(n) * scale
        h = 1e-6 * (1 + np.abs(x))
        jac = np.empty((f(x).size, n))
        for i in range(n):
            e = np.zeros(n)
            e[i] = h[i]
            jac[:, i] = (f(x + e) - f(x - e)) / (2 * h[i])
        directions = [np.linalg.svd(jac, full_matrices=False)[2][0]] if jac.size else []
        directions += [rng.standard_normal(n) for _ in range(2)]
        for u in directions:
            u = u / np.linalg.norm(u)
            room = np.min(np.minimum(x - lo, hi - x) / np.maximum(np.abs(u), 1e-300))  # inf without a box
            for t in (1e-4, 1e-2, 0.3):
                t = min(t, room)
                if t > 0:
                    best = max(best, float(np.linalg.norm(f(x + t * u) - f(x - t * u)) / (2 * t)))
    return best


def assert_sound(model: onnx.ModelProto, outputs=None, *, seed: int = 0, points: int = 3, **settings) -> float | None:
    """Refused, or ``certified >= witness * (1 - 1e-6)``. Returns the certified value (None when refused)."""
    outputs = list(outputs or [o.name for o in model.graph.output])
    value, result = certify(model, outputs=outputs, **settings)
    if value is None:
        assert result.refusals, "no certificate and no reason given"
        return None
    truth = witness(model, outputs, seed=seed, points=points, box=settings.get("input_range"))
    if value < truth * (1 - 1e-6):
        onnx.save(model, "/tmp/lipaudit_unsound.onnx") if os.environ.get("LIPAUDIT_KEEP_FAILURES") else None
    assert value >= truth * (1 - 1e-6), f"certified {value} < witness {truth}"
    return value
