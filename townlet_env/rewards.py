"""Reward modes (docs/world.md, "Rewards"), computed per agent from the state after the step."""

from __future__ import annotations

from .params import ENERGY, HEALTH, WorldParams
from .schema import SETTLES_AT_EPISODE_END  # noqa: F401  (the modes paid at the episode's end)
from .state import WorldState


def idle_survival(p: WorldParams, multiplier):
    """R_i: steps an agent that never interacts survives at its own multiplier [N]."""
    return 1.0 / (p.energy_depletion * multiplier + p.idle_energy_cost)


def reward(p: WorldParams, s: WorldState, terminated, truncated):
    """[N] float32 reward for the step that produced state `s`."""
    ops = p.ops
    alive = ops.cast(~terminated, ops.float32)
    if p.reward_mode == "survival":
        return alive
    if p.reward_mode == "interoception":
        m = s.meters
        base, center, w_health, w_energy = p.interoception  # the pack's [rewards.interoception]
        return alive * (base + w_health * (m[:, HEALTH] - center) + w_energy * (m[:, ENERGY] - center))
    ended = ops.cast(terminated | truncated, ops.float32)
    lived = ops.cast(s.steps, ops.float32)
    return ended * (lived - idle_survival(p, s.multiplier))
