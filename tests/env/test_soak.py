"""Fuzz soak (slow): 10^7 agent-steps across every level with uniformly random actions,
masked ones included, both autoreset modes and all layout modes; every world invariant
is checked on every step. Run with `pytest -m slow tests/env/test_soak.py`;
TOWNLET_SOAK_STEPS changes the budget."""

from __future__ import annotations

import os

import pytest
import torch

from townlet_env import LEVELS, TownletVectorEnv
from townlet_env.observation import code_here
from townlet_env.schema import INTERACT

TOTAL = int(float(os.environ.get("TOWNLET_SOAK_STEPS", "1e7")))
TOWNS = 4096


def check_invariants(env: TownletVectorEnv, obs, reward, info) -> None:
    p, s = env.params, env.state
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()
    assert ((s.meters >= 0) & (s.meters <= 1)).all()
    assert ((s.cell >= 0) & (s.cell < p.cells)).all()
    assert ((s.hour >= 0) & (s.hour < 24)).all()
    assert (s.progress >= 0).all()
    mask = info["action_mask"]
    x, y, g = s.cell % p.grid_size, s.cell // p.grid_size, p.grid_size
    walls = torch.stack([y > 0, y < g - 1, x > 0, x < g - 1], 1)
    assert torch.equal(mask[:, :4], walls)
    assert mask[:, 5].all()
    here = code_here(p, s)
    assert torch.equal(mask[:, INTERACT], p.open_at[here * 24 + s.hour])
    space = env.single_observation_space
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    assert ((obs >= low) & (obs <= high)).all()


@pytest.mark.slow
def test_ten_million_random_agent_steps_hold_every_invariant():
    torch.set_num_threads(1)
    runs = [(level, mode, layout) for level in LEVELS
            for mode, layout in (("NextStep", "shared"), ("SameStep", "per_episode"))]
    steps_per_run = max(1, -(-TOTAL // (len(runs) * TOWNS)))  # ceil: at least TOTAL in all
    gen = torch.Generator().manual_seed(0)
    done_total = agent_steps = 0
    for level, mode, layout in runs:
        env = TownletVectorEnv(TOWNS, level, torch_output=True, autoreset_mode=mode, layout_mode=layout)
        env.set_difficulty(torch.rand(TOWNS, generator=gen) * 3.0)
        obs, info = env.reset(seed=len(level))
        for _ in range(steps_per_run):
            actions = torch.randint(0, 6, (TOWNS,), generator=gen)
            obs, reward, terminated, truncated, info = env.step(actions)
            check_invariants(env, obs, reward, info)
            done_total += int((terminated | truncated).sum())
        agent_steps += steps_per_run * TOWNS
    print(f"\nsoak: {agent_steps:,} agent-steps, {done_total:,} episodes ended, all invariants held")
    assert agent_steps >= TOTAL and done_total > 0
