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

from ..tolerance import default_tol
from ..validation import as_tensor, check_int, check_nonnegative, compute_dtype, describe

__all__ = [
    "NormalFormGame",
    "bimatrix_pair",
    "exploitability",
    "is_nash",
    "nash_conv",
    "payoff_action_values",
    "payoff_regret",
    "regret",
    "validate_profile",
]

_LETTERS = string.ascii_letters


#: Above this many payoff entries ``repr`` abbreviates the payoffs (not evaluable).
_REPR_ENTRIES = 4096
#: ``str`` prints the payoffs of unbatched games with at most this many pure profiles.
_STR_PROFILES = 64


def _action_first_hint(shape: torch.Size) -> str:
    """A hint when ``shape`` also reads as QuantEcon's ``(A_1, ..., A_N, N)`` layout."""
    k = len(shape) - 1
    if k >= 2 and shape[-1] == k:
        return (
            f"; it fits the action-first layout (A_1, ..., A_N, N) with N = {k} of QuantEcon's "
            "payoff profile arrays: use NormalFormGame.from_payoff_profiles(array) or "
            "NormalFormGame.from_quantecon(game)"
        )
    return ""


def _infer_num_players(shape: torch.Size) -> int:
    candidates = [k for k in range(1, len(shape)) if len(shape) >= k + 1 and shape[-(k + 1)] == k]
    if len(candidates) == 1:
        k = candidates[0]
        if k >= 2 and len(shape) == k + 1 and shape[-1] == k:
            raise ValueError(
                f"payoffs of shape {tuple(shape)} are ambiguous: they read as this library's "
                f"player-first layout (N, A_1, ..., A_N) and as the action-first layout "
                f"(A_1, ..., A_N, N) of QuantEcon's payoff profile arrays, which mean different "
                f"games; pass num_players={k} to confirm the player-first layout, or use "
                "NormalFormGame.bimatrix(A, B), NormalFormGame.from_payoff_profiles(array) "
                "(action-first) or NormalFormGame.from_quantecon(game)"
            )
        return k
    if not candidates:
        raise ValueError(
            "payoffs must have shape (*batch, N, A_1, ..., A_N) with N players; "
            f"received shape {tuple(shape)}, which fits no N{_action_first_hint(shape)}"
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
            ``(*batch, N, A_1, ..., A_N)`` (player first: ``payoffs[..., i]`` is
            player i's payoff table); integers are promoted to floating
            point. Must be finite.
        num_players: N. Inferred from the shape when unambiguous; passing it
            also confirms the player-first layout.

    Layout check. Without ``num_players``, an unbatched array of shape
    ``(N, A_1, ..., A_{N-1}, N)`` is refused: it reads as well as QuantEcon's
    action-first payoff profile array ``(A_1, ..., A_N, N)`` (the prisoner's
    dilemma in that layout has shape ``(2, 2, 2)`` and would be a different
    game here). Pass ``num_players``, or build the game with
    :meth:`bimatrix`, :meth:`from_payoff_profiles` or :meth:`from_quantecon`.

    Raises:
        ValueError: non-finite payoffs, too few dimensions, a player axis whose
            size is not N, fewer than one action for a player, or an ambiguous
            shape without ``num_players`` (several N fit, or the layout check).
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
    def from_payoff_profiles(cls, array: Any) -> NormalFormGame:
        """An unbatched game from an action-first array ``(A_1, ..., A_N, N)``.

        ``array[a_1, ..., a_N, i]`` is player i's payoff at the pure profile
        ``(a_1, ..., a_N)`` (QuantEcon's ``payoff_profile_array``); the game's
        payoffs are ``array`` with the last axis moved to the front.

        Raises:
            ValueError: the last axis does not have size ``N = array.ndim - 1``.
        """
        tensor = as_tensor(array, "array", min_dim=2)
        k = tensor.dim() - 1
        if tensor.shape[-1] != k:
            raise ValueError(
                f"array must have shape (A_1, ..., A_N, N) with N = array.ndim - 1 = {k}; "
                f"received shape {tuple(tensor.shape)}"
            )
        return cls(torch.movedim(tensor, -1, 0), num_players=k)

    @classmethod
    def from_quantecon(cls, game: Any) -> NormalFormGame:
        """Convert a ``quantecon.game_theory.NormalFormGame`` (float64).

        QuantEcon stores player i's payoffs own action first, the others in
        cyclic order: ``players[i].payoff_array[a_i, a_{i+1}, ..., a_{i-1}]``.
        """
        players = getattr(game, "players", None)
        if players is None or not all(hasattr(p, "payoff_array") for p in players):
            raise TypeError(
                f"game must be a quantecon.game_theory.NormalFormGame; received {describe(game)}"
            )
        n = len(players)
        tables = []
        for i, player in enumerate(players):
            own = as_tensor(player.payoff_array, f"game.players[{i}].payoff_array")
            if own.dim() != n:  # one player: QuantEcon stores a vector
                own = own.reshape(own.shape[:1] + (1,) * (n - own.dim()) + own.shape[1:])
            # axis k of ``own`` is player (i + k) mod n: move it to position (i + k) mod n
            order = [(k - i) % n for k in range(n)]
            tables.append(own.permute(order).to(torch.float64))
        return cls(torch.stack(tables), num_players=n)

    def to_quantecon(self) -> Any:
        """Convert an unbatched game to a ``quantecon.game_theory.NormalFormGame``."""
        from quantecon.game_theory import NormalFormGame as QENormalFormGame
        from quantecon.game_theory import Player

        self._require_unbatched("to_quantecon")
        if self._n < 2:
            raise ValueError(f"to_quantecon needs at least two players; this game has {self._n}")
        p = self._payoffs.detach().cpu().double()
        n = self._n
        players = [
            Player(p[i].permute([(i + k) % n for k in range(n)]).contiguous().numpy())
            for i in range(n)
        ]
        return QENormalFormGame(players)

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
        """Evaluable for games with at most 4096 payoff entries (``import torch`` and
        ``from aggregation import NormalFormGame`` in scope), abbreviated above."""
        p = self._payoffs
        if p.numel() > _REPR_ENTRIES:
            return (
                f"NormalFormGame(<payoffs of shape {tuple(p.shape)}, dtype={p.dtype}>, "
                f"num_players={self._n})"
            )
        device = "" if p.device.type == "cpu" else f", device={str(p.device)!r}"
        values = repr(p.detach().cpu().tolist())
        return (
            f"NormalFormGame(torch.tensor({values}, dtype={p.dtype}{device}), "
            f"num_players={self._n})"
        )

    def __str__(self) -> str:
        """The payoffs of a small unbatched game; a bimatrix game as a table of "a, b" cells."""
        head = (
            f"NormalFormGame: {self._n} players, actions {self.num_actions}, "
            f"batch shape {tuple(self.batch_shape)}, {self.dtype}"
        )
        profiles = 1
        for a in self.num_actions:
            profiles *= a
        if len(self.batch_shape) or profiles > _STR_PROFILES:
            return head
        p = self._payoffs.detach().cpu().double()
        if self._n == 2:
            m, n = self.num_actions
            cells = [[f"{p[0, i, j]:.4g}, {p[1, i, j]:.4g}" for j in range(n)] for i in range(m)]
            width = max(len(c) for row in cells for c in row)
            lines = [" " * 4 + "  ".join(f"{j:>{width}}" for j in range(n))]
            lines += [
                f"{i:<4}" + "  ".join(f"{c:>{width}}" for c in row) for i, row in enumerate(cells)
            ]
            return head + "\n" + "\n".join(lines)
        import itertools

        lines = [
            f"{profile}: " + ", ".join(f"{p[(i, *profile)]:.4g}" for i in range(self._n))
            for profile in itertools.product(*(range(a) for a in self.num_actions))
        ]
        return head + "\n" + "\n".join(lines)

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
        return payoff_action_values(self._payoffs, sigma, self._n)

    def expected_payoffs(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch, N)`` expected payoff ``u_i(sigma)`` of every player."""
        sigma = validate_profile(self, strategies, check_simplex=False)
        values = payoff_action_values(self._payoffs, sigma, self._n)
        return torch.stack([(v * s).sum(-1) for v, s in zip(values, sigma)], dim=-1)

    def best_responses(self, strategies: Sequence[Any], tol: float = 0.0) -> tuple[Tensor, ...]:
        """All pure best responses, with ties visible.

        ``BR_i = {a : v_i(a) >= max_b v_i(b) - tol}``.

        Returns:
            N bool tensors of shape ``(*batch, A_i)``.
        """
        tol = check_nonnegative(tol, "tol")
        sigma = validate_profile(self, strategies, check_simplex=False)
        values = payoff_action_values(self._payoffs, sigma, self._n)
        return tuple(v >= v.amax(-1, keepdim=True) - tol for v in values)

    def regret(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch, N)`` regret ``max_a v_i(a) - u_i(sigma)`` (clamped at 0)."""
        sigma = validate_profile(self, strategies)
        return payoff_regret(self._payoffs, sigma, self._n)

    def nash_conv(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch,)`` sum of the players' regrets."""
        return self.regret(strategies).sum(-1)

    def exploitability(self, strategies: Sequence[Any]) -> Tensor:
        """``(*batch,)`` NashConv / N."""
        return self.regret(strategies).sum(-1) / self._n

    def is_nash(self, strategies: Sequence[Any], tol: float | None = None) -> Tensor:
        """``(*batch,)`` True iff ``max_i regret_i <= tol`` (payoff units).

        ``tol=None`` means :func:`~aggregation.default_tol` of the least precise
        of the game's and the strategies' dtypes (1e-9 when all are float64).
        An explicit ``tol`` (even 0, an exact test) is used as given.
        """
        regret = self.regret(strategies)  # validates the profile
        dtypes = [self.dtype] + [
            s.dtype for s in strategies if isinstance(s, Tensor) and s.is_floating_point()
        ]
        coarsest = max(dtypes, key=default_tol)
        tol = default_tol(coarsest) if tol is None else check_nonnegative(tol, "tol")
        return regret.amax(-1) <= tol


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


def payoff_action_values(payoffs: Tensor, sigma: Sequence[Tensor], n: int) -> tuple[Tensor, ...]:
    """Action values from a raw payoff tensor, no validation (the kernel of
    :meth:`NormalFormGame.action_values`, for solvers holding validated tensors).

    ``v_i[..., a] = sum_{a_-i} P[..., i, a, a_-i] prod_{j != i} sigma_j[a_j]``,
    one einsum per player.

    Args:
        payoffs: ``(*batch, n, A_1, ..., A_n)`` payoff tensor (cast to ``sigma``'s dtype).
        sigma: n mixed strategies, ``sigma_i`` broadcastable to ``(*batch, A_i)``.
        n: the number of players.

    Returns:
        n tensors, ``v_i`` of shape ``(*batch', A_i)`` (``batch'`` the broadcast batch).
    """
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


def payoff_regret(payoffs: Tensor, sigma: Sequence[Tensor], n: int) -> Tensor:
    """Per-player regret from a raw payoff tensor, no validation (the kernel of
    :meth:`NormalFormGame.regret`).

    ``r_i(sigma) = max_a v_i(a) - <sigma_i, v_i>``, clamped at 0, with ``v_i``
    from :func:`payoff_action_values`. Shapes as there; returns ``(*batch', n)``.
    """
    values = payoff_action_values(payoffs, sigma, n)
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


def is_nash(game: NormalFormGame, strategies: Sequence[Any], tol: float | None = None) -> Tensor:
    """``(*batch,)`` bool: ``max_i r_i(sigma) <= tol`` (an eps-Nash test, payoff units).

    ``tol=None``: :func:`~aggregation.default_tol` of the least precise dtype involved.
    """
    return game.is_nash(strategies, tol)
