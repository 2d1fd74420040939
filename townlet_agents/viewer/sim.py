"""The simulation a viewer watches: a TownletVectorEnv, a policy, and compact JSON frames.

One `Simulation` serves every open page: it steps all towns at once and encodes each
frame once (column arrays over towns, numbers rounded), so the cost does not grow with
the number of tabs. The policy decides one step ahead, so a frame shows a state together
with the Q-values and mask of that very state, and the action that led to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

# Everything borrowed from the env's internals and the trainer is imported here and only
# here, so moving those pieces (factories, the oracle, a world schema) is a one-place edit.
from townlet_env import OraclePolicy, TownletVectorEnv
from townlet_env.render import TILE_COLOURS, TILE_LABELS
from townlet_env.schema import (ACTIONS, AFFORDANCES, DEFAULT_LEVEL, DOLLARS_PER_UNIT, EMPTY_CODE, HOURS_PER_DAY,
                                LETHAL_METERS, METER, METERS)

from ..factories import acting_network

ENERGY, HEALTH, MONEY = METER["energy"], METER["health"], METER["money"]
#: Frames carry at most this many towns; any others still step, unseen.
MAX_SHOWN = 64
#: Why an episode ended, as sent in frames: index into this tuple.
CAUSES = ("", "energy", "health", "time limit")
# One character per cell code: a..n for the affordances, '.' for the floor.
_CELL_CHARS = np.frombuffer(("abcdefghijklmnopqrstuvwxyz"[: len(AFFORDANCES)] + ".").encode(), dtype=np.uint8)
assert EMPTY_CODE == len(AFFORDANCES)


class WatchError(ValueError):
    """Bad viewer input (level, checkpoint, run folder): the message is the one line shown."""


@dataclass
class EnvChoice:
    """What the towns are: a level and the pack overrides (None = the pack's own)."""

    level: str | None = None
    reward_mode: str | None = None
    layout_mode: str | None = None
    layout_seed: int | None = None
    landmarks: bool | None = None  # what the checkpoint's network was trained to read

    def with_defaults(self, saved: dict) -> "EnvChoice":
        """Fill every unset field from a checkpoint's env config; the level at least from
        the default."""
        filled = EnvChoice(*(getattr(self, k) if getattr(self, k) is not None else saved.get(k)
                             for k in ("level", "reward_mode", "layout_mode", "layout_seed", "landmarks")))
        filled.level = filled.level or DEFAULT_LEVEL
        filled.landmarks = bool(filled.landmarks)
        return filled


def make_towns(choice: EnvChoice, towns: int, device: torch.device) -> TownletVectorEnv:
    # SAME_STEP: a town that dies shows its new episode at once; the final meters are kept
    # from info["final_obs"] to say what killed it.
    try:
        return TownletVectorEnv(towns, choice.level or DEFAULT_LEVEL, device=device, torch_output=True,
                                autoreset_mode=AutoresetMode.SAME_STEP, reward_mode=choice.reward_mode,
                                layout_mode=choice.layout_mode, layout_seed=choice.layout_seed,
                                landmarks=bool(choice.landmarks),
                                layout_pool="held_out")  # as evaluate: towns training never drew
    except ValueError as e:  # PackError is a ValueError too
        raise WatchError(f"env: {e}") from None


# --- policies -------------------------------------------------------------------------------
# Each has decide(obs, mask) -> (actions [N], q [N, A] or None) without committing to it,
# commit() once the env took those actions, and forget(towns) to start towns afresh.

class RandomPolicy:
    def __init__(self, env: TownletVectorEnv, seed: int):
        self.label = "random"
        self.gen = torch.Generator(device=env.device).manual_seed(seed)

    def decide(self, obs, mask):
        scores = torch.rand(mask.shape, generator=self.gen, device=mask.device).masked_fill(~mask, -1.0)
        return scores.argmax(dim=-1), None

    def commit(self) -> None:
        pass

    def forget(self, towns) -> None:
        pass


class OracleAdapter(RandomPolicy):
    def __init__(self, env: TownletVectorEnv):
        self.label = "oracle"
        self.oracle = OraclePolicy(env)

    def decide(self, obs, mask):
        return self.oracle(obs, mask), None


class NetworkPolicy:
    """Greedy over masked Q-values of a checkpoint's network, recurrent state per town."""

    def __init__(self, payload: dict, env: TownletVectorEnv, label: str):
        self.net, self.weights = acting_network(payload, env, env.device, label)
        step = payload.get("counters", {}).get("global_step")
        self.label = f"{label} ({self.weights} weights" + (f", {step:,} env steps)" if step is not None else ")")
        self.carry = self.net.initial_state(env.num_envs, env.device)
        self.next_carry = self.carry

    @torch.no_grad()
    def decide(self, obs, mask):
        q, self.next_carry = self.net.step(obs, self.carry)
        return q.masked_fill(~mask, float("-inf")).argmax(dim=-1), q

    def commit(self) -> None:
        self.carry = self.next_carry

    def forget(self, towns) -> None:
        keep = (~towns).unsqueeze(-1).to(torch.float32)
        self.carry = tuple(s * keep for s in self.carry)


def env_config(payload: dict) -> dict:
    return payload.get("config", {}).get("env", {}) or {}


# --- the simulation ---------------------------------------------------------------------------

class Simulation:
    def __init__(self, env: TownletVectorEnv, policy, seed: int = 0):
        self.env, self.policy, self.seed = env, policy, seed
        n = env.num_envs
        self.shown = min(n, MAX_SHOWN)
        self.tick = 0
        self.last_action = torch.full((n,), -1, dtype=torch.long, device=env.device)
        self.last_survival = torch.full((n,), -1, dtype=torch.long, device=env.device)
        self.last_cause = torch.zeros(n, dtype=torch.long, device=env.device)
        self.finished = 0
        self.survived = 0  # summed over finished episodes
        self.obs, info = env.reset(seed=seed)
        self.mask = info["action_mask"]
        self._meters = env.obs_layout["meters"].slice
        self._cell_to_padded = env.params.cell_to_padded
        self._decide()

    def _decide(self) -> None:
        self.action, self.q = self.policy.decide(self.obs, self.mask)

    def set_policy(self, policy) -> None:
        """Swap the policy (a newer checkpoint); every town keeps its episode."""
        self.policy = policy
        self._decide()

    def step(self) -> None:
        action = self.action
        self.policy.commit()
        obs, _, terminated, truncated, info = self.env.step(action)
        done = terminated | truncated
        if bool(done.any()):
            meters = info["final_obs"][:, self._meters]
            cause = torch.where(meters[:, ENERGY] <= 0, 1, torch.where(meters[:, HEALTH] <= 0, 2, 3))
            self.last_cause = torch.where(done, cause, self.last_cause)
            steps = info["final_info"]["episode_step"]
            self.last_survival = torch.where(done, steps, self.last_survival)
            self.finished += int(done.sum())
            self.survived += int(steps[done].sum())
            self.policy.forget(done)
        self.obs, self.mask = obs, info["action_mask"]
        self.last_action = action
        self.tick += 1
        self._decide()

    def reset_town(self, town: int) -> None:
        """Start a new episode in one town (the others carry on)."""
        n = self.env.num_envs
        if not 0 <= town < n:
            raise ValueError(f"town must be in 0..{n - 1}, got {town}")
        which = torch.zeros(n, dtype=torch.bool, device=self.env.device)
        which[town] = True
        self.obs, info = self.env.reset(options={"reset_mask": which})
        self.mask = info["action_mask"]
        self.last_action[town] = -1
        self.policy.forget(which)
        self._decide()

    # --- what the page receives -------------------------------------------------------------

    def meta(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The message a page needs once (and again whenever the world changes)."""
        p = self.env.params
        hours = p.open_at.reshape(-1, HOURS_PER_DAY)[: len(AFFORDANCES)].cpu().numpy()
        band = float(p.cascade_threshold)
        # ticks to complete a use; without temporal mechanics every use is instant
        ticks = {a.name: (a.ticks if p.temporal else 1) for a in self.env.pack.affordances}
        return {
            "type": "meta",
            "level": p.pack.name,
            "grid": p.grid_size,
            "towns": self.env.num_envs,
            "shown": self.shown,
            "window": p.pad,  # observation radius under partial observability, 0 when full
            "temporal": bool(p.temporal),
            "max_steps": int(p.max_steps),
            "dollars_per_unit": DOLLARS_PER_UNIT,
            "affordances": [
                {"name": name, "label": TILE_LABELS[i], "colour": "#%02x%02x%02x" % TILE_COLOURS[i],
                 "hours": "".join("1" if h else "0" for h in hours[i]), "ticks": ticks[name]}
                for i, name in enumerate(AFFORDANCES)],
            # below the cascade threshold a meter drags others down; energy and health kill at 0
            "meters": [{"name": m, "critical": None if i == MONEY else band, "lethal": m in LETHAL_METERS}
                       for i, m in enumerate(METERS)],
            "actions": list(ACTIONS),
            "causes": list(CAUSES),
            "policy": self.policy.label,
            "q": self.q is not None,
            **(extra or {}),
        }

    def frame(self) -> dict[str, Any]:
        s, k = self.env.state, self.shown
        codes = s.grid[:k][:, self._cell_to_padded].cpu().numpy().astype(np.int64)
        grids = _CELL_CHARS[codes].view(f"S{codes.shape[1]}").reshape(-1)
        towns = {
            "grid": [g.decode() for g in grids],
            "cell": s.cell[:k].tolist(),
            "hour": s.hour[:k].tolist(),
            "steps": s.steps[:k].tolist(),
            "meters": (s.meters[:k] * 1000).round().long().tolist(),  # per mille
            "progress": s.progress[:k].tolist(),
            "current": s.current[:k].tolist(),
            "action": self.last_action[:k].tolist(),
            "next": self.action[:k].tolist(),
            "mask": ["".join("1" if b else "0" for b in row) for row in self.mask[:k].tolist()],
            "episode": s.episode[:k].tolist(),
            "last": self.last_survival[:k].tolist(),
            "cause": self.last_cause[:k].tolist(),
        }
        if self.q is not None:
            q = torch.nan_to_num(self.q[:k].double(), nan=0.0, posinf=0.0, neginf=0.0)  # JSON has no NaN
            towns["q"] = (q * 1e4).round().div(1e4).tolist()
        mean = self.survived / self.finished if self.finished else None
        return {"type": "frame", "tick": self.tick, "finished": self.finished, "mean_survival": mean,
                "towns": towns}


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)

