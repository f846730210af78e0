"""The logit quantal response equilibrium, traced toward a Nash equilibrium, batched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumResult, warn_not_converged
from ...tolerance import resolve_tol
from ...validation import as_tensor, check_int, check_nonnegative, check_positive
from .._nplayer_common import finish, payoff_ranges, prepare
from .._nplayer_multilinear import Multilinear, first_max_one_hot, own_first
from ..game import payoff_action_values, payoff_regret
from ._nplayer_homotopy import Layout, softmax_profile, trace_branch
from ._nplayer_polish import guess_support, polish_support

__all__ = ["QuantalResponseResult", "logit_qre", "logit_qre_at"]


def logit_qre(
    game: Any,
    tol: float | None = None,
    max_lambda: float = 1e8,
    max_steps: int = 2000,
    first_step: float = 0.1,
    polish_from: float | None = 1000.0,
) -> EquilibriumResult:
    """A Nash equilibrium as the limit of the logit quantal response equilibria.

    The logit QRE at precision ``lambda`` solves the fixed point

        ``sigma_i = softmax(lambda_i * v_i(sigma_-i))``  for every player i,

    with ``v_i(a) = u_i(a, sigma_-i)``. At ``lambda = 0`` it is the centroid;
    as ``lambda -> infinity`` the principal branch of QREs converges to a
    Nash equilibrium (McKelvey & Palfrey 1995; the "tracing procedure" of
    Turocy 2005). Player i's precision is ``lambda_i = lambda / R_i`` with
    ``R_i = max P_i - min P_i`` its payoff range, so ``lambda`` is
    dimensionless and the whole trace is invariant under positive affine
    changes of each player's payoffs.

    Algorithm (batched over games, finished games dropped from the working
    set): arclength continuation of the branch in ``(log-odds, lambda)``
    with an Euler predictor, Newton correctors, step-length control and an
    orientation test that rejects steps jumping over a fold (see
    ``_nplayer_homotopy``). Once ``lambda >= polish_from`` (and then
    whenever ``lambda`` has grown by 25%), the limit's support is guessed
    from the branch's slope (an action whose log-odds keep falling like
    ``-lambda * gap`` is outside it) and the indifference conditions on that
    support are solved by Newton steps (damped where singular); the polished
    profile is accepted only if it lies on the simplex and its regret is
    ``<= tol``; failing that, the pure profile of the QRE's most likely
    actions (the limit, when it is pure, in nearly degenerate games), and
    then the QRE itself, are accepted if their regret is ``<= tol``.
    Otherwise the trace continues up to ``max_lambda``. The default
    ``polish_from = 1000`` is late enough that the polished equilibrium was
    the branch's limit on all of 2,000 random 3x3x3 games (at 30, about 3%
    were another, nearby equilibrium); ``polish_from=None`` disables
    polishing (pure tracing, stopping once the QRE's regret is ``<= tol``,
    checked from ``lambda = 1``), which is what Gambit's ``logit_solve`` does.

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``. Use float64 for ``tol < 1e-5``.
        tol: regret tolerance (payoff units) that ``converged`` refers to;
            None means :func:`~aggregation.default_tol` of the game's dtype
            (1e-9 for float64, 1e-5 for float32).
        max_lambda: the largest (dimensionless) precision traced. Nearly
            degenerate games (payoff gaps ~1e-6 of the range) need ~1e6.
        max_steps: the largest number of predictor-corrector steps.
        first_step: the first arclength step.
        polish_from: the (dimensionless) precision from which polishing is
            tried, or None for no polishing.

    Returns:
        An :class:`~aggregation.EquilibriumResult`: the polished equilibrium
        where polishing succeeded, else the QRE at the last precision
        reached; ``converged`` iff ``max_i regret_i <= tol``; ``iterations``
        the continuation steps; ``residual`` the last Newton correction of the
        trace; ``info["lambda"]`` ``(*batch, N)`` the raw precisions
        ``lambda_i`` reached (so ``logit_qre_at(game, info["lambda"])``
        recomputes the last QRE), ``info["polished"]`` and
        ``info["failed"]`` (the step length collapsed: the branch could not be
        followed) per game.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, logit_qre
        >>> P = torch.tensor([[[3., 0.], [5., 1.]], [[3., 5.], [0., 1.]]], dtype=torch.float64)
        >>> out = logit_qre(NormalFormGame(P, num_players=2))  # the prisoner's dilemma
        >>> bool(out.converged), out.strategies[0].tolist(), out.strategies[1].tolist()
        (True, [0.0, 1.0], [0.0, 1.0])

    References:
        McKelvey & Palfrey (1995), "Quantal response equilibria for normal
        form games", GEB; Turocy (2005), "A dynamic homotopy interpretation of
        the logistic quantal response equilibrium correspondence", GEB;
        Allgower & Georg (1990), *Numerical Continuation Methods*.
    """
    max_lambda = check_positive(max_lambda, "max_lambda")
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    first_step = check_positive(first_step, "first_step")
    if polish_from is not None:
        polish_from = check_nonnegative(polish_from, "polish_from")
    prep = prepare(game)
    tol = resolve_tol(tol, prep.dtype)
    n, size, dtype = prep.n, prep.size, prep.cdtype
    layout = Layout(prep.actions)
    ranges = payoff_ranges(prep)  # (B, N)
    shape = (size, n) + (1,) * n
    scaled = prep.payoffs / ranges.reshape(shape)  # (B, N, *A), each player's range 1
    own = Multilinear(prep.actions, own_first(scaled))
    was_polished = torch.zeros(size, dtype=torch.bool, device=prep.device)

    def stop(ids: Tensor, d: Tensor, lam: Tensor, slope: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Polish (batch-last inputs); else accept QREs that are already tol-Nash."""
        sigma = softmax_profile(layout, d)  # N x (A_i, s)
        profile = [p.T for p in sigma]  # N x (s, A_i)
        good = payoff_regret(prep.payoffs[ids], profile, n).amax(-1) <= tol  # (s,)
        if polish_from is None:
            return good, profile
        support = guess_support(layout, d, lam, slope)
        polished, _, ok = polish_support(layout, own.index(ids), sigma, support)
        polished = [p.T for p in polished]
        ok &= payoff_regret(prep.payoffs[ids], polished, n).amax(-1) <= tol
        # near-degenerate games: an action whose gap is below ~1/lambda still looks
        # supported; if the limit is pure, the QRE's modal actions already are it
        modal = [first_max_one_hot(p).T for p in sigma]  # N x (s, A_i)
        pure = ~ok & (payoff_regret(prep.payoffs[ids], modal, n).amax(-1) <= tol)
        polished = [torch.where(pure[:, None], q, p) for p, q in zip(polished, modal)]
        ok |= pure
        profile = [torch.where(ok[:, None], q, p) for p, q in zip(profile, polished)]
        was_polished[ids[ok]] = True
        return good | ok, profile

    lam_end = torch.full((size,), max_lambda, dtype=dtype, device=prep.device)
    out = trace_branch(
        scaled,
        layout,
        lam_end,
        max_steps,
        first_step=first_step,
        polish=stop,
        polish_from=1.0 if polish_from is None else polish_from,
    )
    sigma = [out.sigma[:, o : o + a] for o, a in zip(layout.offsets, layout.actions)]
    info = {
        "lambda": out.lam[:, None] / ranges,
        "polished": was_polished,
        "failed": out.failed,
    }
    converged = torch.ones(size, dtype=torch.bool, device=prep.device)  # finish() checks regret
    result = finish(prep, sigma, converged, out.steps, "logit_qre", tol, out.residual, info)
    warn_not_converged(result.converged, "logit_qre")
    return result


@dataclass(frozen=True)
class QuantalResponseResult:
    """The logit QRE at given precisions, one per game of a batch.

    Attributes:
        strategies: N tensors ``(*batch, A_i)``.
        lam: ``(*batch, N)`` the precisions ``lambda_i``.
        residual: ``(*batch,)`` the fixed-point residual
            ``max_i max_a |sigma_i(a) - softmax(lambda_i v_i)(a)|``.
        converged: ``(*batch,)`` True iff the trace reached ``lam`` and
            ``residual <= tol``.
        regret: ``(*batch, N)`` the Nash regret of the QRE (informative: a
            QRE is not a Nash equilibrium).
        iterations: ``(*batch,)`` continuation steps.
        tol: the residual tolerance.
    """

    strategies: tuple[Tensor, ...]
    lam: Tensor
    residual: Tensor
    converged: Tensor
    regret: Tensor
    iterations: Tensor
    tol: float
    info: dict[str, Tensor] = field(default_factory=dict)


def logit_qre_at(
    game: Any,
    lam: Any,
    tol: float | None = None,
    max_steps: int = 1000,
    first_step: float = 0.1,
) -> QuantalResponseResult:
    """The logit QRE on the principal branch at given precisions.

    Solves ``sigma_i = softmax(lam_i * v_i(sigma_-i))`` for every player i by
    tracing the principal branch from the centroid (see :func:`logit_qre`)
    and landing exactly on ``lam`` (the first crossing of the branch).

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        lam: precisions ``>= 0`` (payoff units^-1): a number, or a tensor
            broadcastable to ``(*batch, N)`` (per player; use
            ``lam[..., None]`` for one precision per game).
        tol: tolerance on the fixed-point residual; None means
            :func:`~aggregation.default_tol` of the game's dtype.
        max_steps: the largest number of predictor-corrector steps.
        first_step: the first arclength step.

    Returns:
        A :class:`QuantalResponseResult`.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, logit_qre_at
        >>> pennies = NormalFormGame.zero_sum(torch.tensor([[1., -1.], [-1., 1.]]))
        >>> [round(p, 3) for p in logit_qre_at(pennies, 5.0).strategies[0].tolist()]
        [0.5, 0.5]
    """
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    first_step = check_positive(first_step, "first_step")
    prep = prepare(game)
    tol = resolve_tol(tol, prep.dtype)
    n, size, dtype, device = prep.n, prep.size, prep.cdtype, prep.device
    lam_t = as_tensor(lam, "lam", dtype=dtype, device=device)
    if bool((lam_t < 0).any()):
        raise ValueError(f"lam must be >= 0; received a minimum of {float(lam_t.min()):.3g}")
    try:
        lam_t = lam_t.expand(*prep.batch_shape, n).reshape(size, n)  # (B, N)
    except RuntimeError:
        raise ValueError(
            f"lam must be a number or broadcastable to (*batch, N) = "
            f"{(*prep.batch_shape, n)}; received shape {tuple(lam_t.shape)}"
        ) from None
    layout = Layout(prep.actions)
    ranges = payoff_ranges(prep)  # (B, N)
    reach = (lam_t * ranges).amax(-1)  # (B,) the trace's end point
    weight = lam_t / torch.where(reach > 0, reach, torch.ones_like(reach))[:, None]  # (B, N)
    scaled = prep.payoffs * weight.reshape((size, n) + (1,) * n)  # (B, N, *A)
    out = trace_branch(scaled, layout, reach, max_steps, first_step=first_step)
    sigma = [out.sigma[:, o : o + a] for o, a in zip(layout.offsets, layout.actions)]
    values = payoff_action_values(prep.payoffs, sigma, n)
    residual = torch.stack(
        [
            (s - torch.softmax(lam_t[:, i : i + 1] * v, dim=-1)).abs().amax(-1)
            for i, (s, v) in enumerate(zip(sigma, values))
        ],
        dim=-1,
    ).amax(-1)  # (B,)
    reached = out.landed | (reach <= 0)
    converged = reached & (residual <= tol)
    shape = prep.batch_shape

    def unflatten(t: Tensor) -> Tensor:
        return t.reshape(tuple(shape) + tuple(t.shape[1:]))

    return QuantalResponseResult(
        strategies=tuple(unflatten(s).to(prep.dtype) for s in sigma),
        lam=unflatten(lam_t),
        residual=unflatten(residual),
        converged=unflatten(converged),
        regret=unflatten(payoff_regret(prep.payoffs, sigma, n)),
        iterations=unflatten(out.steps),
        tol=tol,
        info={"failed": unflatten(out.failed)},
    )
