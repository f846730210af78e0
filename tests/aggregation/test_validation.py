"""The boundary checks every public entry point relies on."""

import numpy as np
import pytest
import torch

import aggregation.validation as validation
from aggregation.validation import (
    all_finite,
    as_tensor,
    check_choice,
    check_finite,
    check_float_dtype,
    check_int,
    check_nonnegative,
    check_positive,
    check_real,
    compute_dtype,
)


def test_lists_and_integers_are_promoted_to_float64():
    t = as_tensor([[1, 2], [3, 4]], "payoffs")
    assert t.dtype == torch.float64
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    t = as_tensor(np.array([1, 2], dtype=np.int32), "payoffs")
    assert t.dtype == torch.float64
    t = as_tensor(torch.tensor([1, 2]), "payoffs")
    assert t.dtype == torch.get_default_dtype()


def test_floating_tensors_keep_their_dtype_and_are_not_copied_in_place():
    x = torch.tensor([1.0, 2.0], dtype=torch.float16)
    t = as_tensor(x, "v")
    assert t.dtype == torch.float16
    assert compute_dtype(t.dtype) == torch.float32
    assert compute_dtype(torch.bfloat16) == torch.float32
    assert compute_dtype(torch.float64) == torch.float64


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [float("inf"), 0.0]])
def test_non_finite_entries_are_rejected_with_the_argument_name(bad):
    with pytest.raises(ValueError, match="payoffs must be finite"):
        as_tensor(bad, "payoffs")


def test_ragged_lists_are_rejected():
    with pytest.raises(ValueError, match="payoffs must be a rectangular"):
        as_tensor([[1, 2], [3]], "payoffs")


def test_non_numeric_and_complex_inputs_are_type_errors():
    with pytest.raises(TypeError, match="payoffs must hold numbers"):
        as_tensor([["a", "b"]], "payoffs")
    with pytest.raises(TypeError, match="payoffs must be a tensor"):
        as_tensor({"a": 1}, "payoffs")
    with pytest.raises(TypeError, match="payoffs must be real"):
        as_tensor(torch.tensor([1 + 1j]), "payoffs")


def test_too_few_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        as_tensor([1.0, 2.0], "A", min_dim=2)


def test_scalar_checks_name_the_argument():
    assert check_nonnegative(0, "tol") == 0.0
    with pytest.raises(ValueError, match="tol must be a finite number >= 0; received -1"):
        check_nonnegative(-1, "tol")
    with pytest.raises(TypeError, match="tol must be a real number"):
        check_nonnegative("1e-6", "tol")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        check_positive(0.0, "temperature")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        check_positive(float("inf"), "temperature")
    assert check_int(np.int64(5), "iterations") == 5
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        check_int(0, "iterations")
    with pytest.raises(TypeError, match="iterations must be an integer"):
        check_int(2.5, "iterations")
    with pytest.raises(TypeError, match="iterations must be an integer"):
        check_int(True, "iterations")
    with pytest.raises(ValueError, match="mode must be one of"):
        check_choice("fast", "mode", ["classic", "smooth"])


def test_real_numbers_and_float_dtypes():
    assert check_real(3, "stake") == 3.0 and isinstance(check_real(3, "stake"), float)
    assert check_real(-0.5, "stake") == -0.5
    with pytest.raises(TypeError, match="stake must be a real number; received bool"):
        check_real(True, "stake")
    with pytest.raises(TypeError, match="stake must be a real number"):
        check_real("1", "stake")
    with pytest.raises(ValueError, match="stake must be finite; received inf"):
        check_real(float("inf"), "stake")
    assert check_float_dtype(None) == torch.get_default_dtype()
    assert check_float_dtype(torch.float16) == torch.float16
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        check_float_dtype(torch.int64)
    with pytest.raises(TypeError, match="out_dtype must be a floating-point"):
        check_float_dtype("float32", "out_dtype")


def test_the_public_module_documents_every_helper():
    doc = validation.__doc__
    for name in validation.__all__:
        helper = getattr(validation, name)
        assert helper.__doc__, f"{name} has no docstring"
        assert f":func:`{name}`" in doc, f"the module docstring does not say what {name} checks"


def test_all_finite_reads_overflowing_sums_and_every_tensor():
    big = torch.full((4,), 3e38)  # finite entries whose float32 sum overflows to inf
    assert all_finite(big) and all_finite(big, torch.zeros(0), torch.arange(3))
    for bad in (float("nan"), float("inf"), -float("inf")):
        t = big.clone()
        t[2] = bad
        assert not all_finite(t)
        assert not all_finite(torch.ones(3), t)  # the second tensor is read too
        with pytest.raises(ValueError, match="x must be finite"):
            check_finite(t, "x")
