"""The TN algorithm exactly as the paper's code runs it: the baseline of the speed benchmark.

Written for this project from the paper's description (Grishina et al., ECCV 2024, Alg. 1 and the
published defaults): HOPM with ``einsum`` on a complex64 copy of the kernel, 100 iterations, no
convergence test, one layer at a time; here 5 random restarts run one after another and the best is
kept. Stride via the polyphase reshape (done per axis, as in lipaudit, so both compute the same
quantity; the official reshape is wrong for non-square strided kernels).
"""

from __future__ import annotations

import numpy as np
import torch


def tn_paper(weight: np.ndarray, stride: int = 1, iters: int = 100, restarts: int = 5, seed: int = 0) -> float:
    from lipaudit.bounds.conv import polyphase

    k = polyphase(np.asarray(weight, dtype=np.float32), (stride, stride)) if stride > 1 else np.asarray(weight, np.float32)
    K = torch.as_tensor(k).to(torch.complex64)
    co, ci, h, w = K.shape
    gen = torch.Generator().manual_seed(seed)
    best = 0.0
    for _ in range(restarts):
        u = [torch.randn(n, dtype=torch.complex64, generator=gen) for n in (co, ci, h, w)]
        u = [x / x.norm() for x in u]
        sigma = 0.0
        for _ in range(iters):
            u[0] = torch.einsum("ijkl,j,k,l->i", K, u[1], u[2], u[3]).conj()
            u[0] = u[0] / u[0].norm()
            u[1] = torch.einsum("ijkl,i,k,l->j", K, u[0], u[2], u[3]).conj()
            u[1] = u[1] / u[1].norm()
            u[2] = torch.einsum("ijkl,i,j,l->k", K, u[0], u[1], u[3]).conj()
            u[2] = u[2] / u[2].norm()
            u[3] = torch.einsum("ijkl,i,j,k->l", K, u[0], u[1], u[2]).conj()
            u[3] = u[3] / u[3].norm()
            sigma = torch.einsum("ijkl,i,j,k,l->", K, u[0], u[1], u[2], u[3]).abs().item()
        best = max(best, sigma)
    return float(np.sqrt(h * w) * best)
