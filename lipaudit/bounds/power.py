"""Power iteration on the layer's true operator (torch): an estimate from below.

The operator is the real ``torch.nn.functional`` conv with the layer's
padding mode, stride, dilation and groups at its input size; its adjoint
comes from autograd, so nothing about the layer is re-derived by hand.
Every value ``||A v|| / ||v||`` is attained by an actual input, hence it is a
lower bound of the true norm (up to rounding); it converges to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipaudit.bounds.conv import ConvSpec


@dataclass(frozen=True)
class PowerSettings:
    max_iters: int = 500
    tol: float = 1e-6
    block: int = 4
    seed: int = 0
    device: str = "auto"


_TORCH_PAD_MODE = {"zeros": "constant", "circular": "circular", "reflect": "reflect", "replicate": "replicate"}


def conv_operator(spec: ConvSpec, dtype=None, device: str = "cpu"):
    """``(f, input_shape)``: the layer as a torch function of a ``(1, C, *n)`` input."""
    import torch
    import torch.nn.functional as F

    if spec.input_size is None:
        raise ValueError("power iteration needs the layer's input size")
    dtype = dtype or torch.float64
    W = torch.as_tensor(np.asarray(spec.weight), dtype=dtype, device=device)
    d = spec.spatial_rank
    pads = spec.pads_per_axis()
    if spec.transpose:
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[d]
        c_in = W.shape[0]

        def f(x):
            y = fn(x, W, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)
            # output_padding appends zeros at the end; pads crop (ONNX semantics, possibly asymmetric)
            extra = []
            for op in reversed(spec.output_padding):
                extra += [0, op]
            if any(extra):
                y = F.pad(y, extra)
            index = (slice(None), slice(None)) + tuple(slice(pb, y.shape[2 + i] - pe) for i, (pb, pe) in enumerate(pads))
            return y[index]

    else:
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[d]
        c_in = W.shape[1] * spec.groups
        torch_pads = []
        for pb, pe in reversed(pads):
            torch_pads += [pb, pe]
        mode = _TORCH_PAD_MODE[spec.padding_mode]

        def f(x):
            if any(torch_pads):
                x = F.pad(x, torch_pads, mode=mode) if mode != "constant" else F.pad(x, torch_pads)
            return fn(x, W, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)

    return f, (1, c_in) + tuple(spec.input_size)


def power_iteration(spec: ConvSpec, settings: PowerSettings = PowerSettings()) -> tuple[float, int, bool]:
    """Estimate of the layer's norm at its input size: ``(value, iterations, converged)``.

    Block power (subspace) iteration with Rayleigh-Ritz on ``A^T A``: a block
    of ``settings.block`` vectors converges at rate ``(s_{b+1}/s_1)^2`` instead
    of ``(s_2/s_1)^2``, which matters because a conv's top singular values
    cluster. Iterates in float32, then evaluates ``||A v|| / ||v||`` for the top
    Ritz vector in float64, so the returned number is attained by an actual input.
    """
    import torch

    device = resolve_device(settings.device)
    f32, shape = conv_operator(spec, dtype=torch.float32, device=device)
    numel = int(np.prod(shape[1:]))
    block = max(1, min(settings.block, numel))
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    Q = torch.randn((block,) + shape[1:], generator=gen, dtype=torch.float32).to(device)
    Q = _orthonormal(Q)
    prev = 0.0
    converged = False
    it = 0
    top = Q[:1]
    for it in range(1, settings.max_iters + 1):
        Q = Q.detach().requires_grad_(True)
        Y = f32(Q)
        (Z,) = torch.autograd.grad(Y, Q, grad_outputs=Y)  # A^T A Q, one column per batch entry
        Yf = Y.detach().reshape(block, -1)
        H = (Yf @ Yf.T).double()  # Q^T A^T A Q: Ritz values of A^T A on span(Q)
        evals, evecs = torch.linalg.eigh(H)
        sigma = float(evals[-1].clamp(min=0).sqrt())
        top = torch.einsum("b,b...->...", evecs[:, -1].float(), Q.detach())[None]
        # next block: A^T A Q rotated onto the Ritz vectors, orthonormalised
        Z = torch.einsum("bk,b...->k...", evecs.flip(1).float(), Z.detach())
        Q = _orthonormal(Z)
        if abs(sigma - prev) <= settings.tol * max(sigma, 1e-30):
            converged = True
            break
        prev = sigma
    f64, _ = conv_operator(spec, dtype=torch.float64, device=device)
    with torch.no_grad():
        v64 = top.to(torch.float64)
        value = float(f64(v64).norm() / v64.norm())
    return value, it, converged


def resolve_device(device: str) -> str:
    """``auto``: CUDA when available, else CPU. Asking for CUDA without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device


def _orthonormal(X):
    import torch

    b = X.shape[0]
    q, _ = torch.linalg.qr(X.reshape(b, -1).T)
    return q.T.reshape(X.shape)
