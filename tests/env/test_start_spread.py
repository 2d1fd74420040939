"""Lowered starts (`start_spread`): a training option that starts each meter of a new
episode at its own uniform fraction in [1 - s, 1] of the level's start, drawn per town
and episode like spawns and layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from townlet_env import TownletEnv, TownletVectorEnv
from townlet_env.pack import configure_pack

LEVEL = "L2_partial_observability"


def _level_start(env) -> np.ndarray:
    return np.asarray(env.params.initial, dtype=np.float32)


def test_off_by_default_every_episode_starts_at_the_level_meters():
    env = TownletVectorEnv(8, LEVEL)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.state.meters.numpy(), np.tile(_level_start(env), (8, 1)))
    assert env.pack.start_spread == 0.0


@settings(max_examples=20, deadline=None)
@given(spread=st.floats(0.05, 1.0), seed=st.integers(0, 2**40))
def test_lowered_starts_lie_between_the_spread_and_the_level_start(spread, seed):
    env = TownletVectorEnv(64, LEVEL, start_spread=spread)
    env.reset(seed=seed)
    start = _level_start(env)
    fraction = env.state.meters.numpy() / start
    assert (fraction <= 1.0).all() and (fraction >= 1.0 - spread - 1e-6).all()
    # Every meter is drawn on its own: the 64 towns spread over the whole range.
    assert (fraction.min(0) < 1.0 - 0.8 * spread).all() and (fraction.max(0) > 1.0 - 0.2 * spread).all()


def test_each_episode_draws_new_starts_and_a_reseed_repeats_them():
    env = TownletEnv(LEVEL, start_spread=0.9)
    env.reset(seed=5)
    first = env.state.meters.copy()
    env.reset()
    assert not np.array_equal(env.state.meters, first)
    env.reset(seed=5)
    np.testing.assert_array_equal(env.state.meters, first)


@pytest.mark.parametrize("autoreset", ["NextStep", "SameStep"])
def test_vector_towns_start_like_single_envs_seeded_alike(autoreset):
    """Town i of a vector env seeded s and a single env seeded s + i start every episode
    with the same meters, autoresets included."""
    n, seed = 4, 11
    vec = TownletVectorEnv(n, LEVEL, start_spread=0.7, max_steps=3, autoreset_mode=autoreset)
    singles = [TownletEnv(LEVEL, start_spread=0.7, max_steps=3) for _ in range(n)]
    vec.reset(seed=seed)
    for i, env in enumerate(singles):
        env.reset(seed=seed + i)
    wait = 4  # WAIT: every life reaches the 3-step limit (no meter starts below 0.3 of the level's)
    for _ in range(3):
        np.testing.assert_allclose(vec.state.meters.numpy(), np.concatenate([e.state.meters for e in singles]),
                                   rtol=0, atol=1e-6)
        for _ in range(3 if autoreset == "SameStep" else 4):
            vec.step(np.full(n, wait))
        for env in singles:
            for _ in range(3):
                env.step(wait)
            env.reset()
    assert (vec.state.episode.numpy() == 3).all()


def test_the_first_world_step_is_unchanged_by_where_meters_start():
    """Only the start moves: from the same meters, a lowered-start env steps identically."""
    a = TownletVectorEnv(6, LEVEL, torch_output=True, start_spread=0.8)
    b = TownletVectorEnv(6, LEVEL, torch_output=True)
    a.reset(seed=2)
    b.reset(seed=2)
    b.state.meters.copy_(a.state.meters)
    action = torch.tensor([0, 1, 2, 3, 4, 4])
    out_a, out_b = a.step(action), b.step(action)
    assert torch.equal(a.state.meters, b.state.meters) and torch.equal(out_a[1], out_b[1])


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5", None])
def test_a_bad_spread_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="start_spread"):
        configure_pack(LEVEL, start_spread=bad)
    with pytest.raises(ValueError, match="start_spread"):
        TownletEnv(LEVEL, start_spread=bad)
