"""Finite N-player games in normal form, batched.

A game is a payoff tensor ``P`` of shape ``(*batch, N, A_1, ..., A_N)`` where
``P[..., i, a_1, ..., a_N]`` is player i's payoff at the pure profile
``(a_1, ..., a_N)``. A mixed profile is a tuple ``(sigma_1, ..., sigma_N)``,
``sigma_i`` of shape ``(*batch, A_i)`` on the probability simplex.

Definitions (all batched):

* action values ``v_i(a) = u_i(a, sigma_-i)`` for every pure action ``a``;
* expected payoff ``u_i(sigma) = <sigma_i, v_i>``;
* regret ``r_i(sigma) = max_a v_i(a) - u_i(sigma) >= 0``;
* NashConv ``= sum_i r_i``, exploitability ``= NashConv / N``;
* ``sigma`` is an eps-Nash equilibrium iff ``max_i r_i(sigma) <= eps``.

References: Nash (1951), "Non-cooperative games"; Lanctot et al. (2017) for
NashConv; nashpy and Gambit for the two- and N-player conventions.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._validation import as_tensor, check_int, check_nonnegative, compute_dtype, describe

__all__ = [
    "NormalFormGame",
    "bimatrix_pair",
    "exploitability",
    "is_nash",
    "nash_conv",
    "regret",
    "validate_profile",
]

_LETTERS = string.ascii_letters


def _infer_num_players(shape: torch.Size) -> int:
    candidates = [k for k in range(1, len(shape)) if len(shape) >= k + 1 and shape[-(k + 1)] == k]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(
            "payoffs must have shape (*batch, N, A_1, ..., A_N) with N players; "
            f"received shape {tuple(shape)}, which fits no N"
        )
    readings = ", ".join(
        f"N={k} with batch shape {tuple(shape[: len(shape) - k - 1])}" for k in candidates
    )
    raise ValueError(
        f"payoffs of shape {tuple(shape)} can be read several ways ({readings}); "
        "pass num_players explicitly"
    )


class NormalFormGame:
    """A batch of finite N-player games in normal form.

    Args:
        payoffs: tensor (or array, or nested list) of shape
            ``(*batch, N, A_1, ..., A_N)``; integers are promoted to floating
            point. Must be finite.
        num_players: N. Inferred from the shape when unambiguous.

    Raises:
        ValueError: non-finite payoffs, too few dimensions, a player axis whose
            size is not N, fewer than one action for a player, or an ambiguous
            shape without ``num_players``.
        TypeError: non-numeric payoffs.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame
        >>> game = NormalFormGame.zero_sum(torch.tensor([[1., -1.], [-1., 1.]]))
        >>> game.num_players, game.num_actions
        (2, (2, 2))
    """

    def __init__(self, payoffs: Any, num_players: int | None = None) -> None:
        tensor = as_tensor(payoffs, "payoffs", min_dim=2)
        if num_players is None:
            n = _infer_num_players(tensor.shape)
        else:
            n = check_int(num_players, "num_players", minimum=1, maximum=len(_LETTERS) - 2)
            if tensor.dim() < n + 1 or tensor.shape[-(n + 1)] != n:
                raise ValueError(
                    f"payoffs must have shape (*batch, {n}, A_1, ..., A_{n}) for "
                    f"num_players={n}; received shape {tuple(tensor.shape)}"
                )
        if any(a < 1 for a in tensor.shape[-n:]):
            raise ValueError(
                f"every player needs at least one action; received action counts "
                f"{tuple(tensor.shape[-n:])}"
            )
        self._payoffs = tensor
        self._n = n

    # ------------------------------------------------------------------ build
    @classmethod
    def bimatrix(cls, A: Any, B: Any) -> NormalFormGame:
        """A two-player game: row player gets ``A``, column player gets ``B``.

        ``A`` and ``B`` have shapes ``(*batch, m, n)``; batch dimensions
        broadcast against each other.
        """
        a, b, batch = bimatrix_pair(A, B)
        dtype = torch.promote_types(a.dtype, b.dtype)
        a = a.to(dtype).expand(*batch, *a.shape[-2:])
        b = b.to(dtype).expand(*batch, *b.shape[-2:])
        return cls(torch.stack([a, b], dim=-3), num_players=2)

    @classmethod
    def zero_sum(cls, A: Any) -> NormalFormGame:
        """A two-player zero-sum game ``(A, -A)``; ``A`` of shape ``(*batch, m, n)``."""
        a = as_tensor(A, "A", min_dim=2)
        return cls(torch.stack([a, -a], dim=-3), num_players=2)

    @classmethod
    def from_nashpy(cls, game: Any) -> NormalFormGame:
        """Convert a ``nashpy.Game`` (two players) to a ``NormalFormGame``."""
        matrices = getattr(game, "payoff_matrices", None)
        if matrices is None:
            raise TypeError(f"game must be a nashpy.Game; received {describe(game)}")
        return cls.bimatrix(matrices[0], matrices[1])

    def to_nashpy(self) -> Any:
        """Convert an unbatched two-player game to a ``nashpy.Game``."""
        import nashpy

        self._require_unbatched("to_nashpy")
        if self._n != 2:
            raise ValueError(f"nashpy supports two players only; this game has {self._n}")
        p = self._payoffs.detach().cpu().double().numpy()
        return nashpy.Game(p[0], p[1])

    @classmethod
    def from_gambit(cls, game: Any) -> NormalFormGame:
        """Convert a pygambit strategic-form game to a ``NormalFormGame`` (float64)."""
        players = getattr(game, "players", None)
        if players is None:
            raise TypeError(f"game must be a pygambit.Game; received {describe(game)}")
        import itertools

        import numpy as np

        counts = [len(p.strategies) for p in players]
        n = len(counts)
        out = np.zeros((n, *counts))
        for profile in itertools.product(*(range(c) for c in counts)):
            outcome = game[list(profile)]
            for i, player in enumerate(players):
                out[(i, *profile)] = float(outcome[player])
        return cls(torch.from_numpy(out), num_players=n)

    def to_gambit(self, title: str = "aggregation game") -> Any:
        """Convert an unbatched game to a pygambit game (payoffs as floats)."""
        import pygambit

        self._require_unbatched("to_gambit")
        arrays = [self._payoffs[i].detach().cpu().double().numpy() for i in range(self._n)]
        return pygambit.Game.from_arrays(*arrays, title=title)

    # ------------------------------------------------------------ properties
    @property
    def payoffs(self) -> Tensor:
        """The payoff tensor ``(*batch, N, A_1, ..., A_N)``."""
        return self._payoffs

    @property
    def num_players(self) -> int:
        return self._n

    @property
    def num_actions(self) -> tuple[int, ...]:
        return tuple(int(a) for a in self._payoffs.shape[-self._n :])

    @property
    def batch_shape(self) -> torch.Size:
        return self._payoffs.shape[: -(self._n + 1)]

    @property
    def dtype(self) -> torch.dtype:
        return self._payoffs.dtype

    @property
    def device(self) -> torch.device:
        return self._payoffs.device

    @property
    def A(self) -> Tensor:
        """Row player's payoffs ``(*batch, m, n)`` of a two-player game."""
        self._require_players(2, "A")
        return self._payoffs[..., 0, :, :]

    @property
    def B(self) -> Tensor:
        """Column player's payoffs ``(*batch, m, n)`` of a two-player game."""
        self._require_players(2, "B")
        return self._payoffs[..., 1, :, :]

    def is_zero_sum(self, tol: float = 1e-12) -> Tensor:
        """``(*batch,)`` True where the payoffs sum to zero at every profile."""
        total = self._payoffs.sum(dim=-(self._n + 1))
        return total.flatten(-self._n).abs().amax(-1) <= tol

    def to(self, *args: Any, **kwargs: Any) -> NormalFormGame:
        """A copy with the payoffs moved/cast as ``Tensor.to``."""
        return NormalFormGame(self._payoffs.to(*args, **kwargs), num_players=self._n)

    def __getitem__(self, index: Any) -> NormalFormGame:
        """Index the batch: ``games[3]`` is the fourth game."""
        if len(self.batch_shape) == 0:
            raise IndexError("this game is not batched; there is nothing to index")
        payoffs = self._payoffs[index]
        return NormalFormGame(payoffs, num_players=self._n)

    def __repr__(self) -> str:
        return (
            f"NormalFormGame(num_players={self._n}, num_actions={self.num_actions}, "
            f"batch_shape={tuple(self.batch_shape)}, dtype={self.dtype})"
        )

    def _require_unbatched(self, what: str) -> None:
        if len(self.batch_shape):
            raise ValueError(
                f"{what} needs an unbatched game; this one has batch shape "
                f"{tuple(self.batch_shape)}: index it first"
            )

    def _require_players(self, n: int, what: str) -> None:
        if self._n != n:
            raise ValueError(f"{what} is defined for {n}-player games; this game has {self._n}")

    # ------------------------------------------------------------ evaluation
    def action_values(self, strategies: Sequence[Any]) -> tuple[Tensor, ...]:
        """Each player's payoff for each pure action against the others' mix.

        ``v_i[..., a] = sum_{a_-i} P[..., i, a, a_-i] prod_{j != i} sigma_j[a_j]``.

        Args:
            strategies: N tensors, ``sigma_i`` of shape broadcastable to
                ``(*batch, A_i)``.

        Returns:
            N tensors, ``v_i`` of shape ``(*batch', A_i)`` with ``batch'`` the
            broadcast of the game's and the profile's batch shapes.
        """
        sigma = validate_profile(self, strategies, check_simplex=False)
        return _action_values(self._payoffs, sigma, self._n)

    def expected_payoffs(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch, N)`` expected payoff ``u_i(sigma)`` of every player."""
        sigma = validate_profile(self, strategies, check_simplex=False)
        values = _action_values(self._payoffs, sigma, self._n)
        return torch.stack([(v * s).sum(-1) for v, s in zip(values, sigma)], dim=-1)

    def best_responses(self, strategies: Sequence[Any], tol: float = 0.0) -> tuple[Tensor, ...]:
        """All pure best responses, with ties visible.

        ``BR_i = {a : v_i(a) >= max_b v_i(b) - tol}``.

        Returns:
            N bool tensors of shape ``(*batch, A_i)``.
        """
        tol = check_nonnegative(tol, "tol")
        sigma = validate_profile(self, strategies, check_simplex=False)
        values = _action_values(self._payoffs, sigma, self._n)
        return tuple(v >= v.amax(-1, keepdim=True) - tol for v in values)

    def regret(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch, N)`` regret ``max_a v_i(a) - u_i(sigma)`` (clamped at 0)."""
        sigma = validate_profile(self, strategies)
        return _regret(self._payoffs, sigma, self._n)

    def nash_conv(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch,)`` sum of the players' regrets."""
        return self.regret(strategies).sum(-1)

    def exploitability(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch,)`` NashConv / N."""
        return self.regret(strategies).sum(-1) / self._n

    def is_nash(self, strategies: Sequence[Any], tol: float = 1e-8) -> Tensor:
        """``(*batch,)`` True iff ``max_i regret_i <= tol`` (payoff units)."""
        tol = check_nonnegative(tol, "tol")
        return self.regret(strategies).amax(-1) <= tol


# ---------------------------------------------------------------- functions
def bimatrix_pair(A: Any, B: Any) -> tuple[Tensor, Tensor, torch.Size]:
    """Validate a pair of payoff matrices ``(*batch, m, n)``.

    Returns both as tensors and their broadcast batch shape; raises
    ``ValueError`` when the action shapes differ or the batch shapes do not
    broadcast (and whatever :func:`as_tensor` raises for bad entries).
    """
    a = as_tensor(A, "A", min_dim=2)
    b = as_tensor(B, "B", min_dim=2)
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(
            f"A and B must have the same action shape (m, n); received A of shape "
            f"{tuple(a.shape)} and B of shape {tuple(b.shape)}"
        )
    try:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"A and B batch shapes must broadcast; received {tuple(a.shape[:-2])} "
            f"and {tuple(b.shape[:-2])}"
        ) from None
    return a, b, batch


def validate_profile(
    game: NormalFormGame,
    strategies: Sequence[Any],
    *,
    check_simplex: bool = True,
    atol: float = 1e-6,
) -> tuple[Tensor, ...]:
    """Check and convert a mixed profile for ``game``.

    Each ``strategies[i]`` must have trailing size ``A_i``, batch dimensions
    that broadcast with the game's, and (with ``check_simplex``) be
    nonnegative and sum to one within ``atol`` (or ``A_i`` machine epsilons of
    the strategy's dtype, if larger: float16 profiles are rounded). Returns
    tensors in the game's compute dtype and device.
    """
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    if isinstance(strategies, (Tensor, str)) or not isinstance(strategies, Sequence):
        raise TypeError(
            f"strategies must be a tuple or list of {game.num_players} tensors (one per "
            f"player); received {describe(strategies)}"
        )
    if len(strategies) != game.num_players:
        raise ValueError(
            f"strategies must hold one strategy per player ({game.num_players}); "
            f"received {len(strategies)}"
        )
    dtype = compute_dtype(torch.promote_types(game.dtype, torch.float32))
    out = []
    for i, (s, a) in enumerate(zip(strategies, game.num_actions)):
        t = as_tensor(s, f"strategies[{i}]", min_dim=1)
        if t.dtype != game.dtype and t.is_floating_point():
            dtype = torch.promote_types(dtype, compute_dtype(t.dtype))
        if t.shape[-1] != a:
            raise ValueError(
                f"strategies[{i}] must have {a} entries (player {i}'s actions) in its last "
                f"dimension; received shape {tuple(t.shape)}"
            )
        try:
            torch.broadcast_shapes(t.shape[:-1], game.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"strategies[{i}] batch shape {tuple(t.shape[:-1])} does not broadcast "
                f"with the game's batch shape {tuple(game.batch_shape)}"
            ) from None
        if check_simplex:
            # a profile rounded to low precision (float16) is off by up to A_i * eps
            tol_i = max(atol, a * torch.finfo(t.dtype).eps) if t.is_floating_point() else atol
            low = float(t.min())
            total = t.sum(-1)
            worst = float((total - 1).abs().max())
            if low < -tol_i or worst > tol_i:
                raise ValueError(
                    f"strategies[{i}] must lie on the probability simplex (entries >= 0 "
                    f"summing to 1 within {tol_i:g}); received min entry {low:.3g} and sums "
                    f"off by up to {worst:.3g}"
                )
        out.append(t)
    return tuple(t.to(dtype=dtype, device=game.device) for t in out)


def _action_values(payoffs: Tensor, sigma: Sequence[Tensor], n: int) -> tuple[Tensor, ...]:
    """Contract payoffs with every opponent's mixed strategy (einsum)."""
    payoffs = payoffs.to(sigma[0].dtype)
    letters = _LETTERS[:n]
    values = []
    for i in range(n):
        operands = [payoffs.select(-(n + 1), i)]
        terms = ["..." + letters]
        for j in range(n):
            if j != i:
                operands.append(sigma[j])
                terms.append("..." + letters[j])
        spec = ",".join(terms) + "->..." + letters[i]
        values.append(torch.einsum(spec, *operands))
    return tuple(values)


def _regret(payoffs: Tensor, sigma: Sequence[Tensor], n: int) -> Tensor:
    values = _action_values(payoffs, sigma, n)
    regrets = [(v.amax(-1) - (v * s).sum(-1)).clamp_min(0) for v, s in zip(values, sigma)]
    return torch.stack(torch.broadcast_tensors(*regrets), dim=-1)


def regret(game: NormalFormGame, strategies: Sequence[Any]) -> Tensor:
    """Per-player regret, shape ``(*batch, N)``.

    ``r_i(sigma) = max_a u_i(a, sigma_-i) - u_i(sigma)``, clamped at 0 to hide
    rounding. Raises ``ValueError`` for a profile off the simplex.
    """
    return game.regret(strategies)


def nash_conv(game: NormalFormGame, strategies: Sequence[Any]) -> Tensor:
    """``(*batch,)`` NashConv ``sum_i r_i(sigma)``."""
    return game.nash_conv(strategies)


def exploitability(game: NormalFormGame, strategies: Sequence[Any]) -> Tensor:
    """``(*batch,)`` exploitability ``sum_i r_i(sigma) / N``."""
    return game.exploitability(strategies)


def is_nash(game: NormalFormGame, strategies: Sequence[Any], tol: float = 1e-8) -> Tensor:
    """``(*batch,)`` bool: ``max_i r_i(sigma) <= tol`` (an eps-Nash test, payoff units)."""
    return game.is_nash(strategies, tol)
