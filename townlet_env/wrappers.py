"""Adapters for RL libraries that read the action mask from the observation.

Townlet reports the mask in `info["action_mask"]` and through `action_masks()`. Tianshou,
RLlib, skrl and TorchRL's `ActionMask` transform instead expect a dict observation holding
the observation and the mask, each library under its own key names:

    env = MaskInObservation(gym.make("Townlet-v0"), obs_key="obs", mask_key="mask")  # Tianshou
    env = MaskInObservation(gym.make("Townlet-v0"), obs_key="observations",
                            mask_key="action_mask", mask_as_box=True)                # RLlib

Recipes for each library are in docs/ecosystem.md.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MaskInObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observation becomes `{obs_key: observation, mask_key: action mask}`.

    The mask is the same one `info["action_mask"]` carries (1 = allowed), as a
    `MultiBinary(n)` of int8 by default, or with `mask_as_box=True` as a float32
    `Box(0, 1, (n,))` for libraries whose model catalogues reject MultiBinary spaces.
    The info dict is passed through unchanged.
    """

    def __init__(self, env: gym.Env, obs_key: str = "observation", mask_key: str = "action_mask",
                 mask_as_box: bool = False):
        gym.utils.RecordConstructorArgs.__init__(self, obs_key=obs_key, mask_key=mask_key, mask_as_box=mask_as_box)
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"MaskInObservation needs a Discrete action space, got {env.action_space}")
        if not (isinstance(obs_key, str) and isinstance(mask_key, str) and obs_key and mask_key
                and obs_key != mask_key):
            raise ValueError(f"obs_key and mask_key must be two different non-empty strings, "
                             f"got {obs_key!r} and {mask_key!r}")
        n = int(env.action_space.n)
        self.obs_key, self.mask_key = obs_key, mask_key
        self._mask_dtype = np.float32 if mask_as_box else np.int8
        mask_space = spaces.Box(0.0, 1.0, (n,), np.float32) if mask_as_box else spaces.MultiBinary(n)
        self.observation_space = spaces.Dict({obs_key: env.observation_space, mask_key: mask_space})

    def _wrap(self, obs, info: dict) -> dict:
        return {self.obs_key: obs, self.mask_key: np.asarray(info["action_mask"], dtype=self._mask_dtype)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._wrap(obs, info), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._wrap(obs, info), reward, terminated, truncated, info
