"""Interval bounds through chains of pointwise linear ops that keep correlations.

Interval arithmetic bounds ``W2 (W1 u)`` by ``|W2| |W1| r``: every layer forgets
which entries moved together. Along a chain of *pointwise* linear ops (1x1
convolutions with stride 1 and no padding, inference BatchNorm, additions and
subtractions, per-channel scalings) a value is an exact affine function of
earlier values that have boxes (its *bases*)::

    v = c + sum_j M_j u_j        (M_j: a channel matrix applied at every position)

so with ``u_j`` in ``mid_j +- rad_j`` its box is ``mid_v +- sum_j |M_j| rad_j``
with ``mid_v = c + sum_j M_j mid_j``, and ``|W2 W1| <= |W2| |W1|`` entry-wise: never
looser than the interval box, which it is intersected with. Inverted-residual
blocks (MobileNetV2/V3, EfficientNet) end in a 1x1 projection without activation
that is added to the skip and fed to the next block's 1x1 expansion: there the
composed matrices gain a factor of about ``sqrt(channels)`` per block.

Rounding: ``mid`` carries an absolute allowance (``slack``), and each matrix an
envelope ``A_j = |W_k| ... |W_1|`` (the product of the absolute values) and a count
``rounds`` of the float64 operations behind each of its entries. A dot product of
``n`` terms errs by at most ``n u`` times the dot product of the magnitudes (``u =
2^-53``, Higham 3.5), and errors carried from earlier steps are multiplied by at
most ``|W|``, so ``|M_j(computed) - M_j| <= rounds 2^-52 A_j``. Underflow breaks
relative bounds: a matrix whose envelope has an entry below ``1e-290`` where its
factors are non-zero is refused (no form), and every step adds ``1e-300`` to the
absolute allowances (each product underflows by at most ``2^-1074``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipaudit.ops.box import ROUNDING, Box

# the ops a form passes through; any other op's output is a base of the forms that use it
FORM_OPS = {"Conv", "BatchNormalization", "Add", "Sub", "Mul", "Identity", "Relu", "LeakyRelu"}
# a base's channel count above which forms are not built (the matrices are channels x channels: 32 MiB)
MAX_CHANNELS = 2048


UNIT = 2.0 ** -52  # twice the unit roundoff: covers the (1 - n u) denominators for any n < 2^50
TINY = 1e-290  # envelope entries below this may have underflowed: no form
ABSOLUTE = 1e-300  # allowance per step for the underflow of products (at most 2^-1074 each)


class Underflow(Exception):
    """A channel matrix left the range where float64 relative error bounds hold."""


@dataclass(frozen=True)
class Form:
    """``v = mid + sum_j M_j (u_j - mid_j)`` with ``|error of mid| <= slack``, per base name ``u_j``."""

    mid: np.ndarray  # the value's shape
    slack: np.ndarray  # broadcastable to it
    terms: dict  # base -> (M_j, A_j, rounds_j): (channels of v) x (channels of u_j) matrices, and a count

    def scaled(self, k: np.ndarray, shift, shift_error=0.0) -> "Form":
        """``k * v + shift`` with ``k`` one factor per channel (a vector) and ``shift`` broadcastable to v,
        computed with an error of at most ``shift_error``."""
        view = (1, -1) + (1,) * (self.mid.ndim - 2)
        kv = k.reshape(view)
        mid = kv * self.mid + shift
        slack = np.abs(kv) * self.slack + ROUNDING * (np.abs(kv * self.mid) + np.abs(shift)) + shift_error + ABSOLUTE
        terms = {}
        for u, (m, a, r) in self.terms.items():
            envelope = np.abs(k)[:, None] * a
            _check_range(envelope, (k != 0)[:, None] & (a > 0))
            terms[u] = (k[:, None] * m, envelope, r + 1)
        return Form(mid, slack, terms)

    def box(self, radii: dict) -> Box:
        rad = np.broadcast_to(self.slack, self.mid.shape).astype(np.float64, copy=True) + ABSOLUTE
        for u, (m, a, r) in self.terms.items():
            rad += _channel_map(np.abs(m) + (r + 1) * UNIT * a, radii[u]) + ABSOLUTE * m.shape[1]
        rad += ROUNDING * rad
        return Box(self.mid - rad, self.mid + rad).widened(ROUNDING * np.abs(self.mid))


def _check_range(envelope: np.ndarray, nonzero: np.ndarray) -> None:
    if np.any(nonzero & (envelope < TINY)):
        raise Underflow()


def _channel_map(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``m`` (out x in channels) applied at every position of ``x`` (channels on axis 1)."""
    return np.moveaxis(np.tensordot(m, x, axes=([1], [1])), 0, 1)


def _base(ctx, name: str, shape) -> Form | None:
    """``u = mid + 1 (u - mid)`` for a value with a box: a form of its own."""
    box = ctx.boxes.get(name)
    if not isinstance(box, Box) or shape is None or len(shape) < 2 or not 0 < shape[1] <= MAX_CHANNELS:
        return None
    mid, rad = box.mid_rad()
    mid, rad = np.broadcast_to(mid, shape).astype(np.float64), np.broadcast_to(rad, shape).astype(np.float64)
    if not (np.all(np.isfinite(mid)) and np.all(np.isfinite(rad))):
        return None
    ctx.form_radii[name] = rad + ROUNDING * np.abs(mid) + ABSOLUTE  # the midpoint itself is rounded
    eye = np.eye(int(shape[1]))
    return Form(mid, np.zeros(()), {name: (eye, eye, 0)})


def _input_form(ctx, name: str) -> Form | None:
    found = ctx.forms.get(name)
    return found if found is not None else _base(ctx, name, ctx.graph.shapes.get(name))


def _kinked(node, ctx, z: str, shape) -> Form | None:
    """``f(z) = alpha_c z + e`` for ``f(z) = z`` (z >= 0), ``a z`` (z < 0): a slope per channel plus a new base ``e``.

    ``e = f(z) - alpha_c z`` is piecewise linear with its kink at 0, so on ``[lo, hi]`` its
    extremes are at ``lo``, ``hi`` or ``clip(0, lo, hi)``: the box of ``e``. The slope is the
    mean secant slope of the channel (any slope is sound; this one keeps ``e`` small).
    """
    a = 0.0 if node.op == "Relu" else float(node.attrs.get("alpha", 0.01))
    box = ctx.boxes.get(z)
    x = ctx.forms.get(z)
    if x is None or not isinstance(box, Box) or all(_diagonal(t[0]) for t in x.terms.values()):
        return None  # a kink's own box is narrower than alpha z + e; the form only pays where it mixes channels
    lo, hi = (np.broadcast_to(v, shape).astype(np.float64) for v in (box.lo, box.hi))

    def f(t):
        return np.where(t >= 0, t, a * t)

    width = hi - lo
    secant = np.where(width > 0, (f(hi) - f(lo)) / np.where(width > 0, width, 1.0), np.where(lo >= 0, 1.0, a))
    alpha = np.mean(np.moveaxis(secant, 1, 0).reshape(shape[1], -1), axis=1)
    view = (1, -1) + (1,) * (len(shape) - 2)
    points = [lo, hi, np.clip(0.0, lo, hi)]
    gaps = [f(t) - alpha.reshape(view) * t for t in points]
    e_lo, e_hi = np.minimum.reduce(gaps), np.maximum.reduce(gaps)
    slack = ROUNDING * (np.maximum.reduce([np.abs(f(t)) + np.abs(alpha.reshape(view) * t) for t in points])) + ABSOLUTE
    e_lo, e_hi = e_lo - slack, e_hi + slack
    if not (np.all(np.isfinite(e_lo)) and np.all(np.isfinite(e_hi))):
        return None
    e_mid, e_rad = (e_lo + e_hi) / 2, (e_hi - e_lo) / 2
    key = (node.outputs[0], "kink")  # not a string: never a value's name
    ctx.form_radii[key] = e_rad + ROUNDING * np.abs(e_mid) + ABSOLUTE
    out = x.scaled(alpha, e_mid)
    eye = np.eye(int(shape[1]))
    return Form(out.mid, out.slack, {**out.terms, key: (eye, eye, 0)})


def _identity(m: np.ndarray) -> bool:
    return m.shape[0] == m.shape[1] and np.count_nonzero(m) == m.shape[0] and bool(np.all(np.diag(m) == 1))


def _diagonal(m: np.ndarray) -> bool:
    return m.shape[0] == m.shape[1] and not np.any(m - np.diag(np.diag(m)))


def _per_channel(c, shape) -> np.ndarray | None:
    """A constant's one factor per channel (axis 1) when it broadcasts to ``shape`` that way, else None."""
    c = np.asarray(c, dtype=np.float64)
    rank = len(shape)
    if c.ndim > rank:
        return None
    full = (1,) * (rank - c.ndim) + c.shape
    if any(n != 1 for i, n in enumerate(full) if i != 1) or full[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(c.reshape(full[1]), (shape[1],)).astype(np.float64)


def _pointwise_conv(node, ctx, shape):
    """The (out x in) matrix and bias of a 1x1 Conv with stride 1, no padding and one group, else None."""
    w = ctx.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or node.attrs.keys() - {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}:
        return None
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != len(shape) or any(k != 1 for k in w.shape[2:]) or int(node.attrs.get("group", 1)) != 1:
        return None
    if any(int(s) != 1 for s in node.attrs.get("strides", [])) or any(int(p) != 0 for p in node.attrs.get("pads", [])):
        return None
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or w.shape[1] != shape[1]:
        return None
    bias = np.zeros(w.shape[0])
    if len(node.inputs) > 2 and node.inputs[2]:
        b = ctx.const(node.inputs[2])
        if b is None:
            return None
        bias = np.asarray(b, dtype=np.float64).reshape(-1)
    return w.reshape(w.shape[0], w.shape[1]), bias


def node_form(node, ctx) -> Form | None:
    """The form of the node's first output, or None when the node is not pointwise linear in its data."""
    def inp(name: str) -> Form | None:
        return _input_form(ctx, name)

    if node.op not in FORM_OPS or node.domain not in ("", "ai.onnx") or not node.outputs or not node.outputs[0]:
        return None
    out_shape = ctx.graph.shapes.get(node.outputs[0])
    data = [n for n in node.inputs if n and ctx.depends(n)]
    if out_shape is None or len(out_shape) < 2 or not data:
        return None
    out_shape = tuple(int(d) for d in out_shape)
    keep = (lambda s: s[:1] + s[2:]) if node.op == "Conv" else (lambda s: s)  # a conv may change the channels
    if any(keep(tuple(ctx.graph.shapes.get(n) or ())) != keep(out_shape) for n in data):
        return None  # a data operand that broadcasts, or changes shape: not a pointwise map
    if node.op == "Identity":
        return inp(data[0])
    if node.op in ("Relu", "LeakyRelu"):
        return _kinked(node, ctx, data[0], out_shape)
    if node.op == "Conv":
        if node.inputs[0] != data[0] or len(data) != 1:
            return None
        found = _pointwise_conv(node, ctx, tuple(ctx.graph.shapes[data[0]]))
        x = inp(data[0])
        if found is None or x is None:
            return None
        w, bias = found
        view = (1, -1) + (1,) * (len(out_shape) - 2)
        mid = _channel_map(w, x.mid) + bias.reshape(view)
        slack = _channel_map(np.abs(w), np.broadcast_to(x.slack, x.mid.shape) + ROUNDING * np.abs(x.mid)) \
            + ROUNDING * np.abs(bias).reshape(view)
        terms = {}
        for u, (m, a, r) in x.terms.items():
            if r == 0 and _identity(m):  # straight from a base: W itself, no product to round
                terms[u] = (w, np.abs(w), 0)
                continue
            envelope = np.abs(w) @ a
            _check_range(envelope, ((w != 0).astype(np.float64) @ (a > 0).astype(np.float64)) > 0)
            terms[u] = (w @ m, envelope, r + w.shape[1] + 1)
        return Form(mid, slack + ABSOLUTE * w.shape[1], terms)
    if node.op == "BatchNormalization":
        from lipaudit.ops.normalization import training_mode_reason

        params = [ctx.const(n) for n in node.inputs[1:5]]
        if training_mode_reason(node, ctx.opset()) or len(params) != 4 or any(p is None for p in params) \
                or node.inputs[0] != data[0] or len(data) != 1:
            return None
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
        x = inp(data[0])
        if x is None or gamma.shape != (out_shape[1],):
            return None
        eps = float(node.attrs.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        view = (1, -1) + (1,) * (len(out_shape) - 2)
        shift_error = ROUNDING * (np.abs(beta) + np.abs(mean * scale))  # beta - mean * scale may cancel
        return x.scaled(scale, (beta - mean * scale).reshape(view), shift_error.reshape(view))
    if node.op == "Mul":
        if len(data) != 1 or "broadcast" in node.attrs:
            return None
        const = next((n for n in node.inputs[:2] if n != data[0]), None)
        k = _per_channel(ctx.const(const), out_shape) if const is not None and ctx.const(const) is not None else None
        x = inp(data[0])
        return None if k is None or x is None else x.scaled(k, 0.0)
    # Add / Sub
    if "broadcast" in node.attrs or len(node.inputs) != 2:
        return None
    sign = -1.0 if node.op == "Sub" else 1.0
    first, second = node.inputs
    if len(data) == 1:  # data plus (or minus) a constant that broadcasts into its shape
        x = inp(data[0])
        c = ctx.const(second if data[0] == first else first)
        if x is None or c is None:
            return None
        c = np.asarray(c, dtype=np.float64)
        if np.broadcast_shapes(c.shape, out_shape) != out_shape:
            return None
        k = np.full(out_shape[1], sign if data[0] == second else 1.0)
        return x.scaled(k, sign * c if data[0] == first else c)
    fa, fb = inp(first), inp(second)
    if fa is None or fb is None:
        return None
    terms = dict(fa.terms)
    for u, (m, a, r) in fb.terms.items():
        if u in terms:
            m0, a0, r0 = terms[u]
            terms[u] = (m0 + sign * m, a0 + a, max(r0, r) + 1)
        else:
            terms[u] = (sign * m, a, r)
    mid = fa.mid + sign * fb.mid
    slack = fa.slack + fb.slack + ROUNDING * (np.abs(fa.mid) + np.abs(fb.mid)) + ABSOLUTE
    return Form(mid, slack, terms)
