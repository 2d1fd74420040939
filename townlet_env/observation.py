"""Observations and action masks, built for all towns at once by table lookups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .schema import EMPTY_CODE as EMPTY
from .schema import HOURS_PER_DAY, INTERACT
from .state import WorldState

if TYPE_CHECKING:  # params builds its shared-layout table with this module: no import back
    from .params import WorldParams


def code_here(p: WorldParams, s: WorldState):
    """[N] cell code under each agent (an affordance 0..13, or EMPTY)."""
    ops = p.ops
    if p.shared_here is not None:
        return ops.lookup(p.shared_here, s.cell)
    return ops.cast(ops.take(s.grid, ops.lookup(p.cell_to_padded, s.cell)[:, None])[:, 0], ops.int64)


def action_mask(p: WorldParams, s: WorldState, here=None):
    """[N, 6] bool: moves that stay on the grid, INTERACT on an open affordance, WAIT always.

    Money never masks INTERACT: an unaffordable press is allowed and does nothing.
    """
    ops = p.ops
    here = code_here(p, s) if here is None else here
    mask = ops.lookup(p.move_mask, s.cell)
    mask[:, INTERACT] = ops.lookup(p.open_at, here * HOURS_PER_DAY + s.hour)
    return mask


def observe(p: WorldParams, s: WorldState, here=None):
    """[N, D] float32 observation laid out as `p.layout` documents (a fresh array).

    Every element is written, so the buffer needs no zero fill, except the optional
    landmark parts, which the env writes next (townlet_env.landmarks).
    """
    ops, lay = p.ops, p.layout
    if p.shared_obs is not None:  # grid, affordance and position depend on the cell alone
        obs = ops.lookup(p.shared_obs, s.cell)
    else:
        obs = _cell_parts(p, s, code_here(p, s) if here is None else here)
    obs[:, lay["meters"].slice] = s.meters
    t = lay["time"].start
    obs[:, t : t + 2] = ops.lookup(p.hour_trig, s.hour)
    obs[:, t + 2] = ops.cast(s.progress, ops.float32) * ops.lookup(p.inv_ticks, s.current)
    return obs


def one_town_slices(p: WorldParams) -> tuple[slice, slice, slice]:
    """Where `observe_one` writes the meters, the hour's (sin, cos) and the progress."""
    lay = p.layout
    t = lay["time"].start
    return lay["meters"].slice, slice(t, t + 2), slice(t + 2, t + 3)


def observe_one(p: WorldParams, s: WorldState, cell: int, hour: int, slices):
    """`observe` for the one town of a single env in a shared layout: [D] (a fresh array).
    `slices` is `one_town_slices(p)`, computed once by the caller."""
    ops, (meters, clock, progress) = p.ops, slices
    obs = p.shared_obs[cell].copy()
    obs[meters] = s.meters[0]
    obs[clock] = p.hour_trig[hour]
    # float32 scalars, as in observe
    done = int(s.progress[0])  # ticks done: 0 on most steps, and 0 * (1 / ticks) is +0.0
    obs[progress] = ops.float32(done) * p.inv_ticks[int(s.current[0])] if done else 0.0
    return obs


def _cell_parts(p: WorldParams, s: WorldState, here):
    """[N, D] float32 with the grid, affordance and position parts written; the meters and
    time parts are left for `observe` to fill."""
    ops, lay = p.ops, p.layout
    n = s.cell.shape[0]
    obs = ops.empty((n, lay.size), ops.float32)
    if p.shared_window is not None:
        seen = ops.lookup(p.shared_window, s.cell)
    else:
        seen = ops.take(s.grid, ops.lookup(p.observed_cells, s.cell))
    if lay.one_hot:
        obs[:, lay["grid"].slice] = ops.lookup(p.grid_onehot, ops.cast(seen, ops.int64)).reshape(n, -1)
        obs[:, lay["affordance"].slice] = ops.lookup(p.grid_onehot, here)
        obs[:, lay["affordance"].stop - 1] = here == EMPTY
    else:
        obs[:, lay["grid"].slice] = seen
        obs[:, lay["affordance"].start] = here
    obs[:, lay["position"].slice] = ops.lookup(p.position, s.cell)
    return obs


def cell_rows(p: WorldParams):
    """[cells, D] the shared layout's observation parts for an agent on each cell (meters
    and time zero): built once, so an observation is one row lookup plus meters and time."""
    ops = p.ops
    cells = p.position.shape[0]
    cell = ops.arange(cells)
    state = WorldState(cell=cell, meters=None, hour=None, progress=None, current=None, steps=None, grid=None,
                       multiplier=None, town_seed=None, episode=None)
    rows = _cell_parts(p, state, code_here(p, state))
    lay = p.layout
    rows[:, lay["meters"].slice] = 0.0
    rows[:, lay["time"].start :] = 0.0  # and the landmark parts, when present
    return rows
