from __future__ import annotations

import numpy as np
import pytest
import torch

from lipaudit.bounds import bn_norm, bn_scale, dense_bounds, fold_bn_into_dense
from lipaudit.values import Kind
from tests.bruteforce import dense_norm


def test_dense_exact_against_jacobian():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((7, 11))
    truth = dense_norm(lambda x: x @ torch.as_tensor(w).T, (1, 11))
    v = dense_bounds(w)
    assert v["tn"].kind is Kind.EXACT and v["tn"].value == pytest.approx(truth, rel=1e-5)
    assert v["certified"].value >= truth and v["fro"].value >= truth


def test_dense_bn_fold_against_jacobian():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 6))
    s_after = bn_scale(rng.standard_normal(5), rng.uniform(0.5, 2, 5), 1e-5)
    s_before = bn_scale(rng.standard_normal(6), rng.uniform(0.5, 2, 6), 1e-5)
    W = torch.as_tensor(w)
    truth_after = dense_norm(lambda x: (x @ W.T) * torch.as_tensor(s_after), (1, 6))
    truth_before = dense_norm(lambda x: (x * torch.as_tensor(s_before)) @ W.T, (1, 6))
    assert dense_bounds(fold_bn_into_dense(w, s_after, side="after"))["tn"].value == pytest.approx(truth_after, rel=1e-5)
    assert dense_bounds(fold_bn_into_dense(w, s_before, side="before"))["tn"].value == pytest.approx(truth_before, rel=1e-5)


def test_bn_alone_is_diagonal():
    scale = bn_scale(np.array([2.0, -3.0]), np.array([3.0, 8.0]), 1.0)  # 2/2, -3/3
    r = bn_norm(scale)
    assert r.kind is Kind.EXACT and r.value == pytest.approx(1.0, rel=1e-5)


def test_bn_scale_uses_sqrt_and_eps():
    assert bn_scale([1.0], [3.0], 1.0)[0] == pytest.approx(0.5)


def test_dense_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        dense_bounds(np.array([[np.nan, 1.0]]))
