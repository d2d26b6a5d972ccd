"""Description of one convolution layer and its reduction to stride-1 kernels.

Every per-layer bound works on the *canonical kernels* of a layer: one
``(c_out_g, c_in_g * prod(s), *taps)`` tensor per group, where a stride is
removed by the polyphase reshape and a dilation by working on the undilated
kernel (stride 1) or on the explicitly dilated one (stride > 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


@dataclass
class ConvSpec:
    """A convolution (or transposed convolution) layer, framework-neutral.

    Attributes:
        weight: for a conv ``(c_out, c_in / groups, *k)``; for a transposed conv
            ``(c_in, c_out / groups, *k)`` as stored by ONNX and PyTorch. The
            transposed conv is the adjoint of the conv with this same weight, so
            both layouts are handled alike.
        stride, dilation: one entry per spatial axis.
        groups: number of groups (``c_in`` for depthwise).
        pads: ``(begin_1, ..., begin_d, end_1, ..., end_d)`` as in ONNX.
        padding_mode: ``zeros``, ``circular``, ``reflect`` or ``replicate``.
        transpose: a ConvTranspose layer.
        input_size: spatial size of the layer's input, when known.
        output_padding: ConvTranspose only, extra size added at the end.
    """

    weight: np.ndarray
    stride: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    groups: int = 1
    pads: tuple[int, ...] | None = None
    padding_mode: str = "zeros"
    transpose: bool = False
    input_size: tuple[int, ...] | None = None
    output_padding: tuple[int, ...] | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weight)
        if w.ndim < 3:
            raise ValueError(f"conv weight must have rank >= 3, got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("conv weight contains NaN or Inf")
        self.weight = w
        d = w.ndim - 2
        self.stride = tuple(int(s) for s in (self.stride or (1,) * d))
        self.dilation = tuple(int(s) for s in (self.dilation or (1,) * d))
        self.pads = tuple(int(p) for p in (self.pads or (0,) * (2 * d)))
        self.output_padding = tuple(int(p) for p in (self.output_padding or (0,) * d))
        if self.input_size is not None:
            self.input_size = tuple(int(n) for n in self.input_size)
        if len(self.stride) != d or len(self.dilation) != d or len(self.pads) != 2 * d:
            raise ValueError("stride/dilation/pads do not match the kernel's spatial rank")
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError("stride and dilation must be >= 1")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"unknown padding mode {self.padding_mode!r}")
        if self.transpose and self.padding_mode != "zeros":
            raise ValueError("a transposed convolution only supports zero padding")
        if self.groups < 1 or w.shape[0] % self.groups:
            raise ValueError(f"groups={self.groups} does not divide {w.shape[0]} output channels")

    @property
    def spatial_rank(self) -> int:
        return self.weight.ndim - 2

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def dilated_kernel_size(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    def pads_per_axis(self) -> list[tuple[int, int]]:
        d = self.spatial_rank
        return [(self.pads[i], self.pads[i + d]) for i in range(d)]

    def operator_input_size(self) -> tuple[int, ...] | None:
        """Spatial size of the *conv* whose adjoint (transpose) or self (conv) this layer is.

        For a transposed conv this is the size of the layer's *output*: the
        layer is the adjoint of a zero-padded conv on that size.
        """
        if self.input_size is None:
            return None
        if not self.transpose:
            return self.input_size
        out = []
        for n, s, kd, (pb, pe), op in zip(
            self.input_size, self.stride, self.dilated_kernel_size, self.pads_per_axis(), self.output_padding
        ):
            out.append((n - 1) * s + kd - pb - pe + op)
        return tuple(out)


def split_groups(weight: np.ndarray, groups: int) -> np.ndarray:
    """``(c_out, c_in_g, *k)`` -> ``(groups, c_out / groups, c_in_g, *k)``: one block per group."""
    c_out = weight.shape[0]
    return weight.reshape(groups, c_out // groups, *weight.shape[1:])


def dilate(weight: np.ndarray, dilation: tuple[int, ...]) -> np.ndarray:
    """Insert ``dilation - 1`` zeros between the taps of every spatial axis."""
    if all(d == 1 for d in dilation):
        return weight
    k = weight.shape[-len(dilation):]
    size = tuple(d * (kk - 1) + 1 for kk, d in zip(k, dilation))
    out = np.zeros(weight.shape[: -len(dilation)] + size, dtype=weight.dtype)
    index = (Ellipsis,) + tuple(slice(None, None, d) for d in dilation)
    out[index] = weight
    return out


def polyphase(weight: np.ndarray, stride: tuple[int, ...]) -> np.ndarray:
    """Turn a strided conv kernel into the stride-1 kernel of its polyphase form.

    ``(..., c_in, k_1, ..., k_d)`` -> ``(..., c_in * prod(s), ceil(k_1/s_1), ...)``.
    Each axis is padded at its end to a multiple of its own stride and split
    into (taps, phase); the phases join the input channels. Done per axis, so
    non-square kernels and unequal strides are handled correctly.
    """
    d = len(stride)
    if all(s == 1 for s in stride):
        return weight
    k = weight.shape[-d:]
    lead = weight.shape[:-d]  # (..., c_in)
    padded = tuple(math.ceil(kk / s) * s for kk, s in zip(k, stride))
    w = np.zeros(lead + padded, dtype=weight.dtype)
    w[(Ellipsis,) + tuple(slice(0, kk) for kk in k)] = weight
    # split every spatial axis into (taps, phase): tap q, phase r is index q*s + r
    split_shape = lead
    for kk, s in zip(padded, stride):
        split_shape += (kk // s, s)
    w = w.reshape(split_shape)
    nl = len(lead)
    tap_axes = [nl + 2 * i for i in range(d)]
    phase_axes = [nl + 2 * i + 1 for i in range(d)]
    # move phases right after c_in (the last lead axis), then merge them into it
    order = list(range(nl)) + phase_axes + tap_axes
    w = w.transpose(order)
    taps = tuple(kk // s for kk, s in zip(padded, stride))
    return w.reshape(lead[:-1] + (lead[-1] * int(np.prod(stride)),) + taps)


def canonical_kernels(spec: ConvSpec) -> np.ndarray:
    """The stride-1, undilated kernels whose bounds bound the layer.

    Returns ``(groups, c_out_g, c_in_g * prod(stride), *taps)`` as float64.
    The layer's Jacobian is (up to a compression and the padding operator) a
    block-diagonal operator with one stride-1 conv per group.
    """
    w = np.asarray(spec.weight, dtype=np.float64)
    if any(s > 1 for s in spec.stride):
        # with a stride the dilation cannot be dropped: dilate explicitly, then polyphase
        w = polyphase(dilate(w, spec.dilation), spec.stride)
    # stride 1: the dilated symbol is K^(d*w), with the same supremum -> undilated kernel
    return split_groups(w, spec.groups)


def padding_operator_norm(spec: ConvSpec) -> tuple[float, str | None]:
    """Norm of the padding step for non-zero padding modes, and a note.

    The layer is ``valid_conv(P x)``. For zero padding ``P`` is an isometric
    embedding and the conv bounds apply as they are. For reflect / replicate /
    circular every padded entry is a copy of one input entry, so ``P^T P`` is
    diagonal with the copy counts, and ``||P|| = sqrt(max count)``; counts
    multiply across axes. Without a known input size the worst case
    ``1 + pad_begin + pad_end`` per axis is used.

    Circular padding that adds at most ``k_dilated - 1`` entries per axis
    keeps the output a set of distinct rows of a circular convolution, whose
    norm is at most the symbol supremum: no factor is needed then (stride 1,
    or an input size divisible by the stride).
    """
    mode = spec.padding_mode
    if mode == "zeros":
        return 1.0, None
    pads = spec.pads_per_axis()
    if mode == "circular" and _circular_without_repeats(spec):
        return 1.0, None
    counts = []
    for axis, (pb, pe) in enumerate(pads):
        n = spec.input_size[axis] if spec.input_size is not None else None
        counts.append(max_copies(mode, n, pb, pe))
    factor = math.sqrt(float(np.prod(counts)))
    if factor == 1.0:
        return 1.0, None
    size = "input size unknown, worst case" if spec.input_size is None else f"input {_fmt_size(spec.input_size)}"
    return factor, f"{mode} padding operator norm {factor:.6g} ({size})"


def _circular_without_repeats(spec: ConvSpec) -> bool:
    for axis, ((pb, pe), kd, s) in enumerate(zip(spec.pads_per_axis(), spec.dilated_kernel_size, spec.stride)):
        if pb + pe > kd - 1:
            return False
        if s > 1 and (spec.input_size is None or spec.input_size[axis] % s):
            return False
    return True


def max_copies(mode: str, n: int | None, pb: int, pe: int) -> int:
    """Largest number of times one input entry appears after padding one axis."""
    if mode == "zeros" or (pb == 0 and pe == 0):
        return 1
    if n is None:
        return 1 + pb + pe
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    if mode == "reflect" and n == 1:
        np_mode = "edge"  # reflect of a single entry degenerates to copies of it
    index = np.pad(np.arange(n), (pb, pe), mode=np_mode)
    return int(np.bincount(index, minlength=n).max())


def _fmt_size(size: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in size)
