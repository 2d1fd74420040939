"""Q-networks: per-part observation encoders, then an LSTM (POMDP) or an MLP (full obs).

Every part of the observation layout has its own encoder, so no input can be silently
ignored (without the time-of-day inputs opening hours cannot be learned), and slice
offsets come only from the `ObsLayout`, so no size is typed in twice.

Shapes: observations are time-first, `[T, B, D]` for sequences and `[B, D]` for one acting
step. The recurrent state is a pair `(h, c)`, each `[B, H]`; `None` means zeros.

The feed-forward network uses the same interface with an empty state: it accepts any
state (ignored) and always returns the empty tuple `()`, so `initial_state` is `()` too.
Callers can therefore carry "the state" without knowing which network they hold.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from townlet_env import NUM_ACTIONS, ObsLayout

State = tuple[Tensor, ...]
"""`(h, c)` for the recurrent network, `()` for the feed-forward one."""


class CategoricalEncoder(nn.Module):
    """Encodes a part of integer category codes (stored as floats): a learned embedding
    per code, flattened over the part's cells, then Linear+ReLU. Equivalent to a linear
    layer over a one-hot encoding, without materialising the one-hot."""

    def __init__(self, cells: int, categories: int, width: int, embedding_dim: int = 8):
        super().__init__()
        self.categories = categories
        self.embedding = nn.Embedding(categories, embedding_dim)
        self.linear = nn.Linear(cells * embedding_dim, width)
        self.out_features = width

    def forward(self, codes: Tensor) -> Tensor:
        idx = codes.round().long().clamp_(0, self.categories - 1)
        emb = self.embedding(idx)
        return torch.relu(self.linear(emb.flatten(-2)))


class PositionCellEncoder(nn.Module):
    """Encodes the normalised (x, y) as a learned vector for its grid cell.

    Each axis is binned into `bins` levels, so towns up to `bins` x `bins` get one vector
    per cell (the spacing 1 / (side - 1) is at least one bin; larger towns share vectors
    between neighbouring cells). A linear encoder of two floats has to carve cells out of
    half-planes; with full observability of a fixed town that is all that tells states apart.
    """

    def __init__(self, width: int, bins: int = 16):
        super().__init__()
        self.bins = bins
        self.embedding = nn.Embedding(bins * bins, width)
        self.out_features = width

    def forward(self, position: Tensor) -> Tensor:
        xy = (position.clamp(0.0, 1.0) * (self.bins - 1)).round().long()
        return self.embedding(xy[..., 0] + self.bins * xy[..., 1])


#: Parts with many inputs, encoded `grid_size` wide; the rest get `part_size`.
_LARGE_PARTS = ("grid", "landmarks")


class ObservationEncoder(nn.Module):
    """Encodes each observation part with its own encoder and concatenates the codes.

    Real-valued parts get Linear+ReLU; categorical parts (cell codes) a CategoricalEncoder.
    The large parts (the grid, and the landmarks when present) get `grid_size` units each;
    the small parts (position, meters, current affordance, time, seen cells) get
    `part_size` units each. With `position_cells` the position gets a PositionCellEncoder
    instead of Linear+ReLU.
    """

    def __init__(self, layout: ObsLayout, grid_size: int = 64, part_size: int = 16,
                 position_cells: bool = False):
        super().__init__()
        self.layout = layout
        self.encoders = nn.ModuleDict()
        for part in layout.parts:
            width = grid_size if part.name in _LARGE_PARTS else part_size
            if part.name == "position" and position_cells:
                self.encoders[part.name] = PositionCellEncoder(width)
            elif part.categories:
                self.encoders[part.name] = CategoricalEncoder(part.size, part.categories, width)
            else:
                self.encoders[part.name] = nn.Sequential(nn.Linear(part.size, width), nn.ReLU())
        self.out_size = sum(_width(enc) for enc in self.encoders.values())

    def forward(self, obs: Tensor) -> Tensor:
        """`[..., D]` flat observations -> `[..., out_size]` codes."""
        if obs.shape[-1] != self.layout.size:
            raise ValueError(
                f"observation has {obs.shape[-1]} features but the layout has {self.layout.size}"
            )
        codes = [self.encoders[part.name](obs[..., part.slice]) for part in self.layout.parts]
        return torch.cat(codes, dim=-1)


def _width(encoder: nn.Module) -> int:
    return encoder.out_features if hasattr(encoder, "out_features") else encoder[0].out_features


@contextmanager
def lstm_precision(dtype: torch.dtype, *nets: nn.Module):
    """Within the block the recurrent `nets` run their LSTM layer in `dtype` under autocast
    (outputs and states come back as float32); afterwards float32 again, so acting and
    evaluation never see the lowered precision."""
    recurrent = [net for net in nets if net.is_recurrent]
    for net in recurrent:
        net.lstm_dtype = dtype
    try:
        yield
    finally:
        for net in recurrent:
            net.lstm_dtype = torch.float32


def _zero_where(state: State, reset: Tensor | None) -> State:
    """Zero the state rows of agents whose `reset` flag is set (sync-free multiplication)."""
    if reset is None:
        return state
    keep = (~reset).unsqueeze(-1).to(state[0].dtype)
    return tuple(s * keep for s in state)


class DuelingHead(nn.Module):
    """Q = V + A - mean(A). With a survival reward every action's value is close to the
    state's value (~1 / (1 - gamma)) and the differences that matter are a fraction of a
    step; learning V and the advantages apart keeps those differences resolvable."""

    def __init__(self, hidden_size: int, num_actions: int):
        super().__init__()
        self.value = nn.Linear(hidden_size, 1)
        self.advantage = nn.Linear(hidden_size, num_actions)

    def forward(self, x: Tensor) -> Tensor:
        a = self.advantage(x)
        return self.value(x) + a - a.mean(dim=-1, keepdim=True)


class _QNetwork(nn.Module):
    """What both Q-networks share: the per-part encoder and the Q head; subclasses add
    the torso between them."""

    def __init__(self, layout: ObsLayout, num_actions: int, hidden_size: int, encoder_size: int,
                 dueling: bool = False, position_cells: bool = False):
        super().__init__()
        self.layout = layout
        self.num_actions = num_actions
        self.hidden_size = hidden_size
        self.encoder = ObservationEncoder(layout, grid_size=encoder_size, part_size=max(8, encoder_size // 4),
                                          position_cells=position_cells)
        self.q_head = DuelingHead(hidden_size, num_actions) if dueling else nn.Linear(hidden_size, num_actions)


class RecurrentQNetwork(_QNetwork):
    """Encoders -> Linear+ReLU -> LSTM -> Q head over `num_actions`."""

    is_recurrent = True
    lstm_dtype = torch.float32
    """The dtype the LSTM layer computes in; the learner lowers it within its unrolls (`lstm_precision`)."""

    def __init__(self, layout: ObsLayout, num_actions: int = NUM_ACTIONS, hidden_size: int = 128, encoder_size: int = 64,
                 dueling: bool = False, position_cells: bool = False):
        super().__init__(layout, num_actions, hidden_size, encoder_size, dueling, position_cells)
        self.torso = nn.Sequential(nn.Linear(self.encoder.out_size, hidden_size), nn.ReLU())
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=False)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        zeros = torch.zeros(batch, self.hidden_size, device=device)
        return (zeros, zeros.clone())

    def _state_or_zeros(self, state: State | None, batch: int, like: Tensor) -> State:
        if state is None:
            return self.initial_state(batch, like.device)
        return state

    def forward(self, obs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Unroll through `obs [T, B, D]` carrying `state`; returns `(q [T, B, A], (h, c))`."""
        T, B, _ = obs.shape
        h, c = self._state_or_zeros(state, B, obs)
        x = self.torso(self.encoder(obs))
        hc = (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous())
        if self.lstm_dtype == torch.float32:
            out, (h_n, c_n) = self.lstm(x, hc)
        else:
            with torch.autocast(x.device.type, dtype=self.lstm_dtype):
                out, (h_n, c_n) = self.lstm(x, hc)
            out, h_n, c_n = out.float(), h_n.float(), c_n.float()
        return self.q_head(out), (h_n.squeeze(0), c_n.squeeze(0))

    def step(
        self, obs: Tensor, state: State | None = None, reset: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """One acting step for all agents: `obs [B, D]` -> `(q [B, A], new_state)`.

        Agents with `reset[b]` True start from a zero state before consuming `obs[b]`
        (their previous episode ended); every other agent carries its state.
        """
        state = _zero_where(self._state_or_zeros(state, obs.shape[0], obs), reset)
        q, new_state = self.forward(obs.unsqueeze(0), state)
        return q.squeeze(0), new_state

    def forward_sequence(
        self, obs: Tensor, state: State | None, starts: Tensor
    ) -> tuple[Tensor, State]:
        """Unroll `obs [T, B, D]`, zeroing element b's state before step t where `starts[t, b]`.

        For streams that cross episode boundaries; stored replay sequences never do, so the
        learner uses the faster `forward`.
        """
        T, B, _ = obs.shape
        state = self._state_or_zeros(state, B, obs)
        x = self.torso(self.encoder(obs))
        outs = []
        for t in range(T):
            h, c = _zero_where(state, starts[t])
            out, (h_n, c_n) = self.lstm(x[t : t + 1], (h.unsqueeze(0), c.unsqueeze(0)))
            outs.append(out)
            state = (h_n.squeeze(0), c_n.squeeze(0))
        return self.q_head(torch.cat(outs, dim=0)), state


class FeedForwardQNetwork(_QNetwork):
    """Encoders -> two Linear+ReLU -> Q head; stateless, for full observability.

    State convention: every method accepts any state (ignored) and returns `()`.
    """

    is_recurrent = False

    def __init__(self, layout: ObsLayout, num_actions: int = NUM_ACTIONS, hidden_size: int = 128, encoder_size: int = 64,
                 dueling: bool = False, position_cells: bool = False):
        super().__init__(layout, num_actions, hidden_size, encoder_size, dueling, position_cells)
        self.torso = nn.Sequential(
            nn.Linear(self.encoder.out_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
        )

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        return ()

    def forward(self, obs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """`obs [T, B, D]` -> `(q [T, B, A], ())`."""
        return self.q_head(self.torso(self.encoder(obs))), ()

    def step(
        self, obs: Tensor, state: State | None = None, reset: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """`obs [B, D]` -> `(q [B, A], ())`; `state` and `reset` are accepted and ignored."""
        return self.q_head(self.torso(self.encoder(obs))), ()

    def forward_sequence(
        self, obs: Tensor, state: State | None, starts: Tensor
    ) -> tuple[Tensor, State]:
        """Same as `forward`: there is no state to reset."""
        return self.forward(obs, state)
