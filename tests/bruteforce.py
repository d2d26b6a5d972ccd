"""Brute force: the dense Jacobian of a real torch layer and its largest singular value.

Built from ``torch.nn`` modules, independently of lipaudit's own operator code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def dense_norm(fn, input_shape) -> float:
    """Largest singular value of the Jacobian of a linear ``fn`` at an input of ``input_shape``."""
    x = torch.zeros(input_shape, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(fn, x)
    out_numel = int(np.prod(J.shape[: J.dim() - len(input_shape)]))
    J = J.reshape(out_numel, -1)
    return float(torch.linalg.matrix_norm(J, ord=2))


def torch_conv(weight, *, stride, dilation, groups, pads, padding_mode="zeros", transpose=False, output_padding=None):
    """The layer as torch sees it (ONNX pads ``(begin..., end...)``; transpose crops them)."""
    W = torch.as_tensor(weight, dtype=torch.float64)
    d = W.dim() - 2
    begin, end = pads[:d], pads[d:]
    if transpose:
        fn = [F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d][d - 1]
        op = output_padding or (0,) * d

        def f(x):
            y = fn(x, W, stride=stride, dilation=dilation, groups=groups)
            y = F.pad(y, [v for o in reversed(op) for v in (0, o)])
            return y[(slice(None), slice(None)) + tuple(slice(b, y.shape[2 + i] - e) for i, (b, e) in enumerate(zip(begin, end)))]

        return f
    fn = [F.conv1d, F.conv2d, F.conv3d][d - 1]
    torch_pads = [v for b, e in zip(reversed(begin), reversed(end)) for v in (b, e)]
    mode = {"zeros": "constant"}.get(padding_mode, padding_mode)

    def f(x):
        return fn(F.pad(x, torch_pads, mode=mode), W, stride=stride, dilation=dilation, groups=groups)

    return f


def conv_input_shape(weight, groups, input_size, transpose=False):
    c_in = weight.shape[0] if transpose else weight.shape[1] * groups
    return (1, c_in) + tuple(input_size)
