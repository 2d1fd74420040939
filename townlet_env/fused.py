"""The vector env's step, resets and observation, each as one compiled pass over the towns (CPU).

`dynamics.step`, `towns.reset_towns` and `observation.observe` are written as whole-batch
operations, each a pass over [N, ...] arrays; at thousands of towns on one CPU thread
those passes, not the arithmetic, are the cost. Here the same rules run town by town in
loops compiled by numba: one pass over the state instead of dozens.

They compute exactly what the torch code does, operation for operation in float32 (and
the same integer hashes for the draws), so the two agree bit for bit
(tests/env/test_cpu_shortcuts.py plays every level both ways). The reward stays with
`rewards.reward`, which is cheap and mode-dependent. numba is imported only when a CPU
vector env is built (TownletVectorEnv sets `WorldParams.fused`), so the single env never
loads it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import rng
from .params import ENERGY, FITNESS, HEALTH, INTERACTION, MONEY, WorldParams
from .schema import EMPTY_CODE, HOURS_PER_DAY, INTERACT, MONEY_EPS, NUM_METERS, OUTSIDE_CODE, WAIT

_F0, _F1 = np.float32(0.0), np.float32(1.0)
_GAIN, _BONUS = INTERACTION.tick_gain.start, INTERACTION.bonus.start
_PRICE, _TICKS = INTERACTION.tick_price, INTERACTION.ticks


class FusedTables:
    """What the kernels read, as numpy arrays and float32 scalars, built once per env, and
    the three entry points: `step`, `reset` and `observe`."""

    def __init__(self, p: WorldParams):
        host = p.ops.to_numpy
        self.action_cost = host(p.action_cost)
        self.cell_delta = host(p.action_cell_delta)
        self.interaction = host(p.interaction)
        self.open_at = host(p.open_at)
        self.depletion = host(p.depletion)
        # the scalars as float32, as torch applies a Python float to a float32 tensor
        self.modulation = np.array(p.modulation, dtype=np.float32)
        self.threshold = np.float32(p.cascade_threshold)
        # the ordered cascade groups flattened: group g's sources are
        # sources[starts[g]:starts[g + 1]], each with its row of strengths in `strengths`
        sources = [host(src) for src, _ in p.cascades]
        self.sources = np.concatenate(sources) if sources else np.zeros(0, np.int64)
        self.strengths = (np.concatenate([host(r) for _, rows in p.cascades for r in rows])
                          if sources else np.zeros((0, NUM_METERS), np.float32))
        self.starts = np.cumsum([0] + [len(s) for s in sources]).astype(np.int64)
        # and the meters each group drains (a strength above 0 from some source): for the
        # others the drain is +0, which changes no meter, so the kernel skips them
        targets = [np.flatnonzero((self.strengths[a:b] != 0).any(0)) for a, b in zip(self.starts, self.starts[1:])]
        self.targets = np.concatenate(targets).astype(np.int64) if targets else np.zeros(0, np.int64)
        self.target_starts = np.cumsum([0] + [len(t) for t in targets]).astype(np.int64)
        self.temporal = bool(p.temporal)
        # resets (towns.reset_towns)
        pack = p.pack
        self.cells = p.cells
        self.random_hour = bool(pack.random_start_hour and p.temporal)
        self.spread = np.float32(pack.start_spread)
        self.initial = host(p.initial)
        self.per_episode = pack.layout_mode == "per_episode"
        self.pool_bit = rng.POOL_BIT.get(pack.layout_pool, -1)  # -1: the key as hashed
        self.deployed_codes = host(p.deployed_codes).astype(np.int8)
        self.cell_to_padded = host(p.cell_to_padded)
        # observations and masks (observation.py); the one-hot grid of towns that do not
        # share a layout is left to the general path (`observes` False)
        lay = p.layout
        self.shared = p.shared_obs is not None
        self.observes = self.shared or not lay.one_hot
        self.shared_obs = host(p.shared_obs) if self.shared else np.zeros((0, lay.size), np.float32)
        self.shared_here = host(p.shared_here) if self.shared else np.zeros(0, np.int64)
        self.observed_cells = host(p.observed_cells)
        self.position = host(p.position)
        self.move_mask = host(p.move_mask)
        self.hour_trig = host(p.hour_trig)
        self.inv_ticks = host(p.inv_ticks)
        self.obs_size = lay.size
        self.obs_at = np.array([lay["grid"].start, lay["affordance"].start, lay["position"].start,
                                lay["meters"].start, lay["time"].start], np.int64)

    def step(self, action, mask, here, cell, meters, hour, progress, current, steps, multiplier, max_steps: int):
        """The new cell, meters, hour, progress, current and steps of every town, and its
        terminated, truncated and masked flags: numpy arrays (fresh), from numpy inputs."""
        n = cell.shape[0]
        out = (np.empty(n, np.int64), np.empty((n, NUM_METERS), np.float32), np.empty(n, np.int64),
               np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
               np.empty(n, np.bool_), np.empty(n, np.bool_), np.empty(n, np.bool_))
        _step_towns(action, mask, here, cell, meters, hour, progress, current, steps, multiplier,
                    self.action_cost, self.cell_delta, self.interaction, self.open_at, self.depletion, self.modulation,
                    self.threshold, self.sources, self.strengths, self.starts, self.targets, self.target_starts,
                    max_steps, self.temporal, *out)
        return out

    def reset(self, which, cell, meters, hour, progress, current, steps, episode, grid, town_seed,
              overwrite: bool = False):
        """`towns.reset_towns` from numpy inputs: the cell, meters, hour, progress, current,
        steps, episode and grid arrays with a new episode begun in the towns where `which` is
        set. Fresh arrays (the grid only where layouts are drawn per episode), or with
        `overwrite` the inputs themselves, written in place."""
        state = (cell, meters, hour, progress, current, steps, episode)
        if overwrite:
            out = state + (grid,)
        else:
            out = tuple(a.copy() for a in state) + (grid.copy() if self.per_episode else grid,)
        _reset_towns(which, town_seed, self.cells, self.random_hour, self.spread, self.initial, self.per_episode,
                     self.pool_bit, self.deployed_codes, self.cell_to_padded, *out)
        return out

    def observe(self, cell, meters, hour, progress, current, grid):
        """`observation.code_here`, `action_mask` and `observe` in one pass (when
        `self.observes`): the [N] codes under the agents, the [N, 6] masks and the [N, D]
        observations, fresh numpy arrays. As in `observe`, the optional landmark parts of
        towns that do not share a layout are left unwritten, for the env to fill."""
        n = cell.shape[0]
        here, mask, obs = np.empty(n, np.int64), np.empty((n, self.move_mask.shape[1]), np.bool_), \
            np.empty((n, self.obs_size), np.float32)
        _observe_towns(cell, meters, hour, progress, current, grid, self.shared, self.shared_obs,
                       self.shared_here, self.cell_to_padded, self.observed_cells, self.position, self.move_mask,
                       self.open_at, self.hour_trig, self.inv_ticks, self.obs_at, here, mask, obs)
        return here, mask, obs


@njit(cache=True, nogil=True, error_model="numpy")
def _observe_towns(cell, meters, hour, progress, current, grid, shared, shared_obs, shared_here, cell_to_padded,
                   observed_cells, position, move_mask, open_at, hour_trig, inv_ticks, obs_at, out_here, out_mask,
                   out_obs):  # pragma: no cover  (compiled; see the test's py_func run)
    at_grid, at_affordance, at_position, at_meters, at_time = obs_at[0], obs_at[1], obs_at[2], obs_at[3], obs_at[4]
    for i in range(cell.shape[0]):
        c = cell[i]
        if shared:
            code = shared_here[c]
            for k in range(shared_obs.shape[1]):  # a loop, not a slice copy: no array object per town
                out_obs[i, k] = shared_obs[c, k]
        else:
            code = np.int64(grid[i, cell_to_padded[c]])
            for k in range(observed_cells.shape[1]):
                out_obs[i, at_grid + k] = np.float32(grid[i, observed_cells[c, k]])
            out_obs[i, at_affordance] = np.float32(code)
            out_obs[i, at_position] = position[c, 0]
            out_obs[i, at_position + 1] = position[c, 1]
        out_here[i] = code
        for k in range(meters.shape[1]):
            out_obs[i, at_meters + k] = meters[i, k]
        out_obs[i, at_time] = hour_trig[hour[i], 0]
        out_obs[i, at_time + 1] = hour_trig[hour[i], 1]
        out_obs[i, at_time + 2] = np.float32(progress[i]) * inv_ticks[current[i]]
        for a in range(move_mask.shape[1]):
            out_mask[i, a] = move_mask[c, a]
        out_mask[i, INTERACT] = open_at[code * HOURS_PER_DAY + hour[i]]


# rng.pcg_hash itself, compiled: plain integer arithmetic, which numba takes as it is written
_hash = njit(cache=True, nogil=True, error_model="numpy")(rng.pcg_hash)


@njit(cache=True, nogil=True, error_model="numpy")
def _uniform(seed, episode, stream, index, pool_bit):  # pragma: no cover  (compiled)
    """rng.uniform's draw number `index` for one town."""
    h = _hash(seed & 0xFFFFFFFF)
    h = _hash(h ^ ((seed >> 32) & 0xFFFFFFFF))
    h = _hash(h ^ (episode & 0xFFFFFFFF))
    k = _hash(h ^ stream)
    if pool_bit >= 0:
        k = (k & 0x7FFFFFFF) | (pool_bit << 31)
    return np.float64(_hash(k ^ _hash(index + 0x9E3779B9))) / 4294967296.0


@njit(cache=True, nogil=True, error_model="numpy")
def _reset_towns(which, town_seed, cells, random_hour, spread, initial, per_episode, pool_bit, deployed_codes,
                 cell_to_padded, cell, meters, hour, progress, current, steps, episode,
                 grid):  # pragma: no cover  (compiled; see the test's py_func run)
    draws = np.empty(cells, np.float64)
    for i in range(which.shape[0]):
        if not which[i]:
            continue
        seed = town_seed[i]
        e = episode[i] + 1
        episode[i] = e
        cell[i] = np.int64(_uniform(seed, e, rng.SPAWN, 0, -1) * cells)
        hour[i] = np.int64(_uniform(seed, e, rng.HOUR, 0, -1) * HOURS_PER_DAY) if random_hour else 0
        for k in range(NUM_METERS):
            if spread == _F0:
                meters[i, k] = initial[k]
            else:
                u = np.float32(_uniform(seed, e, rng.START, k, -1))
                meters[i, k] = initial[k] * (_F1 - spread * u)
        progress[i] = 0
        current[i] = EMPTY_CODE
        steps[i] = 0
        if per_episode:  # towns.place_affordances: the first draws in stable order get the affordances
            for c in range(cells):
                draws[c] = _uniform(seed, e, rng.LAYOUT, c, pool_bit)
            order = np.argsort(draws, kind="mergesort")
            grid[i, :] = OUTSIDE_CODE
            for c in range(cells):
                grid[i, cell_to_padded[c]] = EMPTY_CODE
            for j in range(deployed_codes.shape[0]):
                grid[i, cell_to_padded[order[j]]] = deployed_codes[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _step_towns(action, mask, here, cell, meters, hour, progress, current, steps, multiplier,
                action_cost, cell_delta, interaction, open_at, depletion, modulation, threshold,
                sources, strengths, starts, targets, target_starts, max_steps, temporal,
                out_cell, out_meters, out_hour, out_progress, out_current, out_steps,
                out_terminated, out_truncated, out_masked):  # pragma: no cover  (compiled; see the test's py_func run)
    m = np.empty(NUM_METERS, np.float32)
    pressure = np.empty(sources.shape[0], np.float32)
    for i in range(cell.shape[0]):
        a = action[i]
        allowed = mask[i, a]
        if not allowed:
            a = WAIT
        code = here[i]

        # 1. the action's cost, then an interaction tick or the clamp
        for k in range(NUM_METERS):
            m[k] = meters[i, k] - action_cost[a, k]
        prog = 0
        cur = EMPTY_CODE
        if a == INTERACT:
            cur = code
            continuing = current[i] == code and progress[i] > 0
            attempt = progress[i] + 1 if continuing else 1
            paid = m[MONEY] + np.float32(MONEY_EPS) >= interaction[code, _PRICE]
            completed = paid and np.float32(attempt) >= interaction[code, _TICKS]
            pf = _F1 if paid else _F0
            cf = _F1 if completed else _F0
            for k in range(NUM_METERS):
                x = m[k] + interaction[code, _GAIN + k] * pf + interaction[code, _BONUS + k] * cf
                m[k] = min(max(x, _F0), _F1)
            if paid:
                prog = 0 if completed else attempt
            elif continuing:
                prog = progress[i]
        else:
            for k in range(NUM_METERS):
                m[k] = min(max(m[k], _F0), _F1)

        # 2. depletion scaled per town; 3. fitness-modulated health loss
        for k in range(NUM_METERS):
            m[k] = m[k] - depletion[k] * multiplier[i]
        m[HEALTH] = m[HEALTH] - (modulation[0] - modulation[1] * m[FITNESS])

        # 4. cascades, group by group, each group's pressures from one snapshot; a group
        # whose sources are all at or above the threshold drains +-0, so it is skipped
        for g in range(starts.shape[0] - 1):
            firing = False
            for e in range(starts[g], starts[g + 1]):
                x = threshold - m[sources[e]]
                pressure[e] = x / threshold if x > _F0 else _F0  # max(x, 0) / threshold, dividing only if needed
                firing = firing or x > _F0
            if not firing:
                continue
            for j in range(target_starts[g], target_starts[g + 1]):
                k = targets[j]
                drain = pressure[starts[g]] * strengths[starts[g], k]
                for e in range(starts[g] + 1, starts[g + 1]):
                    drain = drain + pressure[e] * strengths[e, k]
                m[k] = m[k] - drain

        # 5. clamp; 6. termination and truncation; 7. the clock
        for k in range(NUM_METERS):
            out_meters[i, k] = min(max(m[k], _F0), _F1)
        terminated = out_meters[i, HEALTH] <= _F0 or out_meters[i, ENERGY] <= _F0
        n_steps = steps[i] + 1
        h = (hour[i] + 1) % HOURS_PER_DAY if temporal else hour[i]
        if prog > 0 and not open_at[cur * HOURS_PER_DAY + h]:
            prog = 0
        out_cell[i] = cell[i] + cell_delta[a]
        out_hour[i] = h
        out_progress[i] = prog
        out_current[i] = cur
        out_steps[i] = n_steps
        out_terminated[i] = terminated
        out_truncated[i] = n_steps >= max_steps and not terminated
        out_masked[i] = not allowed
