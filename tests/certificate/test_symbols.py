"""The torus claims behind the expansion certificate, against dense matrices.

- A zero-padded conv is ``R X E`` (restrict . circular conv . embed) on a torus of period ``N >= n + pad``.
- Zero-padded convs do *not* compose into the zero-padded conv of the composed kernel (the border differs);
  with the activation's diagonal in between, the composition is ``R X2 D~ X1 E`` with ``D~`` zero off the grid.
- The polyphase symbol of a strided conv on a coarser reference torus gives exactly the circulant's norm,
  and a product of symbols gives the norm of the product of circulants.
- Rows of a map on the grid turn into symbols whose Gram matrix is the rows' Gram matrix.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lipaudit.certificate.symbols import coarse_conv_taps, grid_rows_to_symbol, half_grid, symbol


def zero_padded(weight, n, stride, pb, pe):
    """Dense matrix of the zero-padded conv (1-D or 2-D spatial, ONNX semantics)."""
    co, ci = weight.shape[:2]
    k = weight.shape[2:]
    d = len(k)
    out = tuple((n[a] + pb[a] + pe[a] - k[a]) // stride[a] + 1 for a in range(d))
    mat = np.zeros((co,) + out + (ci,) + tuple(n))
    for i in itertools.product(*(range(o) for o in out)):
        for t in itertools.product(*(range(kk) for kk in k)):
            j = tuple(stride[a] * i[a] + t[a] - pb[a] for a in range(d))
            if all(0 <= j[a] < n[a] for a in range(d)):
                mat[(slice(None),) + i + (slice(None),) + j] += weight[(slice(None), slice(None)) + t]
    return mat.reshape(co * int(np.prod(out)), ci * int(np.prod(n))), out


def circular(weight, period, stride, pb):
    """Dense matrix of the strided circular conv on the torus of period ``period`` (output period / stride)."""
    co, ci = weight.shape[:2]
    k = weight.shape[2:]
    d = len(k)
    out = tuple(p // s for p, s in zip(period, stride))
    mat = np.zeros((co,) + out + (ci,) + tuple(period))
    for i in itertools.product(*(range(o) for o in out)):
        for t in itertools.product(*(range(kk) for kk in k)):
            j = tuple((stride[a] * i[a] + t[a] - pb[a]) % period[a] for a in range(d))
            mat[(slice(None),) + i + (slice(None),) + j] += weight[(slice(None), slice(None)) + t]
    return mat.reshape(co * int(np.prod(out)), ci * int(np.prod(period)))


def embed(c, n, period):
    """Dense E: grid [0, n) -> torus of period ``period``, c channels."""
    grid = np.zeros((c,) + tuple(period), dtype=bool)
    grid[(slice(None),) + tuple(slice(0, m) for m in n)] = True
    return np.eye(grid.size)[:, grid.reshape(-1)]


def sym_norm(weight, stride, pb, q_out, period):
    omega, _ = half_grid(period)
    offsets, mats = coarse_conv_taps(weight, stride, (1,) * len(stride), pb, q_out)
    return np.linalg.norm(symbol(offsets, mats, omega), ord=2, axis=(1, 2)).max()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(k=st.integers(1, 3), s=st.integers(1, 2), q=st.integers(1, 2), n=st.integers(2, 5), pad=st.integers(0, 2),
       seed=st.integers(0, 100))
def test_zero_padded_conv_is_a_compression_of_the_torus_conv(k, s, q, n, pad, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((2, 2, k, k))
    pb = pe = min(pad, k)
    if (n + pb + pe - k) < 0:
        return
    dense, out = zero_padded(w, (n, n), (s, s), (pb, pb), (pe, pe))
    # the smallest admissible torus, made divisible by the stride and by the output's phases q
    base = -(-max(n + max(pb, pe), out[0] * s) // (s * q))
    period = (base * s * q,) * 2
    circ = circular(w, period, (s, s), (pb, pb))
    e_in = embed(2, (n, n), period)
    e_out = embed(2, out, tuple(p // s for p in period))
    assert np.allclose(e_out.T @ circ @ e_in, dense)  # R X E == the zero-padded conv
    exact = np.linalg.norm(circ, 2)
    assert np.isclose(sym_norm(w, (s, s), (pb, pb), (q, q), (base,) * 2), exact, rtol=1e-9)
    assert np.linalg.norm(dense, 2) <= exact * (1 + 1e-12)


def test_zero_padded_convs_do_not_compose_into_the_composed_kernel():
    rng = np.random.default_rng(1)
    w1, w2 = rng.standard_normal((1, 1, 3)), rng.standard_normal((1, 1, 3))
    n = 4
    a, _ = zero_padded(w1, (n,), (1,), (1,), (1,))
    b, _ = zero_padded(w2, (n,), (1,), (1,), (1,))
    composed = np.convolve(w1[0, 0], w2[0, 0])[None, None]  # the 5-tap kernel of the composition
    c, _ = zero_padded(composed, (n,), (1,), (2,), (2,))
    assert not np.allclose(b @ a, c)  # the border entries differ
    # the torus product without the projection between the layers is not the composition either...
    period = (n + 2,)
    x1, x2 = circular(w1, period, (1,), (1,)), circular(w2, period, (1,), (1,))
    e = embed(1, (n,), period)
    assert not np.allclose(e.T @ x2 @ x1 @ e, b @ a)
    # ...but with the 0/1 diagonal (restrict . embed) between them it is, exactly
    assert np.allclose(e.T @ x2 @ (e @ e.T) @ x1 @ e, b @ a)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 1000), n=st.integers(2, 5), relu=st.lists(st.booleans(), min_size=50, max_size=50))
def test_activation_diagonal_absorbs_the_projection(seed, n, relu):
    """R X2 E D R X1 E == R X2 D~ X1 E, D~ = E D R zero off the grid, entries in [0, 1] for a ReLU."""
    rng = np.random.default_rng(seed)
    w1, w2 = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((1, 2, 3, 3))
    period = (n + 2, n + 2)
    x1, x2 = circular(w1, period, (1, 1), (1, 1)), circular(w2, period, (1, 1), (1, 1))
    e1, e2 = embed(1, (n, n), period), embed(2, (n, n), period)
    d = np.diag(np.array(relu[: 2 * n * n], dtype=float))
    a, _ = zero_padded(w1, (n, n), (1, 1), (1, 1), (1, 1))
    b, _ = zero_padded(w2, (n, n), (1, 1), (1, 1), (1, 1))
    d_torus = e2 @ d @ e2.T
    assert np.allclose(e1.T @ x2 @ d_torus @ x1 @ e1, b @ d @ a)
    diag = np.diag(d_torus)
    assert np.all((diag >= 0) & (diag <= 1)) and np.allclose(d_torus, np.diag(diag))


@pytest.mark.parametrize("s1,s2", [((1, 1), (2, 2)), ((2, 2), (1, 1)), ((2, 1), (2, 2))])
def test_product_of_polyphase_symbols_is_the_norm_of_the_composition(s1, s2):
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 3, 2, 3))
    base = (3, 4)
    q2 = (1, 1)
    q1 = tuple(s * q for s, q in zip(s2, q2))  # phases of the middle value
    p_mid = tuple(b * q for b, q in zip(base, q1))
    p_in = tuple(p * s for p, s in zip(p_mid, s1))
    x1 = circular(w1, p_in, s1, (1, 1))
    x2 = circular(w2, p_mid, s2, (0, 1))
    exact = np.linalg.norm(x2 @ x1, 2)
    omega, _ = half_grid(base)
    o1, m1 = coarse_conv_taps(w1, s1, (1, 1), (1, 1), q1)
    o2, m2 = coarse_conv_taps(w2, s2, (1, 1), (0, 1), q2)
    prod = symbol(o2, m2, omega) @ symbol(o1, m1, omega)
    assert np.isclose(np.linalg.norm(prod, 2, axis=(1, 2)).max(), exact, rtol=1e-9)


def test_rows_to_symbol_preserves_the_gram_matrix():
    rng = np.random.default_rng(4)
    n, q, base = (3, 4), (2, 1), (2, 5)
    rows = rng.standard_normal((3, 2) + n)
    a = grid_rows_to_symbol(rows, n, q, base)
    _, weight = half_grid(base)
    gram = float(np.prod(base)) * np.einsum("f,frc,fsc->rs", weight, a, np.conj(a)).real
    flat = rows.reshape(3, -1)
    assert np.allclose(gram, flat @ flat.T)
