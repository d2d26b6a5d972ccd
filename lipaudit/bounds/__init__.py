"""Per-layer spectral-norm bounds: pure mathematics on arrays, no graph, no I/O.

Public API:

- :class:`ConvSpec` — a conv / transposed conv layer (any spatial rank, stride,
  dilation, groups, padding mode, input size).
- :func:`conv_bounds` — every requested value for one layer, each a
  :class:`~lipaudit.values.BoundResult` with its kind, plus ``certified``.
- :func:`dense_bounds` — the same for a dense layer.
- :func:`bn_scale`, :func:`fold_bn_into_conv`, :func:`fold_bn_into_dense`,
  :func:`bn_norm` — BatchNorm helpers.
- :func:`tensor_spectral_norm` (HOPM), :func:`f4_norm`, :func:`fro_norm`,
  :func:`circular_norm`, :func:`fft_upper`, :func:`power_iteration` — the
  building blocks.
"""

from lipaudit.bounds.batchnorm import bn_norm, bn_scale, fold_bn_into_conv, fold_bn_into_dense
from lipaudit.bounds.certified import certified_of, verify_tn
from lipaudit.bounds.conv import ConvSpec, canonical_kernels, padding_operator_norm, polyphase
from lipaudit.bounds.dense import dense_bounds
from lipaudit.bounds.fft import circular_norm, fft_upper, symbol_sup_upper
from lipaudit.bounds.hopm import HopmSettings, tensor_spectral_norm
from lipaudit.bounds.layer import CONV_METHODS, BoundSettings, conv_bounds
from lipaudit.bounds.power import PowerSettings, power_iteration
from lipaudit.bounds.unfold import f4_norm, fro_norm

__all__ = [
    "BoundSettings", "CONV_METHODS", "ConvSpec", "HopmSettings", "PowerSettings",
    "bn_norm", "bn_scale", "canonical_kernels", "certified_of", "circular_norm", "conv_bounds",
    "dense_bounds", "f4_norm", "fft_upper", "fold_bn_into_conv", "fold_bn_into_dense", "fro_norm",
    "padding_operator_norm", "polyphase", "power_iteration", "symbol_sup_upper",
    "tensor_spectral_norm", "verify_tn",
]
