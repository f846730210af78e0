"""project_simplex: closed forms, optimality, its Jacobian, masks, dtypes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.autograd import gradcheck, gradgradcheck

from aggregation import project_simplex

D = torch.float64


def test_known_projections():
    v = torch.tensor([[0.5, 1.5, -1.0], [0.2, 0.2, 0.2], [1.0, 1.0, 0.0], [3.0, 0.0, 0.0]], dtype=D)
    expected = torch.tensor(
        [[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=D
    )
    torch.testing.assert_close(project_simplex(v), expected)
    assert project_simplex(torch.tensor([7.0])).tolist() == [1.0]


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, (6, 5), elements=st.floats(-5, 5)))
def test_projection_is_the_nearest_point(v_np):
    v = torch.from_numpy(v_np)
    w = project_simplex(v)
    assert bool((w >= 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(6, dtype=D))
    # optimality: <v - w, u - w> <= 0 for every vertex u of the simplex
    for k in range(5):
        u = torch.zeros(5, dtype=D)
        u[k] = 1
        assert bool((((v - w) * (u - w)).sum(-1) <= 1e-10).all())


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, (5,), elements=st.floats(-3, 3)))
def test_jacobian_is_diag_s_minus_ss_over_support_size(v_np):
    v = torch.from_numpy(v_np)
    w = project_simplex(v)
    s = (w > 0).to(D)
    J = torch.autograd.functional.jacobian(project_simplex, v)
    torch.testing.assert_close(J, torch.diag(s) - torch.outer(s, s) / s.sum())


def test_gradcheck_batched_and_masked():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4, 5, generator=g, dtype=D, requires_grad=True)
    mask = torch.rand(4, 5, generator=g) > 0.4
    mask[:, 0] = True
    assert gradcheck(project_simplex, (v,))
    assert gradgradcheck(project_simplex, (v,))
    assert gradcheck(lambda v: project_simplex(v, mask), (v,))


def test_mask_projects_onto_the_present_entries():
    v = torch.tensor([[2.0, 5.0, 1.0], [0.0, 0.0, 0.0]], dtype=D)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    w = project_simplex(v, mask)
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=D))
    # the same as projecting the present entries alone
    torch.testing.assert_close(w[0, [0, 2]], project_simplex(v[0, [0, 2]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(dtype):
    v = torch.tensor([0.3, 0.9, -0.2]).to(dtype)
    w = project_simplex(v)
    assert w.dtype == dtype
    torch.testing.assert_close(
        w.double(), torch.tensor([0.2, 0.8, 0.0], dtype=D), atol=1e-2, rtol=0
    )


def test_bad_input():
    with pytest.raises(ValueError, match="v must be finite"):
        project_simplex(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="v must have at least 1 dimensions"):
        project_simplex(torch.tensor(1.0))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        project_simplex(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="mask must broadcast"):
        project_simplex(torch.ones(3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must leave at least one"):
        project_simplex(torch.ones(3), torch.zeros(3, dtype=torch.bool))
