"""The world's step: one pure function advancing every town by one tick (docs/world.md,
"The step").

Order per town: the action (move, INTERACT or WAIT, with its meter cost), base depletion
scaled by the town's difficulty, fitness-modulated health loss, three ordered cascade
groups, clamp, termination and truncation, reward, clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from .observation import action_mask as _action_mask
from .observation import code_here
from .params import EMPTY, ENERGY, FITNESS, HEALTH, INTERACTION, MONEY, WorldParams
from .rewards import reward as _reward
from .schema import HOURS_PER_DAY, INTERACT, MONEY_EPS, WAIT
from .state import WorldState


@dataclass
class StepOutput:
    reward: Any        # [N] float32
    terminated: Any    # [N] bool: health or energy reached 0
    truncated: Any     # [N] bool: the level's step limit, when not terminated
    masked: Any        # [N] bool: the action was masked and executed as WAIT


def step(p: WorldParams, s: WorldState, action, mask=None, here=None) -> tuple[WorldState, StepOutput]:
    """Advance all towns one tick. `action` is a valid [N] int64 array of indices 0..5.

    A masked action (a wall move, INTERACT where nothing is open) is executed as WAIT and
    flagged in `StepOutput.masked`; it never moves the agent off the grid. `mask` and
    `here` (the codes under the agents) may be passed when the caller already has them.
    """
    ops, xp = p.ops, p.ops.xp
    here = code_here(p, s) if here is None else here
    if mask is None:
        mask = _action_mask(p, s, here)
    if p.fused is not None and ops.read_flags:  # the CPU: one compiled pass over the towns
        return _fused_step(p, s, action, mask, here)
    allowed = ops.take(mask, action[:, None])[:, 0]
    act = xp.where(allowed, action, WAIT)

    # 1. the action: movement and its cost, or an interaction tick.
    cell = s.cell + ops.lookup(p.action_cell_delta, act)
    m = s.meters - ops.lookup(p.action_cost, act)
    pressing = act == INTERACT
    current = xp.where(pressing, here, EMPTY)
    idle = ops.none(pressing)
    rows = None if idle else ops.rows_where(pressing)
    if idle or rows is not None:
        # Nobody interacts, or (CPU) only the pressing towns need the interaction: for the
        # others it adds +0 or -0 to each meter, which changes none (no meter is ever -0).
        m_pressing = None if idle else m[rows]
        m, progress = ops.clip(m, 0.0, 1.0), s.progress * 0
        if not idle:
            m[rows], progress[rows] = _interact(p, m_pressing, pressing[rows], here[rows], s.current[rows],
                                                s.progress[rows])
    else:
        m, progress = _interact(p, m, pressing, here, s.current, s.progress)

    # 2. base depletion scaled per town; 3. fitness modulation of health (unscaled).
    m = m - p.depletion[None, :] * s.multiplier[:, None]
    # health -= base * (offset + gain * (1 - fitness)), folded into two constants.
    m[:, HEALTH] -= p.modulation[0] - p.modulation[1] * m[:, FITNESS]

    # 4. cascades, group by group, each reading the meters the previous group left; the
    # edges of a group all read the same snapshot of their sources. Summed source by source
    # with elementwise operations (not a matrix product), so numpy and torch round alike.
    # With no meter below the threshold no group can fire, so the block may be skipped.
    # On the CPU only the towns with a meter below the threshold are computed: for the
    # others every pressure is 0, so every drain is +0 or -0, which changes no meter.
    thr = p.cascade_threshold
    below = m < thr
    if not ops.none(below):
        rows = ops.rows_where(below.any(1))
        if rows is None:
            m = _cascade(p, m)
        else:
            m[rows] = _cascade(p, m[rows])

    # 5. clamp; 6. termination and truncation.
    m = ops.clip(m, 0.0, 1.0)
    terminated = (m[:, HEALTH] <= 0.0) | (m[:, ENERGY] <= 0.0)
    steps = s.steps + 1
    truncated = (steps >= p.max_steps) & ~terminated

    # 7. clock; an interaction whose affordance has closed loses its progress.
    hour = (s.hour + 1) % HOURS_PER_DAY if p.temporal else s.hour
    if not ops.none(progress > 0):
        progress = xp.where(ops.lookup(p.open_at, current * HOURS_PER_DAY + hour), progress, 0)

    new = WorldState(cell, m, hour, progress, current, steps, s.grid, s.multiplier, s.town_seed, s.episode)
    out = StepOutput(_reward(p, new, terminated, truncated), terminated, truncated, ~allowed)
    return new, out


def _fused_step(p: WorldParams, s: WorldState, action, mask, here) -> tuple[WorldState, StepOutput]:
    """`step` through the compiled one-pass kernel (townlet_env.fused), on CPU tensors,
    which share their memory with the numpy arrays the kernel reads and writes."""
    ops, host = p.ops, p.ops.to_numpy
    out = p.fused.step(host(action), host(mask), host(here), host(s.cell), host(s.meters), host(s.hour),
                       host(s.progress), host(s.current), host(s.steps), host(s.multiplier),
                       int(p.max_steps))  # read per call: callers may replace the params' step limit
    cell, m, hour, progress, current, steps, terminated, truncated, masked = (ops.from_numpy(a) for a in out)
    new = WorldState(cell, m, hour, progress, current, steps, s.grid, s.multiplier, s.town_seed, s.episode)
    return new, StepOutput(_reward(p, new, terminated, truncated), terminated, truncated, masked)


def _interact(p: WorldParams, m, pressing, here, current, progress):
    """An interaction tick: meters (clamped) and progress after pressing INTERACT."""
    xp, row, col = p.ops.xp, p.ops.lookup(p.interaction, here), INTERACTION  # one lookup, four quantities
    continuing = pressing & (current == here) & (progress > 0)
    attempt = xp.where(continuing, progress + 1, 1)
    paid = pressing & (m[:, MONEY] + MONEY_EPS >= row[:, col.tick_price])
    completed = paid & (attempt >= row[:, col.ticks])
    m = p.ops.clip(m + row[:, col.tick_gain] * paid[:, None] + row[:, col.bonus] * completed[:, None], 0.0, 1.0)
    return m, xp.where(paid, xp.where(completed, 0, attempt), xp.where(continuing, progress, 0))


def _cascade(p: WorldParams, m):
    """The three ordered cascade groups on meters `m` [N, meters]."""
    for sources, rows in p.cascades:
        m = _cascade_group(p, m, sources, rows)
    return m


def _cascade_group(p: WorldParams, m, sources, rows):
    ops, thr = p.ops, p.cascade_threshold
    pressure = ops.clip(thr - ops.columns(m, sources), 0.0, None) / thr
    drain = pressure[:, 0:1] * rows[0]
    for k in range(1, len(rows)):
        drain = drain + pressure[:, k : k + 1] * rows[k]
    return m - drain


@dataclass(frozen=True)
class OneTownTables:
    """What `step_one` reads as Python values, computed once per env from the params."""
    modulation: tuple        # the two health-modulation constants as float32 scalars
    threshold: float         # the cascade threshold as float32, as `m < thr` compares in numpy
    cascade_sources: Any     # reads every group's source meters from a list, for one check that skips them all
    cascades: list           # per group: (a reader of its source meters, sources, rows)
    cell_delta: list         # per action, the change of the flat cell index
    survival: tuple          # the survival reward of a step, [0] if it ended the life, else [1]: read-only [1] arrays


def one_town_tables(p: WorldParams) -> OneTownTables:
    # step_one leaves out the ceiling of the first clamp, exact only while no action raises a
    # meter; the pack reads action costs in [0, 1] (pack.py)
    assert bool((p.action_cost >= 0).all()), "an action with a negative meter cost"
    f32 = p.ops.float32
    survival = tuple(p.ops.asarray([r], f32) for r in (0.0, 1.0))
    for r in survival:
        r.flags.writeable = False  # shared by every step's output
    return OneTownTables(
        modulation=(f32(p.modulation[0]), f32(p.modulation[1])),
        threshold=float(f32(p.cascade_threshold)),
        cascade_sources=_reader(sorted({k for src, _ in p.cascades for k in src.tolist()})),
        cascades=[(_reader(src.tolist()), src, rows) for src, rows in p.cascades],
        cell_delta=[int(d) for d in p.action_cell_delta],
        survival=survival,
    )


def _reader(indices: list):
    """values -> the tuple of values[k] for k in `indices` (None when there are none)."""
    return itemgetter(*indices, indices[0]) if indices else None  # the extra item: a tuple even for one index


def _cascade_one(p: WorldParams, t: OneTownTables, m):
    """`_cascade` for one town's meters [meters], skipping the groups whose sources are all
    at or above the threshold (their drain is +-0, which changes no meter)."""
    values = m.tolist()
    if t.cascade_sources is None or min(t.cascade_sources(values)) >= t.threshold:
        return m  # the common case: no source below the threshold, no group drains
    for read_sources, sources, rows in t.cascades:
        if min(read_sources(values)) < t.threshold:
            m = _cascade_group(p, m[None, :], sources, rows)[0]
            values = m.tolist()
    return m


def step_one(p: WorldParams, t: OneTownTables, s: WorldState, action: int, mask, here: int
             ) -> tuple[WorldState, StepOutput]:
    """`step` for a single town on numpy tables (the single env): the same rules, with the
    position, clock and progress as Python ints instead of one-element arrays, which cost
    a microsecond per operation. `t` is `one_town_tables(p)`, `mask` the town's [6] mask,
    `here` its cell code.

    Meter arithmetic stays on float32 arrays (one-element slices for single meters) so it
    rounds exactly as `step` does; tests/env/test_single_fast_path.py pins the equality.
    """
    ops, col = p.ops, INTERACTION
    allowed = bool(mask[action])
    act = action if allowed else WAIT
    m = s.meters[0] - p.action_cost[act]
    progress, current = int(s.progress[0]), int(s.current[0])
    if act == INTERACT:
        row = p.interaction[here]
        continuing = current == here and progress > 0
        attempt = progress + 1 if continuing else 1
        paid = bool(m[MONEY : MONEY + 1] + MONEY_EPS >= row[col.tick_price : col.tick_price + 1])
        completed = paid and bool(attempt >= row[col.ticks])
        m = ops.clip(m + row[col.tick_gain] * paid + row[col.bonus] * completed, 0.0, 1.0)
        progress = (0 if completed else attempt) if paid else (progress if continuing else 0)
        current = here
    else:
        m = ops.xp.maximum(m, 0.0)  # meters in [0, 1] minus costs >= 0: only the floor can bind
        progress, current = 0, EMPTY
    m = m - p.depletion * s.multiplier
    m[HEALTH] -= t.modulation[0] - t.modulation[1] * m[FITNESS]
    m = ops.clip(_cascade_one(p, t, m), 0.0, 1.0)
    values = m.tolist()  # float32 -> float is exact, so comparisons with 0 agree
    terminated = values[HEALTH] <= 0.0 or values[ENERGY] <= 0.0
    steps = int(s.steps[0]) + 1
    truncated = steps >= p.max_steps and not terminated
    hour = (int(s.hour[0]) + 1) % HOURS_PER_DAY if p.temporal else int(s.hour[0])
    if progress > 0 and not p.open_at[current * HOURS_PER_DAY + hour]:
        progress = 0

    # The new [1] arrays as views of two small arrays: two allocations instead of eight.
    ints = ops.asarray([int(s.cell[0]) + t.cell_delta[act], hour, progress, current, steps], ops.int64)
    flags = ops.asarray([terminated, truncated, not allowed], ops.bool)
    new = WorldState(ints[0:1], m[None, :], ints[1:2], ints[2:3], ints[3:4], ints[4:5], s.grid, s.multiplier,
                     s.town_seed, s.episode)
    term, trunc = flags[0:1], flags[1:2]
    # the one-town path's own survival reward, like its other rules (pinned equal to
    # rewards.reward by tests/env/test_single_fast_path.py): 1 while alive, 0 on the last step
    reward = t.survival[not terminated] if p.reward_mode == "survival" else _reward(p, new, term, trunc)
    return new, StepOutput(reward, term, trunc, flags[2:3])
