"""townlet_env.wrappers.MaskInObservation: the mask inside a dict observation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from townlet_env.wrappers import MaskInObservation


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
@pytest.mark.parametrize("as_box", [False, True])
def test_mask_rides_in_the_observation_under_chosen_keys(as_box):
    env = MaskInObservation(gym.make("Townlet-v0", level="L0_5_dual_resource"), obs_key="obs", mask_key="mask",
                            mask_as_box=as_box)
    check_env(env.unwrapped)
    check_env(env, skip_render_check=True)
    space = env.observation_space
    assert set(space.spaces) == {"obs", "mask"}
    assert isinstance(space["mask"], spaces.Box if as_box else spaces.MultiBinary)
    obs, info = env.reset(seed=0)
    for _ in range(20):
        assert space.contains(obs)
        np.testing.assert_array_equal(obs["mask"].astype(bool), info["action_mask"])
        assert obs["mask"].dtype == (np.float32 if as_box else np.int8)
        action = env.action_space.sample(mask=info["action_mask"].astype(np.int8))
        obs, _, terminated, truncated, info = env.step(action)
        assert not info["action_masked"]


def test_bad_keys_and_spaces_are_refused():
    env = gym.make("Townlet-v0", level="L0_minimal")
    with pytest.raises(ValueError, match="two different"):
        MaskInObservation(env, obs_key="x", mask_key="x")
    with pytest.raises(ValueError, match="Discrete"):
        MaskInObservation(_ContinuousStub())


class _ContinuousStub(gym.Env):
    action_space = spaces.Box(-1, 1, (1,))
    observation_space = spaces.Box(-1, 1, (1,))
