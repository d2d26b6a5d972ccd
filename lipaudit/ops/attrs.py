"""Attribute conventions shared by Conv, ConvTranspose and pooling."""

from __future__ import annotations

import math


def resolve_pads(attrs, in_size, k, s, dil) -> list[int]:
    """ONNX ``pads`` (begin..., end...) after resolving ``auto_pad`` for a conv/pool."""
    d = len(k)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * d)
        for i in range(d):
            out = math.ceil(in_size[i] / s[i])
            total = max((out - 1) * s[i] + dil[i] * (k[i] - 1) + 1 - in_size[i], 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + d] = (small, big) if auto == "SAME_UPPER" else (big, small)
        return pads
    if auto == "VALID":
        return [0] * (2 * d)
    return [int(p) for p in attrs.get("pads", [0] * (2 * d))]


def transpose_pads(attrs, in_size, k, s, dil, output_padding) -> list[int]:
    """ConvTranspose ``pads``, derived from ``output_shape``/``auto_pad`` when those are given."""
    d = len(k)
    output_shape = attrs.get("output_shape")
    auto = attrs.get("auto_pad", "NOTSET")
    if output_shape is None and auto not in ("SAME_UPPER", "SAME_LOWER"):
        return [max(int(p), 0) for p in attrs.get("pads", [0] * (2 * d))]
    target = list(output_shape)[-d:] if output_shape is not None else [n * ss for n, ss in zip(in_size, s)]
    pads = [0] * (2 * d)
    for i in range(d):
        total = s[i] * (in_size[i] - 1) + output_padding[i] + dil[i] * (k[i] - 1) + 1 - target[i]
        total = max(total, 0)  # a negative total only appends zeros, which does not change the norm
        if auto == "SAME_UPPER":
            pads[i], pads[i + d] = total // 2, total - total // 2
        else:
            pads[i], pads[i + d] = total - total // 2, total // 2
    return pads
