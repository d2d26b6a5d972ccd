"""The Lanczos + Cholesky certificate of a largest singular value, against exact SVDs.

Every ``upper`` must be >= the exact norm (float64 SVD of the same matrix) and
within 1e-5 of it; adversarial spectra (clusters, near-ties, rank one, extreme
scales, complex entries, a wrong estimate handed in) must not break either.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipaudit.bounds.certify import certified_top_singular, cholesky_certificate, gram64, lanczos_top
from lipaudit.bounds.dense import dense_bounds
from lipaudit.bounds.unfold import _f4_exact, f4_norm, unfoldings
from lipaudit.values import Kind


def _exact(mat: np.ndarray) -> float:
    return float(np.linalg.svd(mat, compute_uv=False)[0])


def _check(mat: np.ndarray, rtol: float = 1e-5, **kwargs) -> None:
    lower, upper, _ = certified_top_singular(mat, **kwargs)
    exact = _exact(mat)
    assert upper >= exact
    assert upper <= exact * (1 + rtol) + 1e-300
    assert lower <= exact * (1 + 1e-6)


def _with_spectrum(rng, m: int, n: int, s: np.ndarray) -> np.ndarray:
    U, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (U * s) @ V.T


@settings(max_examples=25, deadline=None, derandomize=True)
@given(m=st.integers(1, 90), n=st.integers(1, 90), seed=st.integers(0, 2**16), complex_=st.booleans())
def test_random_matrices(m, n, seed, complex_):
    rng = np.random.default_rng(seed)
    mat = rng.standard_normal((m, n))
    if complex_:
        mat = mat + 1j * rng.standard_normal((m, n))
    _check(mat)


@pytest.mark.parametrize("case", ["tie", "near_tie", "cluster", "rank_one", "flat", "tiny", "huge", "wide"])
def test_adversarial_spectra(case):
    rng = np.random.default_rng(7)
    n = 120
    s = np.linspace(1.0, 0.01, n)
    if case == "tie":
        s[:8] = 1.0  # top singular value of multiplicity 8
    elif case == "near_tie":
        s[1] = 1.0 - 1e-13
    elif case == "cluster":
        s = 1.0 - np.abs(rng.standard_normal(n)) * 1e-9  # every value within 1e-8 of the top
    elif case == "rank_one":
        s = np.zeros(n)
        s[0] = 3.0
    elif case == "flat":
        s = np.ones(n)  # an isometry: every Ritz value is exact, Lanczos breaks down at once
    mat = _with_spectrum(rng, 150, n, s)
    if case == "tiny":
        mat = mat * 1e-200
    elif case == "huge":
        mat = mat * 1e200  # the Gram matrix would overflow without the power-of-two scaling
    elif case == "wide":
        mat = mat.T
    _check(mat)


def test_a_wrong_estimate_never_gives_a_wrong_bound():
    rng = np.random.default_rng(3)
    s = np.linspace(2.0, 0.1, 60)
    mat = _with_spectrum(rng, 80, 60, s)
    # an estimate at the second singular value (Lanczos caught the wrong one): the Cholesky refuses it
    _check(mat, estimate=float(s[1] ** 2))
    _check(mat, estimate=1e-30)
    # an estimate far above only loosens the value; it stays a bound
    lower, upper, _ = certified_top_singular(mat, estimate=100.0)
    assert upper >= _exact(mat)


def test_cholesky_certificate_refuses_a_shift_below_the_top():
    rng = np.random.default_rng(4)
    mat = _with_spectrum(rng, 50, 40, np.linspace(1.0, 0.5, 40))
    A, err = gram64(mat)
    assert cholesky_certificate(A, err, 1.0 - 1e-9) is None
    bound = cholesky_certificate(A, err, 1.0 + 1e-9)
    assert bound is not None and 1.0 <= bound <= 1.0 + 1e-8


def test_zero_and_empty():
    assert certified_top_singular(np.zeros((5, 3)))[1] == 0.0
    assert certified_top_singular(np.zeros((0, 3)))[1] == 0.0


def test_lanczos_converges_on_a_clustered_unfolding():
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((300, 300))
    theta, vec = lanczos_top(mat)
    exact = _exact(mat)
    assert abs(np.sqrt(theta) / exact - 1) < 1e-6
    assert np.linalg.norm(mat @ vec) == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("shape", [(1, 96, 96, 3, 3), (2, 40, 96, 3, 3), (1, 300, 4, 3, 3)])
def test_f4_matches_exact_unfoldings(shape):
    rng = np.random.default_rng(sum(shape))
    k = rng.standard_normal(shape)
    exact, name = _f4_exact(list(unfoldings(k)), 3.0)
    value, _ = f4_norm(k)
    assert exact <= value <= exact * (1 + 1e-5)


@pytest.mark.parametrize("shape", [(600, 520), (520, 700)])
def test_dense_large_is_exact_and_never_frobenius(shape):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(shape).astype(np.float32)
    v = dense_bounds(w, ("tn", "fro"))
    exact = _exact(w.astype(np.float64))
    assert v["tn"].kind is Kind.EXACT and v["certified"].detail["from"] != "fro"
    assert exact <= v["certified"].value <= exact * (1 + 1e-4)
