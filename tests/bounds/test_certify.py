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


@pytest.mark.parametrize("case", ["random", "clustered_frequencies", "one_outlier", "real"])
def test_stack_max_against_exact(case):
    from lipaudit.bounds.linalg import stack_max_singular

    rng = np.random.default_rng(11)
    b, m, n = 40, 60, 50
    mats = rng.standard_normal((b, m, n)) + 1j * rng.standard_normal((b, m, n))
    if case == "clustered_frequencies":
        # every matrix has the same spectrum up to 1e-9: the shared shift must hold for all of them
        s = np.linspace(1.0, 0.2, n)
        mats = np.stack([_with_spectrum(rng, m, n, s * (1 - 1e-9 * i)) for i in range(b)]).astype(np.complex128)
    elif case == "one_outlier":
        mats[17] *= 1.5  # the estimate's ranking must not miss it
    elif case == "real":
        mats = mats.real.copy()
    exact = max(_exact(a) for a in mats)
    value = stack_max_singular(mats)
    assert exact <= value <= exact * (1 + 1e-5)


def test_stack_max_when_estimates_miss_the_top(monkeypatch):
    # without power steps the estimates rank flat spectra first; the spike (top 1.3, rest tiny) is
    # not among the likeliest, so its Cholesky at the shared shift must fail and it is solved exactly
    import lipaudit.bounds.certify as certify

    exact_solves = []
    original = certify._certify_stack

    def spy(A, errs, mu2):
        if A.shape[0] == 1:
            exact_solves.append(1)
        return original(A, errs, mu2)

    monkeypatch.setattr(certify, "_certify_stack", spy)
    rng = np.random.default_rng(12)
    flat = [_with_spectrum(rng, 70, 60, np.full(60, 1.0)) for _ in range(11)]
    spike = _with_spectrum(rng, 70, 60, np.r_[1.3, np.full(59, 0.01)])
    mats = np.stack(flat[:5] + [spike] + flat[5:])
    value = certify.stack_cholesky_bounds(mats, 1e-6, power_steps=0)
    assert 1.3 <= value <= 1.3 * (1 + 1e-5)
    assert exact_solves  # the failure path ran
