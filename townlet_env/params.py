"""WorldParams: the world pack turned into lookup tables, built once per env.

Affordance rows are indexed by *cell code* (townlet_env.schema): the affordances, then
EMPTY (a floor cell), then OUTSIDE (beyond the town's edge, only ever seen in observation
windows). With temporal mechanics off, an instant interaction is a one-tick interaction
with no bonus, so a single code path in the step handles both modes.

The per-affordance interaction numbers are packed into one table so that the step looks
a cell's row up once; `INTERACTION` names its columns, and the `tick_gain`, `bonus`,
`tick_price` and `ticks` properties read them by name. No other module uses the column
numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .layout import GRID_CHANNELS, OUTSIDE_CHANNEL, ObsLayout
from .observation import cell_rows
from .pack import WorldPack
from .schema import (
    AFFORDANCES, DOLLARS_PER_UNIT, EMPTY_CODE, HOURS_PER_DAY, METER, NUM_AFFORDANCES,
    NUM_METERS, OUTSIDE_CODE,
)
from .towns import shared_grid

EMPTY, OUTSIDE = EMPTY_CODE, OUTSIDE_CODE
ENERGY, MONEY, HEALTH, FITNESS = METER["energy"], METER["money"], METER["health"], METER["fitness"]


class InteractionColumns(NamedTuple):
    """Where each quantity sits in a row of `WorldParams.interaction`."""

    tick_gain: slice   # per-tick effects on every meter, money net of the per-tick price
    bonus: slice       # completion bonus, given on the tick that completes the interaction
    tick_price: int    # price per tick in money units: what affordability is checked against
    ticks: int         # ticks to complete (1 for an instant interaction)
    width: int


INTERACTION = InteractionColumns(
    tick_gain=slice(0, NUM_METERS), bonus=slice(NUM_METERS, 2 * NUM_METERS),
    tick_price=2 * NUM_METERS, ticks=2 * NUM_METERS + 1, width=2 * NUM_METERS + 2,
)


def _vec(d: dict[str, float]) -> np.ndarray:
    v = np.zeros(NUM_METERS, dtype=np.float64)
    for m, x in d.items():
        v[METER[m]] = x
    return v


def _interaction_table(tick_gain, bonus, tick_price, ticks) -> np.ndarray:
    table = np.zeros((tick_gain.shape[0], INTERACTION.width))
    table[:, INTERACTION.tick_gain] = tick_gain
    table[:, INTERACTION.bonus] = bonus
    table[:, INTERACTION.tick_price] = tick_price
    table[:, INTERACTION.ticks] = ticks
    return table


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
    action_cost: Any          # [actions, meters]
    action_cell_delta: Any    # [actions] flat-cell offset of each action
    move_mask: Any            # [cells, actions] moves that stay on the grid; INTERACT False, WAIT True
    interaction: Any          # [affordances + 1, INTERACTION.width] per code, columns named by INTERACTION
    inv_ticks: Any            # [affordances + 1] 1 / ticks, for the progress observation
    open_at: Any              # [(affordances + 1) * hours] open at code * HOURS_PER_DAY + hour; EMPTY never
    initial: Any              # [meters]
    depletion: Any            # [meters]
    modulation: tuple[float, float]  # health loss = [0] - [1] * fitness
    interoception: tuple[float, float, float, float]  # base, center, health weight, energy weight
    cascade_threshold: float
    cascades: list            # per ordered group: (sources [k], strengths [k, meters] source -> target)
    cell_to_padded: Any       # [cells] index of a town cell in the padded grid
    observed_cells: Any       # [cells, K] padded indices seen from each cell
    position: Any             # [cells, 2] normalised (x, y)
    grid_onehot: Any          # [cell codes, grid channels] one-hot rows per cell code (one_hot layout only)
    hour_trig: Any            # [hours, 2] sin, cos of the hour (zeros without temporal mechanics)
    deployed_codes: Any       # [k] codes of deployed affordances
    shared_window: Any        # [cells, K] int8 codes seen from each cell in the shared layout
    shared_here: Any          # [cells] int64 code under each cell in the shared layout
    energy_depletion: float
    idle_energy_cost: float   # cheapest per-step energy cost of an agent that never interacts
    shared_obs: Any = None    # [cells, D] float32 observation rows of each cell in the shared layout
    fused: Any = None         # fused.FusedTables: the compiled CPU step, resets and observation (set by the CPU vector env)

    @classmethod
    def build(cls, pack: WorldPack, ops, one_hot: bool = False, landmarks: bool = False) -> "WorldParams":
        g = pack.grid_size
        cells = g * g
        temporal = pack.temporal_mechanics
        partial = pack.observability == "partial"
        pad = pack.window_radius if partial else 0
        side = g + 2 * pad

        # rows in action order: the four moves, INTERACT, WAIT
        cost = np.stack([_vec(pack.move_cost)] * 4 + [_vec(pack.interact_cost), _vec(pack.wait_cost)])
        delta = np.array([-g, g, -1, 1, 0, 0])
        xs, ys = np.arange(cells) % g, np.arange(cells) // g
        move_mask = np.stack([ys > 0, ys < g - 1, xs > 0, xs < g - 1,
                              np.zeros(cells, bool), np.ones(cells, bool)], axis=1)

        rows = NUM_AFFORDANCES + 1
        tick_delta, bonus = np.zeros((rows, NUM_METERS)), np.zeros((rows, NUM_METERS))
        tick_price, ticks = np.zeros(rows), np.ones(rows, dtype=np.int64)
        open_at = np.zeros((rows, HOURS_PER_DAY), dtype=bool)
        for i, a in enumerate(pack.affordances):
            if temporal:
                price, per, extra, n = a.tick_price, _vec(a.per_tick), _vec(a.bonus), a.ticks
                o, c = a.hours
                hours = np.arange(HOURS_PER_DAY)
                open_at[i] = ((hours >= o) & (hours < c)) | (hours + HOURS_PER_DAY < c)
            else:
                price, per, extra, n = a.price, _vec(a.effects), np.zeros(NUM_METERS), 1
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
            strengths = np.zeros((len(sources), NUM_METERS))
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
        h = np.arange(HOURS_PER_DAY) * (2 * math.pi / HOURS_PER_DAY)
        trig = np.stack([np.sin(h), np.cos(h)], axis=1) * float(temporal)

        f32, i64, b = ops.float32, ops.int64, ops.bool
        return cls(
            pack=pack, ops=ops, grid_size=g, pad=pad, temporal=temporal,
            max_steps=pack.max_steps, reward_mode=pack.reward_mode,
            layout=ObsLayout.build(observed.shape[1], one_hot, cells if landmarks else 0),
            action_cost=ops.asarray(cost, f32),
            action_cell_delta=ops.asarray(delta, i64),
            move_mask=ops.asarray(move_mask, b),
            interaction=ops.asarray(_interaction_table(tick_delta, bonus, tick_price, ticks), f32),
            inv_ticks=ops.asarray(1.0 / ticks, f32),
            open_at=ops.asarray(open_at.reshape(-1), b),
            initial=ops.asarray(initial, f32),
            depletion=ops.asarray(_vec(pack.depletion), f32),
            modulation=_modulation(pack.modulation),
            interoception=tuple(pack.interoception[k] for k in ("base", "center", "health", "energy")),
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
            grid = shared_grid(self)
            self.shared_window = grid[self.observed_cells]
            self.shared_here = self.ops.cast(grid[self.cell_to_padded], self.ops.int64)
            self.shared_obs = cell_rows(self)

    @property
    def tick_gain(self):
        """[codes, meters] per-tick effects, money net of the per-tick price."""
        return self.interaction[:, INTERACTION.tick_gain]

    @property
    def bonus(self):
        """[codes, meters] completion bonus."""
        return self.interaction[:, INTERACTION.bonus]

    @property
    def tick_price(self):
        """[codes] price per tick in money units."""
        return self.interaction[:, INTERACTION.tick_price]

    @property
    def ticks(self):
        """[codes] ticks to complete an interaction (float, as stored in the table)."""
        return self.interaction[:, INTERACTION.ticks]

    @property
    def open_hours(self):
        """[codes, hours] whether each cell code is open at each hour."""
        return self.open_at.reshape(-1, HOURS_PER_DAY)

    @property
    def cells(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def padded_cells(self) -> int:
        return (self.grid_size + 2 * self.pad) ** 2
