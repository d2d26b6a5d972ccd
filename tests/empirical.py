"""Empirical lower bounds on a model's Lipschitz constant, evaluated with onnxruntime.

``||f(x) - f(y)|| / ||x - y||`` for an actual pair of inputs is a lower bound of
the l2 Lipschitz constant of the map (to all selected outputs jointly). The
pair is chosen well: along the top right singular vector of a finite-difference
Jacobian for small inputs, else the best of random directions.
"""

from __future__ import annotations

import numpy as np


def _session(path, outputs):
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    if outputs:
        known = {o.name for o in model.graph.output}
        for name in outputs:
            if name not in known:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]), model


def lower_bound(path: str, input_shape, outputs=None, seed: int = 0, h: float = 1e-2, points: int = 3) -> float:
    sess, model = _session(path, outputs)
    name = sess.get_inputs()[0].name
    out_names = list(outputs) if outputs else [o.name for o in sess.get_outputs()]

    def f(x):
        return np.concatenate([np.asarray(y, dtype=np.float64).ravel() for y in sess.run(out_names, {name: x.astype(np.float32)})])

    rng = np.random.default_rng(seed)
    n = int(np.prod(input_shape))
    best = 0.0
    for _ in range(points):
        x = rng.standard_normal(input_shape)
        fx = f(x)
        if n <= 3100:
            J = np.empty((fx.size, n))
            for j in range(n):
                e = np.zeros(n)
                e[j] = h
                J[:, j] = (f(x + e.reshape(input_shape)) - fx) / h
            _, _, vt = np.linalg.svd(J, full_matrices=False)
            directions = [vt[0]]
        else:
            directions = [rng.standard_normal(n) for _ in range(8)]
        for v in directions:
            v = v / np.linalg.norm(v)
            for step in (h, 10 * h):
                d = (step * v).reshape(input_shape)
                # the measured pair is (x, x + d) as float32 inputs
                x32, y32 = x.astype(np.float32), (x + d).astype(np.float32)
                ratio = np.linalg.norm(f(y32) - f(x32)) / np.linalg.norm((y32 - x32).astype(np.float64))
                best = max(best, float(ratio))
    return best
