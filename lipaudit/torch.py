"""Differentiable TN bound for training: ``tn_bound`` for one conv weight, ``tn_penalty`` for a module.

TN (Grishina, Gorbunov & Rakhuba, ECCV 2024) is ``sqrt(prod k) * ||K||_sigma``,
where ``||K||_sigma = max |K(u_1, ..., u_D)|`` over complex unit vectors. At a
maximiser ``u*`` the envelope theorem gives the gradient of the maximum as
the gradient of ``|K(u*)|`` with ``u*`` held fixed, so:

1. find ``u*`` by HOPM **without** gradient: the first call (or a new shape)
   runs lipaudit's own solver (the one behind the CLI's ``tn``: Fourier and
   random starts, successive halving); later calls warm-start from the
   previous call's vectors and run a few sweeps;
2. evaluate ``|K(u*)|`` differentiably, scaled like the bound.

Strides, dilations and groups are reduced exactly as in :mod:`lipaudit.bounds.conv`
(polyphase reshape, undilated kernel, maximum over groups), but with torch
operations so the gradient reaches the weight. Works on any device; the cold
start runs on the CPU, every later step on the weight's device.

The value is an estimate from below of the TN bound (HOPM converges from
below), exactly like the CLI's ``tn`` column: a training signal, not a certificate.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["tn_bound", "tn_penalty", "canonical_kernels", "conv_bn_pairs", "reset_warm_starts"]

_LETTERS = "abcdefhijklmnopq"


@dataclass
class _WarmStart:
    signature: tuple
    vectors: list[torch.Tensor]  # (G, n_m) complex unit vectors, one per tensor mode


# id(key) -> (weak reference to key, state); an entry goes when its key is garbage-collected.
# (WeakKeyDictionary compares keys with ==, which tensors answer elementwise.)
_STATES: dict[int, tuple[Any, _WarmStart]] = {}


def reset_warm_starts() -> None:
    """Forget every cached maximiser: the next call of each layer starts cold."""
    _STATES.clear()


def _get_state(key: Any) -> _WarmStart | None:
    entry = _STATES.get(id(key))
    if entry is None or entry[0]() is not key:
        return None
    return entry[1]


def _set_state(key: Any, state: _WarmStart) -> None:
    try:
        ref = weakref.ref(key)
    except TypeError:  # cannot be weakly referenced: no warm start
        return
    if id(key) not in _STATES:
        weakref.finalize(key, _STATES.pop, id(key), None)
    _STATES[id(key)] = (ref, state)


def tn_bound(
    weight: torch.Tensor,
    *,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    transpose: bool = False,
    starts: int = 128,
    iters: int = 20,
    tol: float = 1e-7,
    seed: int = 0,
    key: Any = None,
) -> torch.Tensor:
    """The TN bound of a conv layer's weight, differentiable in the weight.

    Args:
        weight: ``(c_out, c_in / groups, *k)`` for a conv, ``(c_in, c_out / groups, *k)`` for a transposed
            conv (as PyTorch and ONNX store them); any spatial rank (1-D, 2-D, 3-D, ...).
        stride, dilation: an int or one per spatial axis.
        groups: the layer's groups; the bound is the maximum over groups.
        transpose: a transposed conv (the adjoint of the conv with this weight: the same bound).
        starts: random starts of the cold start (lipaudit's HOPM also adds Fourier starts).
        iters: most warm-start sweeps per call; they stop earlier once the value moves by less than ``tol``.
        seed: seed of the cold start's random vectors.
        key: the object the warm start is cached under (weakly). Default: ``weight`` itself, which is right
            for a Parameter; pass the Parameter (or module) when ``weight`` is a fresh tensor each call
            (e.g. a BatchNorm-folded kernel).

    Returns:
        a 0-dim tensor on ``weight``'s device and dtype with a gradient.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() < 3:
        raise ValueError("tn_bound needs a conv weight tensor of rank >= 3 (c_out, c_in/groups, *kernel)")
    if not weight.is_floating_point():
        raise ValueError(f"tn_bound needs a floating-point weight, not {weight.dtype}")
    d = weight.dim() - 2
    stride_t, dilation_t = _per_axis(stride, d, "stride"), _per_axis(dilation, d, "dilation")
    if groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"groups={groups} does not divide the weight's first dimension {weight.shape[0]}")
    del transpose  # same canonical kernels: the adjoint has the same norm and groups split the same axis
    K = canonical_kernels(weight, stride_t, dilation_t, groups)
    cdtype = torch.complex128 if K.dtype == torch.float64 else torch.complex64
    signature = (tuple(K.shape), K.device, cdtype)
    cache_key = weight if key is None else key
    state = _get_state(cache_key)
    with torch.no_grad():
        Kd = K.detach()
        if state is None or state.signature != signature:
            vectors = _cold_start(Kd, starts, seed, cdtype)
        else:
            vectors = state.vectors
        vectors = _sweeps(Kd.to(cdtype), vectors, iters, tol)
    _set_state(cache_key, _WarmStart(signature, vectors))
    taps = K.shape[3:]
    scale = math.sqrt(float(np.prod(taps))) if len(taps) else 1.0
    return scale * _evaluate(K, vectors).max()


def canonical_kernels(weight: torch.Tensor, stride: Sequence[int], dilation: Sequence[int], groups: int) -> torch.Tensor:
    """``(groups, c_out_g, c_in_g * prod(stride), *taps)``, as :func:`lipaudit.bounds.conv.canonical_kernels`, in torch."""
    w = weight
    if any(s > 1 for s in stride):
        w = _polyphase(_dilate(w, dilation), stride)
    return w.reshape(groups, w.shape[0] // groups, *w.shape[1:])


def _dilate(w: torch.Tensor, dilation: Sequence[int]) -> torch.Tensor:
    if all(v == 1 for v in dilation):
        return w
    d = len(dilation)
    k = w.shape[-d:]
    size = tuple(v * (kk - 1) + 1 for kk, v in zip(k, dilation))
    out = w.new_zeros(w.shape[:-d] + size)
    out[(Ellipsis,) + tuple(slice(None, None, v) for v in dilation)] = w
    return out


def _polyphase(w: torch.Tensor, stride: Sequence[int]) -> torch.Tensor:
    d = len(stride)
    k = w.shape[-d:]
    lead = tuple(w.shape[:-d])
    padded = tuple(math.ceil(kk / s) * s for kk, s in zip(k, stride))
    pad: list[int] = []
    for kk, p in zip(reversed(k), reversed(padded)):  # F.pad lists the last axis first
        pad += [0, p - kk]
    w = F.pad(w, pad)
    split = lead
    for p, s in zip(padded, stride):
        split += (p // s, s)
    w = w.reshape(split)
    nl = len(lead)
    order = list(range(nl)) + [nl + 2 * i + 1 for i in range(d)] + [nl + 2 * i for i in range(d)]
    taps = tuple(p // s for p, s in zip(padded, stride))
    return w.permute(order).reshape(lead[:-1] + (lead[-1] * int(np.prod(stride)),) + taps)


def _cold_start(K: torch.Tensor, starts: int, seed: int, cdtype) -> list[torch.Tensor]:
    """lipaudit's HOPM (the CLI's ``tn``) on the CPU; the best start's vectors per group, on ``K``'s device."""
    from lipaudit.bounds.hopm import HopmSettings, tensor_spectral_norm

    K64 = K.detach().to("cpu", torch.float64).numpy()
    res = tensor_spectral_norm(K64, HopmSettings(restarts=int(starts), seed=int(seed)))
    if res.vectors is None:  # non-finite kernel: any unit vectors
        return [_unit(torch.ones(K.shape[0], n, dtype=cdtype, device=K.device)) for n in K.shape[1:]]
    vecs = [v.astype(np.complex128) for v in res.vectors]
    vecs = [v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300) for v in vecs]
    G, B = vecs[0].shape[:2]
    t = np.einsum("gbo,goj->gbj", vecs[0], K64.reshape(G, K64.shape[1], -1)).reshape((G, B) + K64.shape[2:])
    for v in vecs[1:]:
        t = np.einsum("gbk...,gbk->gb...", t, v)
    best = np.abs(t).argmax(axis=1)
    return [torch.from_numpy(np.ascontiguousarray(v[np.arange(G), best])).to(device=K.device, dtype=cdtype) for v in vecs]


def _sweeps(Kc: torch.Tensor, vectors: list[torch.Tensor], iters: int, tol: float) -> list[torch.Tensor]:
    """Alternating HOPM sweeps ``u_m <- conj(K(..., ., ...)) / norm`` from ``vectors``; all groups at once."""
    D = Kc.dim() - 1
    letters = _LETTERS[:D]
    vectors = [v.to(Kc.dtype) for v in vectors]
    previous = _value(Kc, vectors)
    for _ in range(max(int(iters), 0)):
        for m in range(D):
            subs = ["g" + letters] + ["g" + letters[j] for j in range(D) if j != m]
            operands = [Kc] + [vectors[j] for j in range(D) if j != m]
            g = torch.einsum(",".join(subs) + "->g" + letters[m], *operands)
            vectors[m] = _unit(g.conj())
        value = _value(Kc, vectors)
        if torch.all(value - previous <= tol * torch.clamp(value, min=1e-30)):
            break
        previous = value
    return vectors


def _value(Kc: torch.Tensor, vectors: list[torch.Tensor]) -> torch.Tensor:
    t = Kc
    for v in vectors:
        t = torch.einsum("gi...,gi->g...", t, v)
    return t.abs()


def _evaluate(K: torch.Tensor, vectors: list[torch.Tensor]) -> torch.Tensor:
    """``|K_g(u_1, ..., u_D)|`` per group, differentiable in ``K`` (real), the vectors held fixed."""
    outer = vectors[0]
    for v in vectors[1:]:
        outer = (outer[..., None] * v.reshape((v.shape[0],) + (1,) * (outer.dim() - 1) + (v.shape[1],)))
    outer = outer.to(torch.complex128 if K.dtype == torch.float64 else torch.complex64)
    re = (K * outer.real.to(K.dtype)).flatten(1).sum(1)
    im = (K * outer.imag.to(K.dtype)).flatten(1).sum(1)
    return torch.linalg.vector_norm(torch.stack([re, im]), dim=0)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.clamp(torch.linalg.vector_norm(v, dim=-1, keepdim=True), min=1e-30)


def _per_axis(value, d: int, name: str) -> tuple[int, ...]:
    t = (int(value),) * d if isinstance(value, int) else tuple(int(v) for v in value)
    if len(t) != d or min(t) < 1:
        raise ValueError(f"{name} {value!r}: need {d} positive integer(s)")
    return t


# -- the regulariser ----------------------------------------------------------------------------

_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_TRANSPOSED = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
_BATCHNORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def conv_bn_pairs(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module, torch.nn.Module | None]]:
    """Every conv of ``module`` with the BatchNorm that follows it, or None.

    "Follows" means: the next module registered after the conv is a BatchNorm over the conv's output
    channels (``nn.Sequential(conv, bn, ...)``, or ``self.conv1 = ...; self.bn1 = ...``), the pairing
    lipaudit's state-dict loader uses too. A BN used elsewhere in ``forward`` cannot be seen here.
    """
    named = [(n, m) for n, m in module.named_modules() if isinstance(m, _CONVS + _TRANSPOSED + _BATCHNORMS)]
    pairs = []
    for i, (name, m) in enumerate(named):
        if not isinstance(m, _CONVS + _TRANSPOSED):
            continue
        bn = named[i + 1][1] if i + 1 < len(named) else None
        if not (isinstance(bn, _BATCHNORMS) and bn.num_features == m.out_channels and bn.track_running_stats):
            bn = None
        pairs.append((name, m, bn))
    return pairs


def folded_weight(conv: torch.nn.Module, bn: torch.nn.Module | None) -> torch.Tensor:
    """The conv's weight with its output channels scaled by ``gamma / sqrt(running_var + eps)`` (eval semantics).

    Differentiable in the weight and in ``gamma``; the running variance is a statistic, not trained.
    """
    w = conv.weight
    if bn is None:
        return w
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
    scale = scale.to(w.dtype)
    d = w.dim() - 2
    if isinstance(conv, _TRANSPOSED):  # (c_in, c_out / g, *k): output channel g * (c_out / g) + j
        g = conv.groups
        view = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        return (view * scale.reshape(g, 1, w.shape[1], *(1,) * d)).reshape(w.shape)
    return w * scale.reshape(-1, *(1,) * (d + 1))


def tn_penalty(module: torch.nn.Module, *, fold_bn: bool = True, reduction: str = "sum", **tn_kwargs) -> torch.Tensor:
    """A regulariser over every conv of ``module``: ``sum_l TN(K_l)``, BatchNorms folded.

    Args:
        module: any module; every ``Conv{1,2,3}d`` and ``ConvTranspose{1,2,3}d`` in it counts.
        fold_bn: bound the conv followed by its BatchNorm (:func:`conv_bn_pairs`) as one layer: TN of the
            kernel with output channels scaled by ``gamma / sqrt(running_var + eps)``. That is the layer
            lipaudit audits, tighter than penalising the two apart, and the gradient also reaches ``gamma``.
        reduction: ``sum`` (``sum_l TN_l``), ``log`` (``sum_l log TN_l``, the log of the product bound,
            scale-free across layers) or ``none`` (the per-layer values as a 1-D tensor).
        tn_kwargs: passed to :func:`tn_bound` (``starts``, ``iters``, ``tol``, ``seed``).

    Add ``beta * tn_penalty(model)`` to the loss. Warm starts are kept per conv weight.
    """
    if reduction not in ("sum", "log", "none"):
        raise ValueError(f"reduction {reduction!r}: choose sum, log or none")
    values = []
    for _, conv, bn in conv_bn_pairs(module):
        weight = folded_weight(conv, bn if fold_bn else None)
        values.append(tn_bound(weight, stride=conv.stride, dilation=conv.dilation, groups=conv.groups,
                               transpose=isinstance(conv, _TRANSPOSED), key=conv.weight, **tn_kwargs))
    if not values:
        p = next(module.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    stacked = torch.stack(values)
    if reduction == "none":
        return stacked
    if reduction == "log":
        return torch.log(stacked).sum()
    return stacked.sum()
