"""Town creation and resets: layouts, spawn cells, start hours, initial meters.

All draws come from `rng.uniform` keyed by each town's seed and episode number, so a
town's episodes are the same however many towns are batched with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import rng
from .schema import EMPTY_CODE as EMPTY
from .schema import HOURS_PER_DAY, NUM_METERS
from .schema import OUTSIDE_CODE as OUTSIDE
from .state import WorldState

if TYPE_CHECKING:  # params builds its tables with this module: no import back at run time
    from .params import WorldParams


def place_affordances(p: WorldParams, seed, episode, pool: str | None = None):
    """Padded code grids [N, P]: deployed affordances on distinct cells drawn per key, from
    the env's layout pool unless `pool` is given."""
    ops, n = p.ops, seed.shape[0]
    pool = p.pack.layout_pool if pool is None else pool
    order = ops.argsort(rng.uniform(ops, seed, episode, rng.LAYOUT, p.cells, pool))
    chosen = order[:, : p.deployed_codes.shape[0]]
    grid = ops.full((n, p.padded_cells), OUTSIDE, ops.int8)
    inside = ops.xp.broadcast_to(p.cell_to_padded[None, :], (n, p.cells))
    ops.put(grid, ops.copy(inside), ops.full((n, p.cells), EMPTY, ops.int8))
    codes = ops.xp.broadcast_to(p.deployed_codes[None, :], chosen.shape)
    ops.put(grid, p.cell_to_padded[chosen], ops.cast(codes, ops.int8))
    return grid


def shared_grid(p: WorldParams):
    """[P] the padded code grid every town shares in layout mode "shared"."""
    ops = p.ops
    # The one shared town is the same for training and evaluation: no pool applies.
    seed = ops.full((1,), p.pack.layout_seed, ops.int64)
    return place_affordances(p, seed, ops.zeros((1,), ops.int64), pool="any")[0]


def town_layouts(p: WorldParams, town_seed, layout_seed: int):
    """Each town's first layout according to the pack's layout mode."""
    ops = p.ops
    zeros = ops.zeros(town_seed.shape, ops.int64)
    mode = p.pack.layout_mode
    if mode == "shared":
        return ops.copy(ops.xp.broadcast_to(shared_grid(p)[None, :], (town_seed.shape[0], p.padded_cells)))
    if mode == "per_town":
        seed = rng.keys(town_seed, ops.full(town_seed.shape, layout_seed, ops.int64), rng.TOWN)
        return place_affordances(p, seed, zeros)
    return place_affordances(p, town_seed, zeros)  # per_episode: redrawn at every reset


def new_state(p: WorldParams, town_seed, layout_seed: int) -> WorldState:
    """Fresh towns for the given seeds [N]; call `reset_towns` before stepping."""
    ops, n = p.ops, town_seed.shape[0]
    zeros = ops.zeros((n,), ops.int64)
    return WorldState(
        cell=zeros, meters=ops.zeros((n, NUM_METERS), ops.float32), hour=ops.copy(zeros),
        progress=ops.copy(zeros), current=ops.full((n,), EMPTY, ops.int64),
        steps=ops.copy(zeros), grid=town_layouts(p, town_seed, layout_seed),
        multiplier=ops.full((n,), 1.0, ops.float32), town_seed=town_seed,
        episode=ops.full((n,), -1, ops.int64),
    )


def reset_towns(p: WorldParams, s: WorldState, which, overwrite: bool = False) -> WorldState:
    """Start a new episode in the towns where `which` [N] is True; others are untouched.

    `overwrite`: the caller hands `s` over, so its arrays (the grid too) may be written in
    place rather than copied; the compiled CPU path does so, the others ignore it."""
    ops, xp = p.ops, p.ops.xp
    if ops.none(which):
        return s
    if p.fused is not None and ops.read_flags:  # the CPU: one compiled pass over the towns
        return _fused_reset(p, s, which, overwrite)
    episode = s.episode + ops.cast(which, ops.int64)
    rows = ops.rows_where(which)
    if rows is not None:  # draw for the resetting towns only; every draw is per town
        return _reset_rows(p, s, rows, episode)
    spawn, hour, start, grid = _draws(p, s.town_seed, episode)
    if grid is None:
        grid = s.grid
    else:
        grid = xp.where(which[:, None], grid, s.grid)
    w = which
    return WorldState(
        cell=xp.where(w, spawn, s.cell),
        meters=xp.where(w[:, None], start, s.meters),
        hour=xp.where(w, hour, s.hour),
        progress=xp.where(w, 0, s.progress),
        current=xp.where(w, EMPTY, s.current),
        steps=xp.where(w, 0, s.steps),
        grid=grid,
        multiplier=s.multiplier,
        town_seed=s.town_seed,
        episode=episode,
    )


def _fused_reset(p: WorldParams, s: WorldState, which, overwrite: bool) -> WorldState:
    """`reset_towns` through the compiled kernel (townlet_env.fused) on CPU tensors."""
    host = p.ops.to_numpy
    out = p.fused.reset(host(which), host(s.cell), host(s.meters), host(s.hour), host(s.progress), host(s.current),
                        host(s.steps), host(s.episode), host(s.grid), host(s.town_seed), overwrite)
    if overwrite:
        return s
    cell, meters, hour, progress, current, steps, episode, grid = (p.ops.from_numpy(a) for a in out)
    return WorldState(cell, meters, hour, progress, current, steps, grid if p.fused.per_episode else s.grid,
                      s.multiplier, s.town_seed, episode)


def _draws(p: WorldParams, seed, episode):
    """Spawn cells, start hours, start meters and (per_episode layouts, else None) grids of
    new episodes."""
    ops = p.ops
    spawn = ops.cast(rng.uniform(ops, seed, episode, rng.SPAWN, 1)[:, 0] * p.cells, ops.int64)
    if p.pack.random_start_hour and p.temporal:
        hour = ops.cast(rng.uniform(ops, seed, episode, rng.HOUR, 1)[:, 0] * HOURS_PER_DAY, ops.int64)
    else:
        hour = ops.zeros(seed.shape, ops.int64)
    grid = place_affordances(p, seed, episode) if p.pack.layout_mode == "per_episode" else None
    return spawn, hour, start_meters(p, seed, episode), grid


def start_meters(p: WorldParams, seed, episode):
    """The meters new episodes start with: the level's [1, meters], or with the env's
    `start_spread` s, each meter lowered by its own uniform fraction in [0, s) [N, meters].
    Lowered starts are for training: they put the cost of a neglected need inside the
    horizon the learner sees, where a full start reaches it only hundreds of steps in."""
    spread = p.pack.start_spread
    if not spread:
        return p.initial[None, :]
    u = p.ops.cast(rng.uniform(p.ops, seed, episode, rng.START, NUM_METERS), p.ops.float32)
    return p.initial[None, :] * (1.0 - spread * u)


def _reset_rows(p: WorldParams, s: WorldState, rows, episode) -> WorldState:
    """`reset_towns` for the towns at indices `rows`, written into copies of the state."""
    ops = p.ops
    spawn, hour, start, grid = _draws(p, s.town_seed[rows], episode[rows])
    new = WorldState(cell=ops.copy(s.cell), meters=ops.copy(s.meters), hour=ops.copy(s.hour),
                     progress=ops.copy(s.progress), current=ops.copy(s.current), steps=ops.copy(s.steps),
                     grid=s.grid if grid is None else ops.copy(s.grid), multiplier=s.multiplier,
                     town_seed=s.town_seed, episode=episode)
    new.cell[rows] = spawn
    new.meters[rows] = start
    new.hour[rows] = hour
    new.progress[rows] = 0
    new.current[rows] = EMPTY
    new.steps[rows] = 0
    if grid is not None:
        new.grid[rows] = grid
    return new
