"""One rule for default tolerances, by dtype.

Every solver in :mod:`aggregation` whose ``tol`` argument defaults to ``None``
resolves it with :func:`default_tol` applied to the dtype of the tensors it
*returns* (a half-precision game is computed in float32, but its equilibrium is
judged on the rounded profile that the caller receives):

===============  ==========
dtype            default tol
===============  ==========
float64          1e-9
float32          1e-5
float16          1e-2
bfloat16         3e-2
===============  ==========

The values sit about two orders of magnitude above what rounding to the dtype
leaves in a regret of a game with payoffs of order one (``eps^(2/3)`` rounded
up: float32's ``eps = 1.2e-7``, bfloat16's ``7.8e-3``), so that an exact solver's
answer is certified and a wrong one is not. Each solver's docstring says in
which units its tolerance is measured.

The scale-game solvers (:func:`aggregation.solve_scale_game`) measure it
relative to the game's payoff unit ``U = max_l a_l^2 / C_ll``
(:meth:`aggregation.ScaleGame.payoff_unit`): ``converged`` iff every present
player's regret, plus a bound on its rounding error in the dtype, is at most
``tol * U``, judged on the returned (rounded) profile. Scaling a game by any
factor leaves its verdict unchanged, and a profile whose regret cancellation
could hide is never certified. The convex aggregator's ``tol`` bounds its KKT
residual (gradient units; its weights are dimensionless).

A tolerance the caller passes must not lie below the resolution of that dtype,
``torch.finfo(dtype).eps`` (the rounding of a probability alone moves a regret
of a game with payoffs of order one by that much): :func:`resolve_tol` raises a
``ValueError`` that names the default to pass instead (``None``), or float64.
"""

from __future__ import annotations

import torch

from .validation import check_nonnegative, describe

__all__ = ["default_tol", "resolve_tol"]

_DEFAULTS = {
    torch.float64: 1e-9,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 3e-2,
}


def default_tol(dtype: torch.dtype) -> float:
    """The default regret / residual tolerance for results of dtype ``dtype``.

    Args:
        dtype: a floating-point ``torch.dtype`` (float64, float32, float16 or
            bfloat16).

    Returns:
        The tolerance of the table in this module's docstring.

    Raises:
        TypeError: ``dtype`` is not one of the four floating-point dtypes.
    """
    if dtype not in _DEFAULTS:
        raise TypeError(
            f"dtype must be one of torch.float64, float32, float16 or bfloat16; "
            f"received {describe(dtype)}"
        )
    return _DEFAULTS[dtype]


def resolve_tol(tol: float | None, dtype: torch.dtype, name: str = "tol") -> float:
    """The tolerance a solver uses: ``default_tol(dtype)`` for None, else ``tol`` checked.

    Args:
        tol: the caller's tolerance (payoff units, or the solver's documented
            units), or None for :func:`default_tol` of ``dtype``.
        dtype: the dtype of the returned tensors (a half-precision game's
            equilibrium is judged on the rounded profile the caller receives).
        name: the argument's name, for the error message.

    Returns:
        ``tol`` as a float.

    Raises:
        TypeError: ``tol`` is not a number, or ``dtype`` not a floating dtype.
        ValueError: ``tol < 0``, or ``tol < torch.finfo(dtype).eps``: no profile
            rounded to ``dtype`` can be certified that finely.
    """
    default = default_tol(dtype)
    if tol is None:
        return default
    tol = check_nonnegative(tol, name)
    resolution = torch.finfo(dtype).eps
    if tol < resolution:
        raise ValueError(
            f"{name}={tol:g} lies below the resolution of {dtype} results "
            f"(machine epsilon {resolution:.3g}); pass {name}=None for the default "
            f"{default:g}, a value >= {resolution:.3g}, or cast the game to torch.float64"
        )
    return tol
