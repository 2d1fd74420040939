"""WorldState: every town's mutable state as arrays with a leading town dimension [N]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class WorldState:
    cell: Any          # [N] int64 flat cell index y * G + x of the agent
    meters: Any        # [N, meters] float32 in [0, 1], in schema.METERS order
    hour: Any          # [N] int64 clock hour 0..23 (stays 0 without temporal mechanics)
    progress: Any      # [N] int64 ticks done of the current interaction (0 = none)
    current: Any       # [N] int64 code of the affordance being used (EMPTY = none)
    steps: Any         # [N] int64 steps taken this episode
    grid: Any          # [N, P] int8 padded cell codes of each town's layout (int8: gathers move an eighth of the bytes of int64)
    multiplier: Any    # [N] float32 difficulty: scales base depletion
    town_seed: Any     # [N] int64 seed of each town's resets
    episode: Any       # [N] int64 episodes started by each town
