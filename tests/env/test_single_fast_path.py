"""The single env's one-town path (dynamics.step_one, observation.observe_one) plays
bitwise the episodes of the general batched code run with N = 1."""

from __future__ import annotations

import numpy as np
import pytest

from townlet_env import LEVELS, TownletEnv
from townlet_env.schema import INTERACT


def _pair(level, **kwargs):
    fast, general = TownletEnv(level, **kwargs), TownletEnv(level, **kwargs)
    assert fast._fast
    general._fast = False
    return fast, general


@pytest.mark.parametrize("reward_mode", [None, "interoception", "baseline_relative"])
@pytest.mark.parametrize("level", LEVELS)
def test_one_town_path_matches_the_general_step(level, reward_mode):
    fast, general = _pair(level, reward_mode=reward_mode, max_steps=80)
    rng = np.random.default_rng(3)
    seen = {"interact": 0, "cascade": 0, "ended": 0}
    for episode in range(6):
        difficulty = [0.3, 1.0, 3.0][episode % 3]  # harsh towns reach the cascades and die early
        fast.set_difficulty(difficulty), general.set_difficulty(difficulty)
        (obs, info), (obs2, info2) = fast.reset(seed=episode), general.reset(seed=episode)
        for t in range(80):
            assert np.array_equal(obs.view(np.int32), obs2.view(np.int32))  # -0.0 and 0.0 differ too
            assert np.array_equal(info["action_mask"], info2["action_mask"])
            assert info["episode_step"] == info2["episode_step"]
            assert np.array_equal(fast.action_masks(), general.action_masks())
            mask = info["action_mask"]
            scores = rng.random(6) + 0.6 * mask[INTERACT] * (np.arange(6) == INTERACT)
            action = int(np.argmax(scores)) if t % 7 else int(rng.integers(0, 6))  # some masked actions too
            a, b = fast.step(action), general.step(action)
            (obs, info), (obs2, info2) = (a[0], a[4]), (b[0], b[4])
            assert a[1:4] == b[1:4] and type(a[1]) is type(b[1])  # reward, terminated, truncated
            assert a[4]["action_masked"] == b[4]["action_masked"]
            for name in ("cell", "meters", "hour", "progress", "current", "steps"):
                x, y = getattr(fast.state, name), getattr(general.state, name)
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
            seen["interact"] += action == INTERACT and mask[INTERACT]
            seen["cascade"] += bool((fast.state.meters < fast.params.cascade_threshold).any())
            assert np.array_equal(obs.view(np.int32), obs2.view(np.int32))
            if a[2] or a[3]:
                seen["ended"] += 1
                break
    assert all(seen.values()), seen


def test_other_layouts_take_the_general_path():
    env = TownletEnv("L2_partial_observability", layout_mode="per_episode")
    assert not env._fast
    obs, _ = env.reset(seed=0)
    assert env.step(0)[0].shape == obs.shape
