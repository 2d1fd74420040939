"""Layouts (docs/world.md, "Layout"): shared / per_town / per_episode, distinct cells, every deployed
affordance exactly once, spawns on the grid and uniform; a reset never redraws a shared
layout nor advances a per-episode one twice."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from townlet_env import AFFORDANCES, LEVELS, TownletEnv, TownletVectorEnv

torch.set_num_threads(1)

EMPTY, OUTSIDE = len(AFFORDANCES), len(AFFORDANCES) + 1
WAIT = 5
MODES = ("shared", "per_town", "per_episode")


def _np(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def grids(env):
    """[N, P] padded code grids of a single or vector env."""
    return _np(env.state.grid).copy()


def inside(env, grid):
    """The town's own cells (row-major) out of a padded grid row."""
    return grid[_np(env.params.cell_to_padded)]


def _kill(env, towns):
    for i in towns:
        env.state.meters[i, 0] = 1e-4  # energy: the next step ends the episode


def autoreset(env, towns):
    """Finish the episodes of `towns` and let the NEXT_STEP autoreset start new ones."""
    _kill(env, towns)
    _, _, term, _, _ = env.step(np.full(env.num_envs, WAIT))
    assert term[list(towns)].all()
    env.step(np.full(env.num_envs, WAIT))


def check_layout(env, grid):
    """Deployed affordances once each on distinct cells, the rest floor; border outside."""
    pack = env.pack
    cells = inside(env, grid)
    assert cells.shape == (pack.grid_size**2,)
    codes, counts = np.unique(cells, return_counts=True)
    found = dict(zip(codes.tolist(), counts.tolist()))
    deployed = {AFFORDANCES.index(a) for a in pack.deployed}
    for code in deployed:
        assert found.get(code) == 1, (AFFORDANCES[code], found)
    assert set(found) <= deployed | {EMPTY}
    assert found.get(EMPTY, 0) == pack.grid_size**2 - len(deployed)
    border = np.ones(grid.shape[0], dtype=bool)
    border[_np(env.params.cell_to_padded)] = False
    assert (grid[border] == OUTSIDE).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", LEVELS)
def test_layout_well_formed(level, mode):
    env = TownletVectorEnv(8, level, layout_mode=mode)
    env.reset(seed=17)
    for _ in range(2):
        for g in grids(env):
            check_layout(env, g)
        autoreset(env, range(8))
    single = TownletEnv(level, layout_mode=mode)
    for seed in range(5):
        single.reset(seed=seed)
        check_layout(single, grids(single)[0])
        single.reset()
        check_layout(single, grids(single)[0])


def test_default_mode_is_shared():
    for level in LEVELS:
        assert gym.make("Townlet-v0", level=level).unwrapped.pack.layout_mode == "shared"


# --- shared ------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["L0_5_dual_resource", "L1_full_observability",
                                   "L3_temporal_mechanics"])
def test_shared_same_everywhere_and_always(level):
    env = TownletVectorEnv(6, level)
    env.reset(seed=0)
    g0 = grids(env)
    assert (g0 == g0[0]).all()  # same in every town
    autoreset(env, [1, 4])
    np.testing.assert_array_equal(grids(env), g0)  # an autoreset keeps it
    env.reset(seed=999)
    np.testing.assert_array_equal(grids(env), g0)  # another seed keeps it
    env.reset()
    np.testing.assert_array_equal(grids(env), g0)
    # single envs with any seed see the same layout, across their resets
    single = TownletEnv(level)
    for seed in (0, 5, 123456):
        single.reset(seed=seed)
        np.testing.assert_array_equal(grids(single)[0], g0[0])
        single.reset()
        np.testing.assert_array_equal(grids(single)[0], g0[0])


def test_shared_layout_follows_layout_seed():
    a = TownletVectorEnv(2, "L1_full_observability", layout_seed=0)
    b = TownletVectorEnv(2, "L1_full_observability", layout_seed=1)
    c = TownletEnv("L1_full_observability", layout_seed=1)
    a.reset(seed=0)
    b.reset(seed=0)
    c.reset(seed=50)
    assert not np.array_equal(grids(a), grids(b))
    np.testing.assert_array_equal(grids(b)[0], grids(c)[0])


def test_shared_layout_seeds_differ():
    layouts = set()
    for s in range(10):
        env = TownletEnv("L1_full_observability", layout_seed=s)
        env.reset(seed=0)
        layouts.add(grids(env)[0].tobytes())
    assert len(layouts) == 10


# --- per_town ----------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["L0_5_dual_resource", "L3_temporal_mechanics"])
def test_per_town_differs_between_towns_constant_across_episodes(level):
    env = TownletVectorEnv(6, level, layout_mode="per_town")
    env.reset(seed=100)
    g0 = grids(env)
    assert len({row.tobytes() for row in g0}) == 6  # every town its own layout
    for _ in range(3):
        autoreset(env, range(6))
        np.testing.assert_array_equal(grids(env), g0)
    assert _np(env.state.episode).tolist() == [3] * 6
    env.reset(seed=100)  # the same seeds give the same towns
    np.testing.assert_array_equal(grids(env), g0)
    env.reset(seed=200)  # other town seeds, other layouts
    assert not np.array_equal(grids(env), g0)
    # town i is the single env seeded 100 + i, across its own resets
    for i in range(6):
        single = TownletEnv(level, layout_mode="per_town")
        single.reset(seed=100 + i)
        for _ in range(3):
            np.testing.assert_array_equal(grids(single)[0], g0[i])
            single.reset()


def test_per_town_follows_layout_seed():
    a = TownletVectorEnv(3, "L1_full_observability", layout_mode="per_town", layout_seed=0)
    b = TownletVectorEnv(3, "L1_full_observability", layout_mode="per_town", layout_seed=1)
    a.reset(seed=0)
    b.reset(seed=0)
    for ra, rb in zip(grids(a), grids(b)):
        assert not np.array_equal(ra, rb)


# --- per_episode -------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["L0_5_dual_resource", "L2_partial_observability"])
def test_per_episode_changes_at_every_reset(level):
    single = TownletEnv(level, layout_mode="per_episode")
    single.reset(seed=7)
    seen = [grids(single)[0]]
    for _ in range(6):
        single.reset()
        seen.append(grids(single)[0])
    assert len({g.tobytes() for g in seen}) == len(seen)
    assert single.state.episode.tolist() == [6]  # one reset, one episode
    single.reset(seed=7)  # a seed replays the same sequence of layouts
    np.testing.assert_array_equal(grids(single)[0], seen[0])
    single.reset()
    np.testing.assert_array_equal(grids(single)[0], seen[1])

    # the vector env's autoreset draws the same sequence for town 0 (seed 7)
    env = TownletVectorEnv(3, level, layout_mode="per_episode")
    env.reset(seed=7)
    np.testing.assert_array_equal(grids(env)[0], seen[0])
    before = grids(env)
    autoreset(env, [0])
    after = grids(env)
    np.testing.assert_array_equal(after[0], seen[1])
    np.testing.assert_array_equal(after[1:], before[1:])  # other towns untouched mid-episode
    assert _np(env.state.episode).tolist() == [1, 0, 0]


def test_per_episode_same_step_autoreset():
    env = TownletVectorEnv(2, "L0_5_dual_resource", layout_mode="per_episode", autoreset_mode="SameStep")
    env.reset(seed=3)
    before = grids(env)
    _kill(env, [1])
    _, _, term, _, info = env.step(np.full(2, WAIT))
    assert term.tolist() == [False, True]
    after = grids(env)
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.array_equal(after[1], before[1])
    single = TownletEnv("L0_5_dual_resource", layout_mode="per_episode")
    single.reset(seed=4)
    single.reset()
    np.testing.assert_array_equal(after[1], grids(single)[0])


def test_per_episode_sync_vector_env_resets_once_per_episode():
    """Gymnasium's wrappers around the single env must not reset twice."""
    native = TownletVectorEnv(2, "L0_5_dual_resource", layout_mode="per_episode")
    sync = gym.make_vec("Townlet-v0", num_envs=2, vectorization_mode="sync",
                        level="L0_5_dual_resource", layout_mode="per_episode")
    native.reset(seed=11)
    sync.reset(seed=11)
    for e in sync.envs:
        e.unwrapped.state.meters[0, 0] = 1e-4
    native.state.meters[:, 0] = 1e-4
    for _ in range(2):
        native.step(np.full(2, WAIT))
        sync.step(np.full(2, WAIT))
    for i, e in enumerate(sync.envs):
        assert int(e.unwrapped.state.episode[0]) == 1 == int(native.state.episode[i])
        np.testing.assert_array_equal(e.unwrapped.state.grid[0], grids(native)[i])


# --- spawns ------------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_spawn_on_grid_and_uniform(level):
    n = 3000
    env = TownletVectorEnv(n, level)
    env.reset(seed=0)
    cells = env.pack.grid_size**2
    spawn = _np(env.state.cell)
    assert ((spawn >= 0) & (spawn < cells)).all()
    counts = np.bincount(spawn, minlength=cells)
    assert counts.shape == (cells,)
    expected = n / cells
    # Pearson chi-square against uniform; the 99.9% quantile for <= 63 dof is below 110
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 110, (chi2, counts)
    assert (counts > 0).all()


def test_spawn_changes_between_episodes():
    env = TownletEnv("L1_full_observability")
    env.reset(seed=1)
    spawns = [int(env.state.cell[0])]
    for _ in range(30):
        env.reset()
        spawns.append(int(env.state.cell[0]))
    assert len(set(spawns)) > 10


@pytest.mark.parametrize("mode", MODES)
def test_reset_with_seed_after_play_restores_layout_and_spawn(mode):
    """A reseed starts from the same layout and spawn whatever happened before."""
    env = TownletEnv("L3_temporal_mechanics", layout_mode=mode)
    obs0, _ = env.reset(seed=42)
    g0, c0 = grids(env), int(env.state.cell[0])
    rng = np.random.default_rng(0)
    for _ in range(3):
        for _ in range(50):
            env.step(int(rng.integers(6)))
        env.reset()
    obs1, _ = env.reset(seed=42)
    np.testing.assert_array_equal(grids(env), g0)
    assert int(env.state.cell[0]) == c0
    np.testing.assert_array_equal(obs0, obs1)


def test_observation_shows_the_layout():
    """Full observability: the grid part is the layout's codes (identity, not presence)."""
    env = TownletEnv("L1_full_observability", layout_mode="per_episode")
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(obs[env.obs_layout["grid"].slice], inside(env, grids(env)[0]))


# --- layout pools: held-out towns ----------------------------------------------------------

@given(seed=st.integers(0, 2**40), episode=st.integers(0, 10**7))
@settings(max_examples=200, deadline=None)
def test_training_and_held_out_pools_use_disjoint_halves_of_the_key_space(seed, episode):
    """A layout is a function of its 32-bit key; the train pool's keys have the top bit
    clear and the held-out pool's set, so no (seed, episode) of training ever produces the
    key of an evaluation town."""
    from townlet_env import rng
    from townlet_env.backend import NumpyOps

    ops = NumpyOps()
    s, e = np.array([seed], dtype=np.int64), np.array([episode], dtype=np.int64)
    draws = {pool: rng.uniform(ops, s, e, rng.LAYOUT, 4, pool) for pool in ("any", "train", "held_out")}
    k = int(rng.keys(s, e, rng.LAYOUT)[0])
    expect = {"train": k & 0x7FFFFFFF, "held_out": k | 0x80000000}
    for pool, key in expect.items():
        bits = rng.pcg_hash(np.array([key], dtype=np.int64)[:, None] ^ rng.pcg_hash(np.arange(4)[None, :] + 0x9E3779B9))
        np.testing.assert_array_equal(draws[pool], bits / 4294967296.0)
    assert (expect["train"] >> 31, expect["held_out"] >> 31) == (0, 1)


@pytest.mark.parametrize("mode", ["per_town", "per_episode"])
def test_pools_draw_different_towns_from_the_same_seeds(mode):
    envs = {pool: TownletVectorEnv(16, "L2_partial_observability", layout_mode=mode, layout_pool=pool)
            for pool in ("any", "train", "held_out")}
    got = {}
    for pool, env in envs.items():
        env.reset(seed=3)
        got[pool] = {g.tobytes() for g in grids(env)}
        for g in grids(env):
            check_layout(env, g)
    assert not got["train"] & got["held_out"]
    legacy = TownletVectorEnv(16, "L2_partial_observability", layout_mode=mode)
    legacy.reset(seed=3)
    assert {g.tobytes() for g in grids(legacy)} == got["any"]  # the default is unchanged


def test_pools_leave_the_shared_town_alone():
    """A fixed-town agent is evaluated on its own town: no pool applies in shared mode."""
    towns = []
    for pool in ("train", "held_out"):
        env = TownletVectorEnv(2, "L2_partial_observability", layout_pool=pool)
        env.reset(seed=0)
        towns.append(grids(env))
    np.testing.assert_array_equal(towns[0], towns[1])


def test_unknown_pool_is_refused():
    with pytest.raises(ValueError, match="layout_pool must be one of"):
        TownletVectorEnv(1, layout_pool="test")
