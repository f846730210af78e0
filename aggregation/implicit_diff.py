"""Implicit differentiation of batched roots and fixed points (one mechanism for all solvers).

A solver finds ``z*(theta)`` with ``F(z*, theta) = 0`` for an *optimality
function* ``F``. By the implicit function theorem, where ``J = dF/dz`` is
invertible,

    dz*/dtheta = -J^{-1} dF/dtheta,   so for a cotangent v:
    theta_bar = -(dF/dtheta)^T u   with   J^T u = v.

:func:`implicit_root` attaches a solution found *without* a graph (under
``torch.no_grad``) to the parameters' graph: the forward pass costs nothing
extra, and the backward pass solves the linear system ``J^T u = v`` exactly,
batched (``torch.linalg.solve_ex`` by default, or a caller-supplied solver such
as the unrolled small-matrix elimination of :mod:`aggregation.small_linalg`),
then takes one vector-Jacobian product of ``F`` with respect to the parameters.
The backward pass is itself built from differentiable operations (with
``torch.func`` for the partial derivatives at fixed ``z``), so second
derivatives (``gradgradcheck``) are exact as well.

A fixed point ``z = T(z, theta)`` is the root of ``F = z - T`` (then
``J = I - dT/dz``): :func:`implicit_fixed_point`. The decorators
:func:`custom_root` and :func:`custom_fixed_point` wrap a solver function, in
the manner of jaxopt's ``custom_root`` / ``custom_fixed_point``.

Contract on ``F``: batch-separable. ``z`` has shape ``(*batch, n)`` and
``F(z, *params)`` has shape ``(*batch, n)``, where row ``b`` of ``F`` depends on
row ``b`` of ``z`` only (parameters may broadcast across the batch). That makes
``J`` block diagonal, one ``n x n`` block per batch element, which is how it is
formed (n vector-Jacobian products) and solved.

Failure handling: batch elements whose system is singular (or whose solution
is not finite), and elements the caller marks invalid (``valid=False``,
typically an unconverged solver), get a **zero** gradient, never NaN; one
``RuntimeWarning`` per backward call says how many elements were affected.

References: Krantz & Parks, *The Implicit Function Theorem* (2002); Blondel et
al., "Efficient and modular implicit differentiation", NeurIPS 2022 (jaxopt);
Bai, Kolter & Koltun, "Deep equilibrium models", NeurIPS 2019 (torchdeq).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .validation import describe

__all__ = [
    "custom_fixed_point",
    "custom_root",
    "dense_solve",
    "implicit_fixed_point",
    "implicit_root",
    "jacobian_rows",
    "sum_to_shape",
]

OptimalityFn = Callable[..., Tensor]
LinearSolve = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor]"]
FusedBackward = Callable[..., "tuple[tuple[Tensor | None, ...], Tensor]"]


def sum_to_shape(g: Tensor, shape: torch.Size) -> Tensor:
    """Reduce a gradient ``g`` computed at a broadcast shape to ``shape`` (autograd's rule).

    For ``fused_backward`` kernels, whose parameters may broadcast across the batch
    (for example :func:`aggregation.scale.active_set.fused_backward`).
    """
    if g.shape == shape:
        return g
    lead = g.dim() - len(shape)
    g = g.sum(tuple(range(lead))) if lead else g
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(dims, keepdim=True) if dims else g


def dense_solve(J: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``J^T u = v`` batched with LU and partial pivoting.

    Args:
        J: ``(*batch, n, n)``; v: ``(*batch, n)``.

    Returns:
        ``(u, ok)``: ``u`` ``(*batch, n)`` (zero where not ok), ``ok`` ``(*batch,)``
        False where ``J`` is singular or the solution is not finite.
    """
    u, info = torch.linalg.solve_ex(J.mT, v.unsqueeze(-1))
    u = u.squeeze(-1)
    ok = (info == 0) & torch.isfinite(u).all(-1)
    return torch.where(ok.unsqueeze(-1), u, torch.zeros_like(u)), ok


def jacobian_rows(fn: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """``(*batch, n, n)`` Jacobian of a batch-separable ``fn`` at ``z`` ``(*batch, n)``.

    Row ``i`` is one vector-Jacobian product with the one-hot cotangent ``e_i``
    broadcast over the batch (valid because ``fn`` is batch-separable). Built
    with ``torch.func.vjp``, so the result stays differentiable with respect to
    anything ``fn`` closes over (and ``z``).
    """
    n = z.shape[-1]
    vjp = torch.func.vjp(fn, z)[1]
    eye = torch.eye(n, dtype=z.dtype, device=z.device)
    rows = [vjp(eye[i].expand_as(z))[0] for i in range(n)]
    return torch.stack(rows, dim=-2)


def _warn(name: str, bad: int, total: int) -> None:
    warnings.warn(
        f"implicit differentiation ({name}): {bad} of {total} batch elements have a "
        "singular linearised optimality system or did not converge; their gradients "
        "are set to zero",
        RuntimeWarning,
        stacklevel=4,
    )


class _Spec:
    """The pieces of one implicit function (kept off the autograd tape)."""

    def __init__(
        self,
        optimality_fn: OptimalityFn,
        jacobian_fn: Callable[..., Tensor] | None,
        linear_solve: LinearSolve | None,
        valid: Tensor | None,
        name: str,
        fused_backward: FusedBackward | None = None,
    ) -> None:
        self.optimality_fn = optimality_fn
        self.jacobian_fn = jacobian_fn
        self.linear_solve = linear_solve or dense_solve
        self.valid = valid
        self.name = name
        self.fused_backward = fused_backward


class _ImplicitRoot(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, spec: _Spec, z: Tensor, *params: Tensor) -> Tensor:
        out = z.detach().clone()
        ctx.spec = spec
        ctx.num_params = len(params)
        ctx.save_for_backward(out, *params)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        spec: _Spec = ctx.spec
        z, *params = ctx.saved_tensors
        wanted = [i for i, p in enumerate(params) if ctx.needs_input_grad[2 + i]]
        if spec.fused_backward is not None and not torch.is_grad_enabled():
            # first-order only (no create_graph): the solver's own fused kernel
            v = grad
            if spec.valid is not None:
                v = v * spec.valid.unsqueeze(-1).to(v.dtype)
            fused, ok = spec.fused_backward(z, v, *params)
            if spec.valid is not None:
                ok = ok & spec.valid
            if not bool(ok.all()):
                _warn(spec.name, int((~ok).sum()), ok.numel())
            return (None, None, *[g if i in wanted else None for i, g in enumerate(fused)])
        if spec.jacobian_fn is not None:
            J = spec.jacobian_fn(z, *params)  # (*batch, n, n)
        else:
            J = jacobian_rows(lambda z_: spec.optimality_fn(z_, *params), z)
        batch = torch.broadcast_shapes(J.shape[:-2], grad.shape[:-1])
        J = J.expand(*batch, *J.shape[-2:])
        v = grad.expand(*batch, grad.shape[-1])
        u, ok = spec.linear_solve(J, v)  # (*batch, n), (*batch,)
        ok = ok & torch.isfinite(u).all(-1)
        if spec.valid is not None:
            ok = ok & spec.valid
        if not bool(ok.all()):
            _warn(spec.name, int((~ok).sum()), ok.numel())
            u = torch.where(ok.unsqueeze(-1), u, torch.zeros_like(u))
        grads: list[Tensor | None] = [None] * len(params)
        if wanted:

            def partial(*chosen: Tensor) -> Tensor:
                full = list(params)
                for i, p in zip(wanted, chosen):
                    full[i] = p
                return spec.optimality_fn(z, *full)

            vjp = torch.func.vjp(partial, *[params[i] for i in wanted])[1]
            for i, g in zip(wanted, vjp(-u)):
                grads[i] = g
        return (None, None, *grads)


def _check_params(params: Sequence[Any]) -> tuple[Tensor, ...]:
    out = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(
                f"params[{i}] must be a tensor (close over non-tensor arguments in the "
                f"optimality function instead); received {describe(p)}"
            )
        out.append(p)
    return tuple(out)


def implicit_root(
    optimality_fn: OptimalityFn,
    solution: Tensor,
    params: Sequence[Tensor],
    *,
    jacobian_fn: Callable[..., Tensor] | None = None,
    linear_solve: LinearSolve | None = None,
    valid: Tensor | None = None,
    name: str = "implicit_root",
    fused_backward: FusedBackward | None = None,
) -> Tensor:
    """Attach a root ``z*`` of ``F(z, *params) = 0`` to the graph of ``params``.

    The returned tensor equals ``solution``; its gradient with respect to each
    parameter is given by the implicit function theorem,
    ``theta_bar = -(dF/dtheta)^T J^{-T} v`` with ``J = dF/dz`` at the solution.

    Args:
        optimality_fn: ``F(z, *params) -> (*batch, n)``, batch-separable (see
            the module docstring). Must be built from differentiable torch ops.
        solution: ``(*batch, n)``, a root found by any solver (its graph, if any,
            is ignored).
        params: tensors ``F`` depends on; those with ``requires_grad`` receive
            gradients (reduced to their own, possibly broadcast, shapes).
        jacobian_fn: optional ``(z, *params) -> (*batch, n, n)``, ``dF/dz`` in
            closed form (faster than the default: n autograd products).
        linear_solve: optional ``(J, v) -> (u, ok)`` solving ``J^T u = v``; the
            default is :func:`dense_solve` (LU with partial pivoting).
        valid: optional ``(*batch,)`` bool; elements with False get zero gradient
            (for example, where the forward solver did not converge).
        name: used in the warning.
        fused_backward: optional first-order fast path
            ``(z, v, *params) -> (grads, ok)`` returning the parameter gradients
            ``-(dF/dtheta)^T J^{-T} v`` (one per parameter, in its shape; zero
            contribution from elements with ``ok`` False) computed in one fused
            kernel. Used only when no graph of the backward pass is requested
            (``create_graph=False``); the generic path above stays the reference
            and serves higher-order derivatives.

    Returns:
        ``(*batch, n)`` tensor equal to ``solution``, differentiable with
        respect to ``params`` (and twice differentiable, if ``F``,
        ``jacobian_fn`` and ``linear_solve`` are).
    """
    if not isinstance(solution, Tensor):
        raise TypeError(f"solution must be a tensor; received {describe(solution)}")
    if solution.dim() < 1:
        raise ValueError(f"solution must have shape (*batch, n); received {describe(solution)}")
    params = _check_params(params)
    if valid is not None and valid.shape != solution.shape[:-1]:
        raise ValueError(
            f"valid must have the solution's batch shape {tuple(solution.shape[:-1])}; "
            f"received {describe(valid)}"
        )
    if not torch.is_grad_enabled() or not any(p.requires_grad for p in params):
        return solution.detach()
    spec = _Spec(optimality_fn, jacobian_fn, linear_solve, valid, name, fused_backward)
    return _ImplicitRoot.apply(spec, solution.detach(), *params)


def implicit_fixed_point(
    map_fn: Callable[..., Tensor],
    solution: Tensor,
    params: Sequence[Tensor],
    **kwargs: Any,
) -> Tensor:
    """Attach a fixed point ``z* = T(z*, *params)`` to the graph of ``params``.

    Same as :func:`implicit_root` with ``F(z, theta) = z - T(z, theta)``, so the
    backward pass solves ``(I - dT/dz)^T u = v``. Keyword arguments are passed on.
    """

    def optimality(z: Tensor, *theta: Tensor) -> Tensor:
        return z - map_fn(z, *theta)

    return implicit_root(optimality, solution, params, **kwargs)


def custom_root(
    optimality_fn: OptimalityFn,
    *,
    jacobian_fn: Callable[..., Tensor] | None = None,
    linear_solve: LinearSolve | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator: make ``solver(*params, **options) -> z`` implicitly differentiable.

    The decorated solver runs under ``torch.no_grad``; its output is attached
    to the graph of its positional tensor arguments by :func:`implicit_root`.

    Example:
        >>> import torch
        >>> def F(z, a):  # root of z**3 + z - a
        ...     return z**3 + z - a
        >>> @custom_root(F)
        ... def cubic_root(a, steps=60):
        ...     z = torch.zeros_like(a)
        ...     for _ in range(steps):
        ...         z = z - F(z, a) / (3 * z**2 + 1)
        ...     return z
        >>> a = torch.tensor([[2.0]], requires_grad=True)
        >>> cubic_root(a).backward()
        >>> round(float(a.grad), 4)  # dz/da = 1 / (3 z^2 + 1) at z = 1
        0.25
    """

    def decorate(solver: Callable[..., Tensor]) -> Callable[..., Tensor]:
        label = name or str(getattr(solver, "__name__", "custom_root"))

        @functools.wraps(solver)
        def wrapped(*params: Tensor, **options: Any) -> Tensor:
            with torch.no_grad():
                z = solver(*params, **options)
            return implicit_root(
                optimality_fn,
                z,
                params,
                jacobian_fn=jacobian_fn,
                linear_solve=linear_solve,
                name=label,
            )

        return wrapped

    return decorate


def custom_fixed_point(
    map_fn: Callable[..., Tensor], **kwargs: Any
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator: like :func:`custom_root` for a solver of ``z = T(z, *params)``."""

    def optimality(z: Tensor, *theta: Tensor) -> Tensor:
        return z - map_fn(z, *theta)

    return custom_root(optimality, **kwargs)
