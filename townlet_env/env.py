"""TownletEnv: one town as a plain `gymnasium.Env`.

It runs the same world step as the vector env (townlet_env.dynamics) on numpy arrays with
a town dimension of 1, because for a single town numpy's per-call overhead is a fraction
of torch's. Seeded alike, town i of `TownletVectorEnv(seed=s)` and `TownletEnv` reset with
seed `s + i` play identical episodes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from . import dynamics, observation, towns
from .backend import NumpyOps
from .landmarks import Landmarks
from .pack import configure_pack
from .params import WorldParams
from .schema import ACTIONS, HOURS_PER_DAY, INTERACT, NUM_ACTIONS
from .spaces import action_space, observation_space
from .validation import check_multipliers

_OPS = NumpyOps()


class TownletEnv(gym.Env):
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        level: str = "L3_temporal_mechanics",
        *,
        reward_mode: str | None = None,
        layout_mode: str | None = None,
        layout_seed: int | None = None,
        max_steps: int | None = None,
        layout_pool: str | None = None,
        start_spread: float = 0.0,
        one_hot: bool = False,
        landmarks: bool = False,
        render_mode: str | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.pack = configure_pack(level, reward_mode, layout_mode, layout_seed, max_steps, layout_pool, start_spread)
        self.params = WorldParams.build(self.pack, _OPS, one_hot=one_hot, landmarks=landmarks)
        self._landmarks = Landmarks(self.params, 1) if landmarks else None
        self.render_mode = render_mode
        self.observation_space = observation_space(self.params.layout)
        self.action_space = action_space()
        self.state = None
        self._mask = None
        self._here = None
        self._multiplier = np.ones(1, dtype=np.float32)
        self._action = np.zeros(1, dtype=np.int64)
        # One town in a shared layout: the step and observation in Python ints (see
        # dynamics.step_one); other layouts take the general batched code with N = 1.
        self._fast = self.params.shared_obs is not None
        self._slices = observation.one_town_slices(self.params) if self._fast else None
        self._tables = dynamics.one_town_tables(self.params) if self._fast else None

    @property
    def obs_layout(self):
        return self.params.layout

    def set_difficulty(self, multiplier) -> None:
        """This town's depletion multiplier (a float >= 0, or an array of shape [1])."""
        self._multiplier = check_multipliers(multiplier, 1)
        if self.state is not None:
            self.state.multiplier = self._multiplier.copy()

    def action_masks(self) -> np.ndarray:
        """[6] bool mask of allowed actions (sb3-contrib MaskablePPO convention)."""
        if self.state is None:
            raise RuntimeError("call reset() before action_masks()")
        return self._mask[0].copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. A seed restarts the town's episode counter; None continues it."""
        super().reset(seed=seed)
        p = self.params
        if seed is not None or self.state is None:
            town_seed = np.array([seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))],
                                 dtype=np.int64)
            self.state = towns.new_state(p, town_seed, self.pack.layout_seed)
        self.state.multiplier = self._multiplier.copy()
        self.state = towns.reset_towns(p, self.state, np.ones(1, dtype=bool))
        return self._observe()

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        a = self._check(action)
        if self._fast:
            self.state, out = dynamics.step_one(self.params, self._tables, self.state, int(a[0]), self._mask[0],
                                                int(self._here[0]))
        else:
            self.state, out = dynamics.step(self.params, self.state, a, self._mask, self._here)
        obs, info = self._observe()
        # numpy, not Python, values (TorchRL reads their dtype); a 0-d bool array rather than
        # np.bool_, which SyncVectorEnv would batch into an object array
        info["action_masked"] = np.array(out.masked[0], dtype=bool)
        return obs, float(out.reward[0]), bool(out.terminated[0]), bool(out.truncated[0]), info

    def render(self):
        from .render import render_ansi, render_rgb

        if self.state is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "ansi":
            return render_ansi(self.params, self.state, 0)
        if self.render_mode == "rgb_array":
            return render_rgb(self.params, self.state, 0)
        return None

    def _check(self, action) -> np.ndarray:
        """Fast path for a plain int; anything else goes through the full validation."""
        if type(action) is int or isinstance(action, np.integer):
            if 0 <= action < NUM_ACTIONS:
                self._action[0] = action
                return self._action
            raise ValueError(f"action must be in 0..{NUM_ACTIONS - 1} ({', '.join(ACTIONS)}); got {action}")
        a = np.asarray(action)
        if a.shape not in ((), (1,)):
            raise ValueError(f"action must be a single integer; got an array of shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"action must be an integer; got dtype {a.dtype}")
        return self._check(int(a.reshape(-1)[0]))

    def _observe(self):
        obs, info = self._observe_one() if self._fast else self._observe_any()
        if self._landmarks is not None:
            self._landmarks.write(obs[None, :], self.state)
        return obs, info

    def _observe_any(self):
        """`_observe` for any layout: the batched code with one town."""
        self._here = here = observation.code_here(self.params, self.state)
        self._mask = observation.action_mask(self.params, self.state, here)
        obs = observation.observe(self.params, self.state, here)[0]
        return obs, {"action_mask": self._mask[0].copy(), "episode_step": np.int64(self.state.steps[0])}

    def _observe_one(self):
        """`_observe` for a shared layout, with the town's cell, hour and code as ints."""
        p, s = self.params, self.state
        cell, hour = int(s.cell[0]), int(s.hour[0])
        here = int(p.shared_here[cell])
        mask = p.move_mask[cell].copy()
        mask[INTERACT] = p.open_at[here * HOURS_PER_DAY + hour]
        self._here, self._mask = p.shared_here[cell : cell + 1], mask[None, :]
        obs = observation.observe_one(p, s, cell, hour, self._slices)
        return obs, {"action_mask": mask.copy(), "episode_step": s.steps[0]}
