"""The landmark parts (townlet_env.landmarks) hold what the observation windows have shown
this episode and nothing else: rebuilt here from the windows and positions alone, they
must match the env's parts exactly, in every autoreset mode and layout mode, in the single
env, and across a checkpoint's env state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from townlet_env import LEVELS, TownletEnv, TownletVectorEnv
from townlet_env.layout import ObsLayout
from townlet_env.schema import NUM_AFFORDANCES

torch.set_num_threads(1)
SETTINGS = dict(deadline=None, database=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])


class Rebuilt:
    """What each agent could write down from its own observations: cell -> code."""

    def __init__(self, env, n: int):
        self.lay, self.g = env.obs_layout, env.pack.grid_size
        self.r = env.pack.window_radius if env.pack.observability == "partial" else None
        self.seen = [dict() for _ in range(n)]

    def add(self, i: int, obs: np.ndarray, new_episode: bool) -> np.ndarray:
        """Record agent i's observation; returns the landmark parts it should read now."""
        lay, g = self.lay, self.g
        if new_episode:
            self.seen[i].clear()
        x, y = np.rint(obs[lay["position"].slice] * (g - 1)).astype(int)
        grid = obs[lay["grid"].slice]
        if self.r is None:  # full observability: the window is the whole town
            for c, code in enumerate(grid):
                self.seen[i][(c % g, c // g)] = code
        else:
            side = 2 * self.r + 1
            for k, code in enumerate(grid):
                tx, ty = x + k % side - self.r, y + k // side - self.r
                if 0 <= tx < g and 0 <= ty < g:
                    self.seen[i][(tx, ty)] = code
        marks = np.zeros((NUM_AFFORDANCES, 3), dtype=np.float32)
        seen_cells = np.zeros((g, g), dtype=np.float32)
        for (tx, ty), code in self.seen[i].items():
            seen_cells[ty, tx] = 1.0
            if code < NUM_AFFORDANCES:
                marks[int(code)] = (1.0, (tx - x) / (g - 1), (ty - y) / (g - 1))
        return np.concatenate([marks.reshape(-1), seen_cells.reshape(-1)])


def _parts(env, obs):
    lay = env.obs_layout
    return np.asarray(obs)[..., lay["landmarks"].start : lay["seen_cells"].stop]


def _random_actions(rng, mask):
    return np.array([rng.choice(np.flatnonzero(row)) for row in np.asarray(mask)])


@settings(**SETTINGS)
@given(level=st.sampled_from(LEVELS), seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["NextStep", "SameStep"]),
       layout_mode=st.sampled_from(["shared", "per_episode"]), steps=st.integers(1, 300))
def test_vector_parts_are_rebuilt_from_observations(level, seed, mode, layout_mode, steps):
    env = TownletVectorEnv(3, level, landmarks=True, autoreset_mode=mode, layout_mode=layout_mode, max_steps=60)
    rebuilt, rng = Rebuilt(env, 3), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    for i in range(3):
        np.testing.assert_allclose(_parts(env, obs[i]), rebuilt.add(i, obs[i], True), atol=1e-6)
    for _ in range(steps):
        obs, _, term, trunc, info = env.step(_random_actions(rng, info["action_mask"]))
        for i in range(3):
            if mode == "SameStep" and (term[i] or trunc[i]):  # the ended life's last view, then the new one
                final = info["final_obs"][i]
                np.testing.assert_allclose(_parts(env, final), rebuilt.add(i, final, False), atol=1e-6)
            new = bool(info["episode_step"][i] == 0)
            np.testing.assert_allclose(_parts(env, obs[i]), rebuilt.add(i, obs[i], new), atol=1e-6)
        assert env.observation_space.contains(np.asarray(obs, dtype=np.float32))


def test_memory_grows_as_the_agent_walks_and_empties_at_a_new_episode():
    env = TownletVectorEnv(1, "L2_partial_observability", landmarks=True, layout_mode="per_episode",
                           autoreset_mode="Disabled")
    lay = env.obs_layout
    obs, _ = env.reset(seed=0)
    first = obs[0, lay["seen_cells"].slice].sum()
    assert 0 < first < env.pack.grid_size ** 2
    for action in (1, 1, 1, 3, 3, 3):  # DOWN x3, RIGHT x3, WAIT where a move is not allowed
        obs, *_ = env.step(np.array([action if env.action_masks()[0, action] else 5]))
    assert obs[0, lay["seen_cells"].slice].sum() > first
    obs, _ = env.reset(options={"reset_mask": np.array([True])})
    rebuilt = Rebuilt(env, 1)
    np.testing.assert_allclose(_parts(env, obs[0]), rebuilt.add(0, obs[0], True), atol=1e-6)


def test_full_observability_sees_every_deployed_affordance_at_once():
    env = TownletVectorEnv(2, "L1_full_observability", landmarks=True, layout_mode="per_episode")
    obs, _ = env.reset(seed=7)
    lay = env.obs_layout
    marks = obs[:, lay["landmarks"].slice].reshape(2, NUM_AFFORDANCES, 3)
    assert (obs[:, lay["seen_cells"].slice] == 1).all()
    assert marks[:, :, 0].sum(1).tolist() == [len(env.pack.deployed)] * 2


def test_single_env_matches_the_vector_env():
    single = gym.make("Townlet-v0", level="L2_partial_observability", layout_mode="per_episode", landmarks=True)
    vector = TownletVectorEnv(1, "L2_partial_observability", layout_mode="per_episode", landmarks=True,
                              autoreset_mode="Disabled")
    o, _ = single.reset(seed=4)
    vo, _ = vector.reset(seed=4)
    rng = np.random.default_rng(2)
    for _ in range(700):
        np.testing.assert_array_equal(o, vo[0])
        a = int(rng.choice(np.flatnonzero(single.unwrapped.action_masks())))
        o, _, term, trunc, _ = single.step(a)
        vo, *_ = vector.step(np.array([a]))
        if term or trunc:
            np.testing.assert_array_equal(o, vo[0])
            o, _ = single.reset()
            vo, _ = vector.reset(options={"reset_mask": np.array([True])})


def test_shared_layout_single_env_keeps_its_fast_path():
    env = TownletEnv("L2_partial_observability", landmarks=True)
    obs, _ = env.reset(seed=1)
    assert env._fast
    rebuilt = Rebuilt(env, 1)
    np.testing.assert_allclose(_parts(env, obs), rebuilt.add(0, obs, True), atol=1e-6)
    for a in (0, 0, 2, 2, 5):
        obs, *_ = env.step(a if env.action_masks()[a] else 5)
        np.testing.assert_allclose(_parts(env, obs), rebuilt.add(0, obs, False), atol=1e-6)


def test_state_dict_carries_the_memory():
    env = TownletVectorEnv(4, "L2_partial_observability", landmarks=True, layout_mode="per_episode")
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(40):
        obs, *_, info = env.step(_random_actions(rng, info["action_mask"]))
    saved = env.state_dict()
    other = TownletVectorEnv(4, "L2_partial_observability", landmarks=True, layout_mode="per_episode")
    restored, _ = other.load_state_dict(saved)
    np.testing.assert_array_equal(restored, obs)
    del saved["seen"]
    with pytest.raises(ValueError, match="seen"):
        other.load_state_dict(saved)


def test_layout_appends_the_parts_and_keeps_every_other_offset():
    plain = ObsLayout.build(25)
    with_marks = ObsLayout.build(25, town_cells=64)
    assert with_marks.names() == plain.names() + ["landmarks", "seen_cells"]
    for part in plain.parts:
        assert with_marks[part.name] == part
    assert with_marks["landmarks"].shape == (NUM_AFFORDANCES, 3)
    assert with_marks.size == plain.size + 3 * NUM_AFFORDANCES + 64
