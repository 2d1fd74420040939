"""TownletVectorEnv: N independent towns stepped as one batch (the native vector env).

Autoreset (see docs/environment.md):
  NEXT_STEP (default) -- the step after an episode ended resets that town: its action is
      ignored, reward 0, terminated/truncated False, the observation is the new episode's.
  SAME_STEP -- a town whose episode ends is reset within the same step: the returned
      observation is the new episode's; the last one is in info["final_obs"] ([N, D],
      rows valid where info["_final_obs"]) and info["final_info"].
  DISABLED -- nothing resets by itself: reset ended towns with
      reset(options={"reset_mask": mask}) before the next step.
Every info value is batched ([N, ...]) and comes with a boolean `_key` array saying which
towns it holds a value for, as in Gymnasium's SyncVectorEnv.
Torch mode (`torch_output=True`) returns tensors on the env's device and takes tensor
actions there, with no host copies; numpy is the default. `validate_inputs=False` skips
the value checks on tensor actions and multipliers (they read values on the host); only
for callers whose actions are valid by construction, such as the trainer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import dynamics, observation, rewards, towns
from .backend import TorchOps
from .landmarks import Landmarks
from .pack import configure_pack
from .params import WorldParams
from .spaces import action_space, observation_space
from .validation import check_actions, check_multipliers

_MODES = {m.value: m for m in AutoresetMode}


class TownletVectorEnv(VectorEnv):
    metadata = {"render_modes": ["ansi", "rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        level: str = "L3_temporal_mechanics",
        *,
        device: str | torch.device = "cpu",
        torch_output: bool = False,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        reward_mode: str | None = None,
        layout_mode: str | None = None,
        layout_seed: int | None = None,
        max_steps: int | None = None,
        layout_pool: str | None = None,
        start_spread: float = 0.0,
        one_hot: bool = False,
        landmarks: bool = False,
        render_mode: str | None = None,
        validate_inputs: bool = True,
    ):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        mode = _MODES.get(autoreset_mode, autoreset_mode)
        if not isinstance(mode, AutoresetMode):
            raise ValueError(f"autoreset_mode must be an AutoresetMode or one of {sorted(_MODES)}, "
                             f"got {autoreset_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.pack = configure_pack(level, reward_mode, layout_mode, layout_seed, max_steps, layout_pool, start_spread)
        self.ops = TorchOps(device)
        self.device = self.ops.device
        self.params = WorldParams.build(self.pack, self.ops, one_hot=one_hot, landmarks=landmarks)
        if self.ops.read_flags:  # torch on the CPU: the step as compiled loops (a GPU never reads host arrays)
            from .fused import FusedTables  # here, not at the top: numba loads only for CPU vector envs
            self.params.fused = FusedTables(self.params)
        # The optional landmark parts (townlet_env.landmarks), with each agent's memory of
        # the cells it has seen this episode.
        self._landmarks = Landmarks(self.params, num_envs) if landmarks else None
        self.num_envs = num_envs
        self.torch_output = torch_output
        self.validate_inputs = validate_inputs
        self.render_mode = render_mode
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.single_observation_space = observation_space(self.params.layout)
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.state = None
        self._mask = None
        self._here = None
        self._prev_done = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    # --- public helpers ------------------------------------------------------------------

    @property
    def obs_layout(self):
        """Which slice of the observation is which part (townlet_env.layout.ObsLayout)."""
        return self.params.layout

    def idle_survival(self, multipliers) -> torch.Tensor:
        """Steps an agent that never interacts survives at each depletion multiplier (the
        `baseline_relative` reward's R_i): a difficulty's baseline, for curricula."""
        m = torch.as_tensor(multipliers, dtype=torch.float64, device=self.device)
        return rewards.idle_survival(self.params, m)

    def set_difficulty(self, multipliers) -> None:
        """Per-town depletion multipliers, shape [num_envs], each >= 0 (the curriculum's)."""
        if not self.validate_inputs and torch.is_tensor(multipliers):
            m = multipliers.to(self.device, torch.float32)  # trusted caller: no host sync
        else:
            m = check_multipliers(multipliers, self.num_envs, self.device)
        if self.state is None:
            self._pending_multiplier = m
        else:
            self.state.multiplier = m

    def action_masks(self):
        """[num_envs, 6] bool mask of allowed actions (sb3-contrib MaskablePPO convention)."""
        self._require_reset()
        return self._out(self._mask.clone())

    def state_dict(self) -> dict:
        """The towns' full state as tensors (for checkpoints): resuming from it continues
        every episode exactly where it was."""
        self._require_reset()
        from dataclasses import asdict

        extra = {"seen": self._landmarks.seen.clone()} if self._landmarks is not None else {}
        return {**{k: v.clone() for k, v in asdict(self.state).items()}, "prev_done": self._prev_done.clone(),
                **extra}

    def load_state_dict(self, state: dict):
        """Restore `state_dict()` output; returns the current (obs, info) like reset()."""
        from dataclasses import fields

        from .state import WorldState

        names = [f.name for f in fields(WorldState)]
        missing = [k for k in names + ["prev_done"] + (["seen"] if self._landmarks is not None else [])
                   if k not in state]
        if missing:
            raise ValueError(f"env state is missing {missing}")
        if tuple(state["cell"].shape) != (self.num_envs,):
            raise ValueError(f"env state holds {tuple(state['cell'].shape)[0]} towns, this env has {self.num_envs}")
        self.state = WorldState(**{k: state[k].to(self.device) for k in names})
        self._prev_done = state["prev_done"].to(self.device)
        if self._landmarks is not None:
            self._landmarks.seen = state["seen"].to(self.device).clone()
        return self._observe()

    # --- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Reset every town. Town i uses seed `seed + i` (or `seed[i]` from a list).

        `options={"reset_mask": mask}` ([N] bool, Gymnasium's partial reset) starts a new
        episode only in the masked towns, continuing their seeds; the others carry on.
        """
        if options and "reset_mask" in options and self.state is not None:
            mask = torch.as_tensor(np.asarray(options["reset_mask"]) if not torch.is_tensor(options["reset_mask"])
                                   else options["reset_mask"], device=self.device)
            if mask.shape != (self.num_envs,) or mask.dtype != torch.bool:
                raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},)")
            if seed is not None:
                raise ValueError("reset(seed=...) with a reset_mask is not supported: masked towns continue "
                                 "their own seeds (reset all towns to reseed)")
            self.state = towns.reset_towns(self.params, self.state, mask)
            self._prev_done = self._prev_done & ~mask
            return self._observe(present=mask)
        # gymnasium seeds self.np_random from an int only; a per-town list needs no generator
        super().reset(seed=None if isinstance(seed, (list, tuple, np.ndarray)) else seed)
        seeds = _town_seeds(seed, self.num_envs, self.np_random)
        p = self.params
        multiplier = getattr(self, "_pending_multiplier", None)
        if self.state is not None:
            multiplier = self.state.multiplier
        self.state = towns.new_state(p, torch.as_tensor(seeds, device=self.device), self.pack.layout_seed)
        if multiplier is not None:
            self.state.multiplier = multiplier
        self.state = towns.reset_towns(p, self.state, torch.ones_like(self._prev_done))
        self._prev_done = torch.zeros_like(self._prev_done)
        obs, info = self._observe()
        return obs, info

    def step(self, actions):
        self._require_reset()
        if not self.validate_inputs and torch.is_tensor(actions):
            action = actions  # trusted caller (the trainer): skip the value check's host sync
        else:
            action = check_actions(actions, self.num_envs, self.device)
            if self.autoreset_mode == AutoresetMode.DISABLED and bool(self._prev_done.any()):
                ended = torch.nonzero(self._prev_done).flatten().tolist()
                raise RuntimeError(f"towns {ended} have ended their episodes; with autoreset_mode=DISABLED reset "
                                   "them first: reset(options={'reset_mask': mask})")
        p, before = self.params, self.state
        after, out = dynamics.step(p, before, action, self._mask, self._here)
        if self.autoreset_mode == AutoresetMode.DISABLED:
            self.state = after
            reward, terminated, truncated = out.reward, out.terminated, out.truncated
            self._prev_done = terminated | truncated
            obs, info = self._observe()
            self._add_info(info, "action_masked", out.masked)
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            # Towns whose episode ended last step start a new one instead of stepping.
            resetting = self._prev_done
            self.state = towns.reset_towns(p, after, resetting, overwrite=True)  # `after` is ours alone
            keep = ~resetting
            reward = out.reward * keep
            terminated, truncated = out.terminated & keep, out.truncated & keep
            self._prev_done = terminated | truncated
            obs, info = self._observe()
            # a town reset in this step took no action (SyncVectorEnv has no value for it)
            self._add_info(info, "action_masked", out.masked & keep, present=keep)
        else:
            done = out.terminated | out.truncated
            self.state = after
            final_obs, final_info = self._observe(present=done)
            self._add_info(final_info, "action_masked", out.masked, present=done)
            self.state = towns.reset_towns(p, after, done, overwrite=True)
            reward, terminated, truncated = out.reward, out.terminated, out.truncated
            obs, info = self._observe()
            # an ended town's step is reported in final_info; its new episode took no action yet
            self._add_info(info, "action_masked", out.masked, present=~done)
            info["final_obs"], info["_final_obs"] = final_obs, self._out(done)
            info["final_info"], info["_final_info"] = final_info, self._out(done.clone())
        return obs, self._out(reward), self._out(terminated), self._out(truncated), info

    def render(self):
        from .render import render_ansi, render_rgb

        self._require_reset()
        if self.render_mode == "ansi":
            return render_ansi(self.params, self.state, 0)
        if self.render_mode == "rgb_array":
            return render_rgb(self.params, self.state, 0)
        return None

    # --- sub-environment access, as SyncVectorEnv offers it -------------------------------
    # The towns have no environment objects of their own: they are rows of one batch. So
    # these act on this env once, and shape the answer like SyncVectorEnv's, one entry per
    # town: a result with one row per town is split into its rows, anything else repeated.

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method `name` (or read attribute `name`); one result per town."""
        value = self._attribute(name)
        if callable(value):
            value = value(*args, **kwargs)
        if (isinstance(value, np.ndarray) or torch.is_tensor(value)) and value.ndim and len(value) == self.num_envs:
            return tuple(value)
        return (value,) * self.num_envs

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute `name`, once per town."""
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set attribute `name`. The towns share it, so a list or tuple (one value per town,
        as SyncVectorEnv takes) must hold the same value for every town."""
        self._attribute(name)
        if isinstance(values, (list, tuple)):
            if len(values) != self.num_envs:
                raise ValueError(f"set_attr({name!r}): got {len(values)} values for {self.num_envs} towns")
            if any(v is not values[0] and v != values[0] for v in values[1:]):
                raise ValueError(f"set_attr({name!r}): the towns share one value (they are one batch); "
                                 "per-town difficulty goes through set_difficulty()")
            values = values[0]
        setattr(self, name, values)

    def _attribute(self, name: str):
        if name.startswith("_") or not hasattr(self, name):
            raise AttributeError(f"TownletVectorEnv has no public attribute {name!r}")
        return getattr(self, name)

    # --- internals -----------------------------------------------------------------------

    def _require_reset(self):
        if self.state is None:
            raise RuntimeError("call reset() before step(), action_masks() or render()")

    def _observe(self, present: torch.Tensor | None = None) -> tuple[Any, dict]:
        p, s = self.params, self.state
        if p.fused is not None and p.fused.observes and self.ops.read_flags:  # one compiled pass (CPU)
            host = self.ops.to_numpy
            arrays = p.fused.observe(host(s.cell), host(s.meters), host(s.hour), host(s.progress), host(s.current),
                                     host(s.grid))
            self._here, self._mask, obs = (self.ops.from_numpy(a) for a in arrays)
        else:
            self._here = here = observation.code_here(p, s)
            self._mask = observation.action_mask(p, s, here)
            obs = observation.observe(p, s, here)
        if self._landmarks is not None:
            self._landmarks.write(obs, self.state)
        info: dict = {}
        self._add_info(info, "action_mask", self._mask.clone(), present)
        self._add_info(info, "episode_step", self.state.steps.clone(), present)
        return self._out(obs), info

    def _add_info(self, info: dict, key: str, value: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """info[key] and its `_key` mask (which towns hold a value), as SyncVectorEnv adds them."""
        info[key] = self._out(value)
        info[f"_{key}"] = self._out(present.clone() if present is not None
                                    else torch.ones(self.num_envs, dtype=torch.bool, device=self.device))

    def _out(self, x: torch.Tensor):
        return x if self.torch_output else x.cpu().numpy()


def _town_seeds(seed, n: int, np_random: np.random.Generator) -> np.ndarray:
    if seed is None:
        base = int(np_random.integers(0, 2**31 - 1))
        return np.arange(base, base + n, dtype=np.int64)
    if isinstance(seed, (list, tuple, np.ndarray)):
        if len(seed) != n:
            raise ValueError(f"got {len(seed)} seeds for {n} towns")
        return np.asarray(seed, dtype=np.int64)
    return np.arange(seed, seed + n, dtype=np.int64)
