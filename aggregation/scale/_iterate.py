"""The loop shared by the iterative scale-game solvers.

An iterative method is a map ``state -> state`` on tensors of shape ``(B, L)``
(plus an iteration counter). The loop runs it on the whole flattened batch,
checks the certificate every ``check_every`` steps, records for each element
the first check at which it is certified (:func:`aggregation.scale._common.certify`)
or found diverged (then it is stopped, replaced by the documented fallback
``x = 0`` and reported in ``info["diverged"]``), and stops when every element
is done or after ``max_iter`` steps. Converged elements keep iterating
with the others (their profile only gets closer), so the loop has no per-element
control flow and can be unrolled by autograd.

With ``backward="unrolled"`` the loop is re-run with a graph from the same
start (same number of steps), so autograd differentiates through every step;
with ``"implicit"`` (the default) the profile is attached through the KKT
conditions on the active set ``S = {l : x_l > (C x - a)_l}`` (the natural-map
active set, which for a converged iterate is ``{l : x_l > 0}`` up to damping
residue), see :mod:`aggregation.scale._common`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._common import Prepared, certify, check_options, finish, prepare, wants_grad
from .game import ScaleGame, others_sum
from .result import ScaleGameResult

__all__ = ["run_iterative"]

# step(x, state, a, C, t) -> (x, state); state is a tuple of tensors (method specific)
Step = Callable[[Tensor, tuple, Tensor, Tensor, int], "tuple[Tensor, tuple]"]
Init = Callable[[Tensor, Tensor], "tuple[Tensor, tuple]"]


def _loop(
    step: Step,
    init: Init,
    a: Tensor,
    C: Tensor,
    check: Callable[[Tensor], tuple[Tensor, Tensor]] | None,
    max_iter: int,
    check_every: int,
    fixed_steps: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the iteration; returns ``x (B, L)``, ``first (B,)`` iterations, ``steps`` run.

    ``check(x) -> (converged (B,), diverged (B,))`` runs every ``check_every``
    steps (not with ``fixed_steps``). An element is done at its first check that
    certifies it, or that finds it diverged (not finite, or beyond the range the
    dtype resolves: it is stopped there, and the result reports it).

    Batch invariance (without ``fixed_steps``): an element's returned profile is
    its iterate at its own first passing check (or at ``max_iter``), so it does
    not depend on how long the other elements of the batch take to converge.
    """
    x, state = init(a, C)
    B = x.shape[0]
    first = torch.full((B,), max_iter, dtype=torch.int64, device=x.device)
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    x_first = x
    total = fixed_steps if fixed_steps is not None else max_iter
    t = 0
    while t < total:
        x, state = step(x, state, a, C, t)
        t += 1
        if check is not None and fixed_steps is None and (t % check_every == 0 or t == total):
            with torch.no_grad():
                converged, diverged = check(x.detach())
                now = converged | diverged
                first = torch.where(now & ~done, torch.full_like(first, t), first)
                x_first = torch.where((now & ~done).unsqueeze(-1), x, x_first)
                done = done | now
            if bool(done.all()):
                break
    if fixed_steps is None:
        x = torch.where(done.unsqueeze(-1), x_first, x)
    return x, first, torch.tensor(t)


def run_iterative(
    game: ScaleGame,
    method: str,
    step: Step,
    init: Init,
    *,
    tol: float | None,
    max_iter: int | None,
    default_iter: int,
    check_every: int,
    differentiable: bool,
    backward: str,
    info: dict[str, Tensor] | None = None,
    prep: Prepared | None = None,
) -> ScaleGameResult:
    """Solve with an iterative ``step`` and assemble the result (see module docstring)."""
    prep = prep or prepare(game, tol)
    iters = check_options(method, backward, differentiable, max_iter, default_iter)
    a, C, present = prep.a, prep.C, prep.present

    def check(x: Tensor) -> tuple[Tensor, Tensor]:
        cert = certify(prep, x)
        return cert.converged, cert.diverged

    with torch.no_grad():
        x, first, steps = _loop(step, init, a, C, check, iters, check_every, None)
    grad = wants_grad(game, differentiable)
    x_graph = None
    if grad and backward == "unrolled":
        a_g, C_g = game.effective(prep.dtype)
        a_g = a_g.expand(*prep.batch, prep.L).reshape(-1, prep.L)
        C_g = C_g.expand(*prep.batch, prep.L, prep.L).reshape(-1, prep.L, prep.L)
        x_graph, _, _ = _loop(step, init, a_g, C_g, None, iters, check_every, int(steps))
    with torch.no_grad():
        w = C.diagonal(dim1=-2, dim2=-1) * x - (a - others_sum(C, x))  # C x - a
        support = present & (x > w)
    return finish(prep, x, support, first, method, x_graph=x_graph, grad=grad, info=info)
