"""Weights without an architecture: every conv-like and dense weight audited on its own.

A state dict stores no graph, so there is no network certificate. What can
be said, and is said in the report:
- the kernel rank tells Conv1d/2d/3d (rank 3/4/5) and dense layers (rank 2);
- a BatchNorm is paired with the conv/dense weight right before it in the
  state dict when the channel counts match (modules are usually registered
  in forward order); a state dict cannot show a nonlinearity between them;
- groups are inferred: a ``(c_out, 1, *k)`` kernel after the first layer is taken
  as depthwise, other grouped kernels from the previous layer's output channels
  (both are stated in the layer's note, since a state dict cannot show them);
- strides and padding are unknown: stride 1 is assumed unless ``--stride``
  gives one per name pattern. TN for stride 1 does not depend on the padding
  amount (zero padding), but a strided layer's value does depend on its stride.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field

import numpy as np

from lipaudit.errors import ModelLoadError

BN_PARTS = ("weight", "bias", "running_mean", "running_var")


@dataclass
class WeightLayer:
    name: str
    weight: np.ndarray
    kind: str  # conv | dense
    groups: int = 1
    stride: tuple[int, ...] | None = None
    stride_given: bool = False
    bn: tuple[str, np.ndarray] | None = None  # (bn prefix, scale)
    notes: list[str] = field(default_factory=list)


@dataclass
class WeightsOnly:
    path: str
    layers: list[WeightLayer]
    unpaired_bns: list[tuple[str, np.ndarray]]


def weights_from_state_dict(tensors: dict[str, np.ndarray], path: str, strides: dict[str, tuple[int, ...]]) -> WeightsOnly:
    from lipaudit.bounds import bn_scale

    for key, value in tensors.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ModelLoadError(f"{path}: tensor {key!r} contains NaN or Inf")
    keys = list(tensors)
    bn_prefixes = _bn_prefixes(tensors)
    layers: list[WeightLayer] = []
    unpaired: list[tuple[str, np.ndarray]] = []
    prev_out: int | None = None
    for key in keys:
        prefix = key[: -len(".weight")] if key.endswith(".weight") else None
        if prefix is not None and prefix in bn_prefixes:
            eps = 1e-5
            scale = bn_scale(tensors[f"{prefix}.weight"], tensors[f"{prefix}.running_var"], eps)
            target = layers[-1] if layers else None
            if target is not None and target.bn is None and _out_channels(target) == scale.shape[0]:
                target.bn = (prefix, scale)
                target.notes.append(f"BatchNorm {prefix} paired by state-dict order (assumes nothing non-linear between)")
            else:
                unpaired.append((prefix, scale))
            continue
        if prefix is None:
            continue
        w = np.asarray(tensors[key])
        if w.ndim in (3, 4, 5):
            layer = WeightLayer(prefix, w, "conv")
            if prev_out is not None and w.shape[1] == 1 and w.shape[0] > 1:
                # one input channel per filter after the first layer: depthwise (channel multiplier 1)
                layer.groups = w.shape[0]
                layer.notes.append(f"groups={layer.groups} assumed (depthwise: one input channel per filter)")
            elif prev_out is not None and w.shape[1] != prev_out and prev_out % w.shape[1] == 0 and w.shape[0] % (prev_out // w.shape[1]) == 0:
                layer.groups = prev_out // w.shape[1]
                layer.notes.append(f"groups={layer.groups} inferred from the previous layer's {prev_out} output channels")
            stride = _stride_for(prefix, strides, w.ndim - 2)
            layer.stride, layer.stride_given = stride
            layers.append(layer)
            prev_out = w.shape[0]
        elif w.ndim == 2 and min(w.shape) > 1:
            layers.append(WeightLayer(prefix, w, "dense"))  # prev_out tracks convs only: dense layers feed no conv
    if not layers:
        raise ModelLoadError(f"{path}: no conv or dense weights found in the state dict")
    return WeightsOnly(path, layers, unpaired)


def _bn_prefixes(tensors) -> set[str]:
    out = set()
    for key in tensors:
        if key.endswith(".running_var"):
            prefix = key[: -len(".running_var")]
            if all(f"{prefix}.{p}" in tensors for p in BN_PARTS):
                out.add(prefix)
    return out


def _out_channels(layer: WeightLayer) -> int:
    return layer.weight.shape[0]


def _stride_for(name: str, strides: dict[str, tuple[int, ...]], d: int) -> tuple[tuple[int, ...], bool]:
    for pattern, stride in strides.items():
        if fnmatch.fnmatchcase(name, pattern):
            if len(stride) == 1:
                stride = stride * d
            if len(stride) != d:
                raise ModelLoadError(f"--stride {pattern}: {len(stride)} values for a {d}-D conv {name}")
            return tuple(stride), True
    return (1,) * d, False


@dataclass
class WeightsResult:
    """Looks like :class:`lipaudit.engine.AuditResult` to reporters, without a network."""

    layers: list
    factors: list
    network: dict
    inputs: list
    outputs: list
    settings: object
    elapsed_s: float
    notes: list = field(default_factory=list)  # (layer, message) for stride assumptions
    timings: dict = field(default_factory=dict)


def audit_weights(weights: WeightsOnly, settings, progress=None) -> WeightsResult:
    from lipaudit.bounds import ConvSpec, bn_norm, conv_bounds, dense_bounds, fold_bn_into_conv, fold_bn_into_dense
    from lipaudit.engine import layer_shares
    from lipaudit.ops.context import LayerRecord

    t0 = time.perf_counter()
    methods = tuple(m for m in settings.conv_methods if m not in ("fft", "exact"))  # no input size known
    records = []
    notes = []
    total = len(weights.layers)
    for i, layer in enumerate(weights.layers, 1):
        folded = []
        w = layer.weight.astype(np.float64)
        if layer.kind == "conv":
            if layer.bn is not None:
                w = fold_bn_into_conv(w, layer.bn[1], side="after", groups=layer.groups)
                folded.append(layer.bn[0])
            d = w.ndim - 2
            spec = ConvSpec(w, layer.stride, None, layer.groups, (0,) * (2 * d))
            values = conv_bounds(spec, methods, settings.bounds)
            if not layer.stride_given:
                notes.append((layer.name, f"{layer.name}: stride 1 assumed (a state dict does not store it)"))
            record = LayerRecord(
                name=layer.name, op=f"Conv{d}d", values=values, kernel_shape=list(w.shape[2:]), strides=list(layer.stride),
                pads=None, dilations=[1] * d, groups=layer.groups, weight_shape=list(layer.weight.shape), folded=folded,
                note="; ".join(layer.notes + ([] if layer.stride_given else ["stride 1 assumed"])) or None,
            )
        else:
            if layer.bn is not None:
                w = fold_bn_into_dense(w, layer.bn[1], side="after")
                folded.append(layer.bn[0])
            values = dense_bounds(w, methods, seed=settings.bounds.hopm.seed)
            record = LayerRecord(name=layer.name, op="Linear", values=values, weight_shape=list(layer.weight.shape),
                                 folded=folded, note="; ".join(layer.notes) or None)
        records.append(record)
        if progress is not None:
            progress(i, total, layer.name)
    for prefix, scale in weights.unpaired_bns:
        v = bn_norm(scale)
        records.append(LayerRecord(name=prefix, op="BatchNorm", values={"certified": v, "tn": v},
                                   note="no conv/dense weight with matching channels right before it: diagonal map"))
    layer_shares(records, settings.compositions[0])
    return WeightsResult(records, [], {}, [], [], settings, time.perf_counter() - t0, notes)
