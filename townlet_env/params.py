"""WorldParams: the world pack turned into lookup tables, built once per env.

Affordance rows are indexed by *cell code*: 0..13 the vocabulary, EMPTY (14) a floor
cell, OUTSIDE (15) beyond the town's edge (only ever seen in observation windows).
With temporal mechanics off, an instant interaction is a one-tick interaction with no
bonus, so a single code path in the step handles both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layout import EMPTY_CODE, GRID_CHANNELS, NUM_AFFORDANCES, OUTSIDE_CHANNEL, OUTSIDE_CODE, ObsLayout
from .pack import AFFORDANCES, METERS, WorldPack

EMPTY, OUTSIDE = EMPTY_CODE, OUTSIDE_CODE
UP, DOWN, LEFT, RIGHT, INTERACT, WAIT = range(6)
ACTIONS = ("UP", "DOWN", "LEFT", "RIGHT", "INTERACT", "WAIT")
NUM_ACTIONS = 6
METER = {m: i for i, m in enumerate(METERS)}
ENERGY, MONEY, HEALTH, FITNESS = METER["energy"], METER["money"], METER["health"], METER["fitness"]
DOLLARS_PER_UNIT = 100.0


def _vec(d: dict[str, float]) -> np.ndarray:
    v = np.zeros(len(METERS), dtype=np.float64)
    for m, x in d.items():
        v[METER[m]] = x
    return v


def _modulation(mod: dict[str, float]) -> tuple[float, float]:
    """base * (offset + gain * (1 - fitness)) == c0 - c1 * fitness."""
    return mod["base"] * (mod["offset"] + mod["gain"]), mod["base"] * mod["gain"]


@dataclass
class WorldParams:
    """Lookup tables (arrays of one backend) plus the level's scalars."""

    pack: WorldPack
    ops: Any
    grid_size: int
    pad: int                  # border of OUTSIDE cells around the stored town grid
    temporal: bool
    max_steps: int
    reward_mode: str
    layout: ObsLayout
    action_cost: Any          # [6, 8]
    action_cell_delta: Any    # [6] flat-cell offset of each action
    move_mask: Any            # [cells, 6] moves that stay on the grid; INTERACT False, WAIT True
    interaction: Any          # [15, 18] per code: per-tick effects minus the per-tick price
                              # (0:8), completion bonus (8:16), price per tick in money
                              # units (16), ticks to complete (17; 1 for instant)
    inv_ticks: Any            # [15] 1 / ticks, for the progress observation
    open_at: Any              # [15 * 24] open at code * 24 + hour; EMPTY rows all False
    initial: Any              # [8]
    depletion: Any            # [8]
    modulation: tuple[float, float]  # health loss = [0] - [1] * fitness
    cascade_threshold: float
    cascades: list            # per ordered group: (sources [k], strengths [k, 8] source -> target)
    cell_to_padded: Any       # [cells] index of a town cell in the padded grid
    observed_cells: Any       # [cells, K] padded indices seen from each cell
    position: Any             # [cells, 2] normalised (x, y)
    grid_onehot: Any          # [16, 15] one-hot rows per cell code (one_hot layout only)
    hour_trig: Any            # [24, 2] sin, cos of the hour (zeros without temporal mechanics)
    deployed_codes: Any       # [k] codes of deployed affordances
    shared_window: Any        # [cells, K] int8 codes seen from each cell in the shared layout
    shared_here: Any          # [cells] int64 code under each cell in the shared layout
    energy_depletion: float
    idle_energy_cost: float   # cheapest per-step energy cost of an agent that never interacts

    @classmethod
    def build(cls, pack: WorldPack, ops, one_hot: bool = False) -> "WorldParams":
        g = pack.grid_size
        cells = g * g
        temporal = pack.temporal_mechanics
        partial = pack.observability == "partial"
        pad = pack.window_radius if partial else 0
        side = g + 2 * pad

        cost = np.stack([_vec(pack.move_cost)] * 4 + [_vec(pack.interact_cost), _vec(pack.wait_cost)])
        delta = np.array([-g, g, -1, 1, 0, 0])
        xs, ys = np.arange(cells) % g, np.arange(cells) // g
        move_mask = np.stack([ys > 0, ys < g - 1, xs > 0, xs < g - 1,
                              np.zeros(cells, bool), np.ones(cells, bool)], axis=1)

        rows = NUM_AFFORDANCES + 1
        tick_delta, bonus = np.zeros((rows, 8)), np.zeros((rows, 8))
        tick_price, ticks = np.zeros(rows), np.ones(rows, dtype=np.int64)
        open_at = np.zeros((rows, 24), dtype=bool)
        for i, a in enumerate(pack.affordances):
            if temporal:
                price, per, extra, n = a.tick_price, _vec(a.per_tick), _vec(a.bonus), a.ticks
                o, c = a.hours
                hours = np.arange(24)
                open_at[i] = ((hours >= o) & (hours < c)) | (hours + 24 < c)
            else:
                price, per, extra, n = a.price, _vec(a.effects), np.zeros(8), 1
                open_at[i] = True
            price /= DOLLARS_PER_UNIT
            tick_price[i], ticks[i] = price, n
            tick_delta[i] = per
            tick_delta[i, MONEY] -= price
            bonus[i] = extra

        initial = _vec(pack.initial)
        initial[MONEY] = pack.starting_money / DOLLARS_PER_UNIT
        cascades = []
        for group in pack.cascade_groups:
            sources = sorted({METER[e.source] for e in group})
            strengths = np.zeros((len(sources), 8))
            for e in group:
                strengths[sources.index(METER[e.source]), METER[e.target]] += e.strength
            cascades.append((sources, strengths))

        cell_to_padded = (ys + pad) * side + (xs + pad)
        if partial:
            r = pack.window_radius
            d = np.arange(-r, r + 1)
            offsets = (d[:, None] * side + d[None, :]).reshape(-1)
            observed = cell_to_padded[:, None] + offsets[None, :]
        else:
            observed = np.broadcast_to(np.arange(cells), (cells, cells)).copy()
        position = np.stack([xs, ys], axis=1) / max(g - 1, 1)

        grid_onehot = np.zeros((OUTSIDE + 1, GRID_CHANNELS), dtype=np.float32)
        grid_onehot[np.arange(NUM_AFFORDANCES), np.arange(NUM_AFFORDANCES)] = 1.0
        grid_onehot[OUTSIDE, OUTSIDE_CHANNEL] = 1.0
        h = np.arange(24) * (2 * math.pi / 24)
        trig = np.stack([np.sin(h), np.cos(h)], axis=1) * float(temporal)

        f32, i64, b = ops.float32, ops.int64, ops.bool
        return cls(
            pack=pack, ops=ops, grid_size=g, pad=pad, temporal=temporal,
            max_steps=pack.max_steps, reward_mode=pack.reward_mode,
            layout=ObsLayout.build(observed.shape[1], one_hot),
            action_cost=ops.asarray(cost, f32),
            action_cell_delta=ops.asarray(delta, i64),
            move_mask=ops.asarray(move_mask, b),
            interaction=ops.asarray(np.concatenate([tick_delta, bonus, tick_price[:, None], ticks[:, None]], 1), f32),
            inv_ticks=ops.asarray(1.0 / ticks, f32),
            open_at=ops.asarray(open_at.reshape(-1), b),
            initial=ops.asarray(initial, f32),
            depletion=ops.asarray(_vec(pack.depletion), f32),
            modulation=_modulation(pack.modulation),
            cascade_threshold=pack.cascade_threshold,
            cascades=[(ops.asarray(src, i64), [ops.asarray(row, f32)[None, :] for row in s])
                      for src, s in cascades],
            cell_to_padded=ops.asarray(cell_to_padded, i64),
            observed_cells=ops.asarray(observed, i64),
            position=ops.asarray(position, f32),
            grid_onehot=ops.asarray(grid_onehot, f32),
            hour_trig=ops.asarray(trig, f32),
            deployed_codes=ops.asarray([AFFORDANCES.index(a) for a in pack.deployed], i64),
            shared_window=None, shared_here=None,
            energy_depletion=pack.depletion["energy"],
            idle_energy_cost=min(pack.move_cost.get("energy", 0.0), pack.wait_cost.get("energy", 0.0)),
        )

    def __post_init__(self):
        # With one layout for every town, what each cell sees is a fixed table: looking
        # rows up in it is far cheaper than gathering from every town's grid.
        if self.pack.layout_mode == "shared":
            from .towns import shared_grid

            grid = shared_grid(self)
            self.shared_window = grid[self.observed_cells]
            self.shared_here = self.ops.cast(grid[self.cell_to_padded], self.ops.int64)

    @property
    def cells(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def padded_cells(self) -> int:
        return (self.grid_size + 2 * self.pad) ** 2
