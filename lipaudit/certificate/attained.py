"""The attained value: a verified lower bound on the network's Lipschitz constant, found at real inputs.

The search (torch autodiff, float32) looks for an input ``x`` where ``||J(x)||_2``
is large: power iteration on ``J^T J`` gives the direction ``v``, gradient steps
on ``x`` increase ``||J(x) v||``, from several seeded restarts. ReLUs are replaced
by a smooth surrogate (softplus of growing sharpness) during the ascent, since a
ReLU network's ``||J(x) v||`` has zero gradient almost everywhere; every
candidate is scored with the true Jacobian.

The reported value is a *secant* ``||f(a) - f(b)|| / ||a - b||`` at
``a, b = x +- t v``, evaluated in float64 and reduced by a rounding margin, so
it is a lower bound on the Lipschitz constant by construction (whatever the
search did). The model is the torch module itself for ``.pt2``/TorchScript/
``--arch`` inputs; an ONNX file is converted by onnx2torch, and the converted
module is checked against onnxruntime's outputs (at random inputs and at the
secant's endpoints) before its numbers are used. A model that does not convert,
or disagrees, gets no attained value and a finding that says why.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import types
from dataclasses import dataclass, field

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class AttainedSettings:
    restarts: int = 4
    steps: int = 12
    power_iters: int = 12
    seed: int = 0
    scale: float = 1.0  # standard deviation of the random starts (inputs are N(0, scale^2) unless a range is given)
    low: object = None  # optional box (arrays of the input's shape) for starts, iterates and secant ends
    high: object = None


@dataclass
class Attained:
    value: float  # the verified secant (a guaranteed lower bound)
    jacobian_norm: float  # ||J(x)|| at the best input, from power iteration (float32, an estimate)
    converter: str
    detail: dict = field(default_factory=dict)
    time_s: float = 0.0


class AttainedUnavailable(Exception):
    """No attained value for this model; the message says why."""


# -- the model as a torch function --------------------------------------------------------------
def onnx_to_torch(model):
    """Convert an ONNX ModelProto with onnx2torch (its NMS/RoIAlign converters' torchvision import is stubbed
    when torchvision is not installed: those ops are never converted here)."""
    stubbed = []
    if importlib.util.find_spec("torchvision") is None:
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

        def _missing(*args, **kwargs):
            raise AttainedUnavailable("this model needs torchvision (NMS/RoIAlign), which is not installed")

        ops.nms = ops.roi_align = ops.box_convert = _missing
        tv.ops = ops
        for name, mod in (("torchvision", tv), ("torchvision.ops", ops)):
            if name not in sys.modules:
                sys.modules[name] = mod
                stubbed.append(name)
    try:
        import onnx2torch
    except Exception as exc:
        raise AttainedUnavailable(f"onnx2torch is not available ({type(exc).__name__}: {exc}); "
                                  f"pip install onnx2torch") from None
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)
    try:
        return onnx2torch.convert(model)
    except Exception as exc:
        raise AttainedUnavailable(f"onnx2torch cannot convert this model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def select_outputs(model, outputs: list[str]):
    """The ONNX model cut to ``outputs`` (intermediate values allowed), float inputs only."""
    import onnx

    graph_outputs = [o.name for o in model.graph.output]
    if list(outputs) == graph_outputs:
        return model
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    try:
        return onnx.utils.Extractor(model).extract_model(inputs, list(outputs))
    except Exception as exc:
        raise AttainedUnavailable(f"cannot cut the model at {outputs} ({type(exc).__name__})") from None


class _Flat:
    """``f(x) -> flat vector`` over the selected outputs of a module (tuple/list/dict outputs concatenated)."""

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        import torch

        out = self.module(x)
        if isinstance(out, dict):
            out = list(out.values())
        if isinstance(out, (tuple, list)):
            return torch.cat([o.reshape(-1) for o in out])
        return out.reshape(-1)


def check_against_onnxruntime(f32, model, input_name: str, shape, seed: int, points=None, outputs=None) -> float:
    """Largest relative disagreement between the torch function (float32) and onnxruntime; raises when above 1e-3.

    ``outputs``, when a list, receives onnxruntime's outputs at ``points`` (float64 vectors).
    """
    import onnxruntime as ort
    import torch

    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise AttainedUnavailable(f"onnxruntime cannot run the model ({type(exc).__name__})") from None
    rng = np.random.default_rng(seed)
    pts = points if points is not None else [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    worst = 0.0
    for p in pts:
        p = np.asarray(p, dtype=np.float32).reshape(shape)
        ref = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in sess.run(None, {input_name: p})])
        if outputs is not None:
            outputs.append(ref)
        with torch.no_grad():
            got = f32(torch.from_numpy(p)).double().numpy()
        if got.shape != ref.shape:
            raise AttainedUnavailable("the converted model's outputs do not match onnxruntime's in shape")
        err = float(np.max(np.abs(got - ref))) / (1.0 + float(np.max(np.abs(ref))) if ref.size else 1.0)
        worst = max(worst, err)
    if not worst <= 1e-3:
        raise AttainedUnavailable(f"the converted model disagrees with onnxruntime (relative error {worst:.2g})")
    return worst


# -- the search ---------------------------------------------------------------------------------
class _SmoothRelu:
    """Swap every nn.ReLU for softplus(beta) while searching; restore afterwards."""

    def __init__(self, module):
        import torch

        self.swaps = [(parent, name, child) for parent in module.modules()
                      for name, child in parent.named_children() if isinstance(child, torch.nn.ReLU)]

    def set(self, beta: float | None):
        import torch

        for parent, name, child in self.swaps:
            setattr(parent, name, child if beta is None else torch.nn.Softplus(beta=beta))


def _top_singular(f, x, v, iters: int):
    """``(u, v, sigma)``: top singular triple of ``J(x)``; exact (rows by reverse mode, then SVD) for few
    outputs, else power iteration on ``J^T J`` (forward- and reverse-mode products)."""
    import torch

    y, vjp_fn = torch.func.vjp(f, x)
    m = y.numel()
    if m <= 64:
        rows = torch.stack([vjp_fn(e)[0].reshape(-1) for e in torch.eye(m, dtype=y.dtype)])
        uu, ss, vh = torch.linalg.svd(rows, full_matrices=False)
        return uu[:, 0], vh[0].reshape(x.shape), float(ss[0])
    sigma, u = 0.0, None
    for _ in range(iters):
        jv = torch.func.jvp(f, (x,), (v,))[1]
        sigma = float(jv.norm())
        if sigma == 0 or not math.isfinite(sigma):
            break
        u = jv / sigma
        (jtu,) = vjp_fn(u)
        n = jtu.norm()
        if n == 0 or not torch.isfinite(n):
            break
        v = jtu / n
    if u is None:
        u = torch.zeros_like(y)
    return u, v, sigma


def _top_singular_autograd(f, x, v, iters: int):
    """As :func:`_top_singular`, by plain reverse mode (double backward for ``J v``): slower, but works for
    modules that torch.func cannot trace (e.g. converters that read tensor data)."""
    import torch

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = f(x)
        m = y.numel()
        if m <= 64:
            rows = torch.stack([torch.autograd.grad(y, x, e, retain_graph=True)[0].reshape(-1)
                                for e in torch.eye(m, dtype=y.dtype)])
            uu, ss, vh = torch.linalg.svd(rows, full_matrices=False)
            return uu[:, 0], vh[0].reshape(x.shape), float(ss[0])
        sigma, u = 0.0, torch.zeros_like(y)
        for _ in range(iters):
            w = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad(y, x, w, create_graph=True)
            (jv,) = torch.autograd.grad(g, w, v, retain_graph=True)
            sigma = float(jv.norm())
            if sigma == 0 or not math.isfinite(sigma):
                break
            u = (jv / sigma).detach()
            (jtu,) = torch.autograd.grad(y, x, u, retain_graph=True)
            n = jtu.norm()
            if n == 0 or not torch.isfinite(n):
                break
            v = (jtu / n).detach()
        return u, v, sigma


def _ascent_direction_autograd(f, x, u, v):
    import torch

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = f(x)
        w = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, x, w, create_graph=True)
        (jv,) = torch.autograd.grad(g, w, v, create_graph=True)
        (dx,) = torch.autograd.grad(torch.dot(u, jv), x, allow_unused=True)
    return torch.zeros_like(x) if dx is None else dx


def _ascent_direction(f, x, u, v):
    """Gradient in ``x`` of ``u . J(x) v`` (equal to that of ``||J(x)||`` at the top singular pair)."""
    import torch

    return torch.func.grad(lambda z: torch.dot(u, torch.func.jvp(f, (z,), (v,))[1]))(x)


def _box(settings: AttainedSettings, dtype):
    import torch

    if settings.low is None:
        return None, None
    return (torch.as_tensor(np.asarray(settings.low), dtype=dtype), torch.as_tensor(np.asarray(settings.high), dtype=dtype))


def search(f, module, shape, settings: AttainedSettings):
    """``(x, v, sigma)``: the input with the largest ``||J(x)||`` found, its direction, and that norm."""
    import torch

    gen = torch.Generator().manual_seed(settings.seed)
    smooth = _SmoothRelu(module)
    best = (None, None, -1.0)
    lo, hi = _box(settings, torch.float32)
    top, ascent = _top_singular, _ascent_direction
    try:  # torch.func (fast); plain autograd when the module cannot be traced by it
        probe = torch.randn(shape, generator=torch.Generator().manual_seed(settings.seed))
        _ascent_direction(f, probe, *_top_singular(f, probe, probe / probe.norm(), 1)[:2])
    except Exception:
        top, ascent = _top_singular_autograd, _ascent_direction_autograd

    def clamp(x):
        return x if lo is None else torch.minimum(torch.maximum(x, lo), hi)

    for r in range(settings.restarts):
        if lo is None:  # starts at several scales: how many units sit near their kinks depends on it
            x = torch.randn(shape, generator=gen) * (settings.scale * 0.3 ** r)
        else:
            x = lo + (hi - lo) * torch.rand(shape, generator=gen)
        v = torch.randn(shape, generator=gen)
        v = v / v.norm()
        step = 0.1 * float(x.norm()) + 1e-3
        for k in range(settings.steps):
            if k % 4 == 3:
                u, v, sigma = top(f, x, v, 4)  # scored with the true Jacobian
                if sigma > best[2]:
                    best = (x.detach(), v.detach(), sigma)
            smooth.set(2.0 * 2 ** (k / 3))
            try:
                us, vs, _ = top(f, x, v, 4)
                grad = ascent(f, x, us, vs)
            finally:
                smooth.set(None)
            gn = float(grad.norm())
            if not math.isfinite(gn) or gn == 0:
                break
            x = clamp((x + step * grad / gn).detach())
            step *= 0.9
        u, v, sigma = top(f, x, v, settings.power_iters)
        if sigma > best[2]:
            best = (x.detach(), v.detach(), sigma)
    return best


# -- the verified secant -------------------------------------------------------------------------
def verified_secant(f64, f32, x, v, check=None, box=(None, None)) -> tuple[float, dict]:
    """Largest ``(||f(a) - f(b)|| - margin) / ||a - b||`` over a few step sizes, in float64.

    The margin is 1000 x the float32-float64 disagreement scaled by eps64/eps32 (the float64 evaluation
    error is below the float32 one by about that ratio), plus 1e-12 of the outputs' size.
    """
    import torch

    x64, v64 = x.double(), v.double() / v.double().norm()
    scale = float(x64.norm()) / math.sqrt(x64.numel()) + 1.0
    best, info = 0.0, {}
    for t in (1e-3, 1e-2, 3e-2, 1e-1):
        a, b = x64 + t * scale * v64, x64 - t * scale * v64
        if box[0] is not None:  # both ends inside the domain (the secant need not be along v)
            a, b = torch.minimum(torch.maximum(a, box[0]), box[1]), torch.minimum(torch.maximum(b, box[0]), box[1])
        if not float((a - b).norm()) > 0:
            continue
        with torch.no_grad():
            fa, fb = f64(a), f64(b)
            ga, gb = f32(a.float()).double(), f32(b.float()).double()
        if not (torch.isfinite(fa).all() and torch.isfinite(fb).all()):
            continue
        disagreement = float((fa - ga).abs().max() + (fb - gb).abs().max())
        margin = 1e3 * disagreement * EPS64 / EPS32 + 1e-12 * (float(fa.norm()) + float(fb.norm()))
        if check is not None:
            # the ONNX model itself (onnxruntime) at both ends: the converted module's difference must match
            # its difference; what they disagree by is taken off too
            ref_a, ref_b = check([a.float().numpy(), b.float().numpy()])
            margin += float(np.linalg.norm((ref_a - ref_b) - (fa - fb).numpy()))
        dist = float((a - b).norm()) * (1 + 1e-12)
        value = max(float((fa - fb).norm()) - margin, 0.0) / dist
        if value > best:
            best, info = value, {"step": t * scale, "margin": margin, "x_rms": float(x64.norm()) / math.sqrt(x64.numel())}
    return best, info


def attained(module, *, shape, converter: str, settings: AttainedSettings = AttainedSettings(),
             onnx_model=None, input_name: str | None = None) -> Attained:
    """Search and verify; ``module`` is a torch module (float32) computing the selected outputs."""
    import copy

    import torch

    t0 = time.perf_counter()
    module = module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    f32 = _Flat(module)
    check = None
    if onnx_model is not None:
        check_against_onnxruntime(f32, onnx_model, input_name, shape, settings.seed)

        def check(points):
            refs: list = []
            check_against_onnxruntime(f32, onnx_model, input_name, shape, settings.seed, points, refs)
            return refs
    try:
        module64 = copy.deepcopy(module).double()
    except Exception as exc:
        raise AttainedUnavailable(f"the model cannot run in float64 ({type(exc).__name__})") from None
    f64 = _Flat(module64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: extra threads only contend (and the machine may be shared)
    try:
        with torch.no_grad():
            x, v, sigma = search(f32, module, shape, settings)
    except AttainedUnavailable:
        raise
    except Exception as exc:
        raise AttainedUnavailable(f"the Jacobian search failed ({type(exc).__name__}: {str(exc)[:120]})") from None
    finally:
        torch.set_num_threads(threads)
    if x is None:
        raise AttainedUnavailable("the search found no finite Jacobian")
    try:
        value, info = verified_secant(f64, f32, x, v, check, _box(settings, torch.float64))
    except AttainedUnavailable:
        raise
    except Exception as exc:
        raise AttainedUnavailable(f"the float64 evaluation failed ({type(exc).__name__}: {str(exc)[:120]})") from None
    detail = {"converter": converter, "restarts": settings.restarts, "steps": settings.steps, "seed": settings.seed,
              "jacobian_norm_estimate": sigma, **info}
    return Attained(value, sigma, converter, detail, time.perf_counter() - t0)


def attained_for(loaded, graph, outputs: list[str], settings: AttainedSettings) -> Attained:
    """The attained value of a loaded model (see :mod:`lipaudit.loaders`) for the selected outputs."""
    import onnx

    inputs = list(graph.inputs)
    if len(inputs) != 1:
        raise AttainedUnavailable(f"the model has {len(inputs)} inputs; the attained search handles one")
    shape = tuple(int(n) for n in graph.shapes.get(inputs[0], ()))
    if not shape:
        raise AttainedUnavailable("the input's shape is unknown")
    module = getattr(loaded, "torch_module", None)
    proto = getattr(loaded, "onnx_model", None)
    if module is not None and list(outputs) == list(graph.outputs):
        return attained(module, shape=shape, converter=f"torch module ({loaded.format})", settings=settings)
    if proto is None:
        try:
            proto = onnx.load(loaded.path)
        except Exception as exc:
            raise AttainedUnavailable(f"cannot re-read the ONNX file ({type(exc).__name__})") from None
    proto = select_outputs(proto, outputs)
    elem = proto.graph.input[0].type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise AttainedUnavailable("the input is not a float tensor")
    if elem != onnx.TensorProto.FLOAT:
        raise AttainedUnavailable("the input is not float32 (onnxruntime cross-check runs in float32)")
    module = onnx_to_torch(proto)
    return attained(module, shape=shape, converter="onnx2torch", settings=settings, onnx_model=proto,
                    input_name=proto.graph.input[0].name)
