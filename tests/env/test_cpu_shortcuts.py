"""The CPU paths give bitwise the results of the every-row branch a GPU runs: the compiled
one-pass step, resets and observations (`townlet_env.fused`, the CPU default) and the torch
shortcuts (`TorchOps.rows_where`: the interaction, the cascades and the resets computed for
the towns involved only)."""

from __future__ import annotations

import pytest
import torch

from townlet_env import LEVELS, TownletVectorEnv
from townlet_env.schema import INTERACT


CASES = [dict(layout_mode=None), dict(layout_mode="per_episode"), dict(layout_mode="per_episode", start_spread=0.6),
         dict(layout_mode="per_town", layout_pool="held_out", start_spread=0.3)]
VARIANTS = [dict(one_hot=True, landmarks=True),
            dict(layout_mode="per_episode", one_hot=True, autoreset_mode="SameStep"),
            dict(layout_mode="per_episode", landmarks=True, autoreset_mode="SameStep", layout_pool="train"),
            dict(reward_mode="interoception", start_spread=0.5), dict(reward_mode="baseline_relative")]


@pytest.mark.parametrize("options", CASES)
@pytest.mark.parametrize("level", LEVELS)
def test_cpu_paths_match_the_every_row_branch(level, options):
    _play_three_ways(level, options)


@pytest.mark.parametrize("options", VARIANTS)
@pytest.mark.parametrize("level", ["L2_partial_observability", "L3_temporal_mechanics"])
def test_cpu_paths_match_with_other_observations_autoresets_and_rewards(level, options):
    _play_three_ways(level, options)


def _play_three_ways(level, options):
    n = 24
    envs = [TownletVectorEnv(n, level, torch_output=True, max_steps=60, **options) for _ in range(3)]
    assert envs[0].params.fused is not None  # the compiled path, the CPU default
    envs[1].params.fused = None  # the torch shortcuts, at any size
    envs[1].ops.subset_min_rows = 0
    envs[2].ops.read_flags = False  # the GPU branch
    harsh = torch.linspace(0.5, 4.0, n)  # fast depletion: cascades, deaths and resets early
    outs = []
    for env in envs:
        env.set_difficulty(harsh)
        outs.append(env.reset(seed=4))
    gen = torch.Generator().manual_seed(1)
    counts = torch.zeros(3)
    for _ in range(150):
        mask = outs[0][1]["action_mask"]
        scores = torch.rand(mask.shape, generator=gen) * mask
        scores[:, INTERACT] += 0.8 * mask[:, INTERACT]  # interact whenever allowed, mostly
        action = scores.argmax(1)
        outs = [env.step(action) for env in envs]
        gpu = outs[2]
        for out in outs[:2]:
            for a, b in zip(out[:4], gpu[:4]):
                assert a.dtype == b.dtype and torch.equal(a, b)
            assert torch.equal(out[0].view(torch.int32), gpu[0].view(torch.int32))  # -0.0 vs 0.0 too
            assert out[4].keys() == gpu[4].keys()
            for key, value in out[4].items():
                if torch.is_tensor(value):
                    assert torch.equal(value, gpu[4][key]), key
            if "final_obs" in gpu[4]:
                assert torch.equal(out[4]["final_obs"].view(torch.int32), gpu[4]["final_obs"].view(torch.int32))
        for name in ("cell", "meters", "hour", "progress", "current", "steps", "grid", "episode"):
            for env in envs[:2]:
                assert torch.equal(getattr(env.state, name), getattr(envs[2].state, name)), name
        obs, _, term, trunc, info = gpu
        outs = [(o[0], o[4]) for o in outs]
        meters = obs[:, envs[0].obs_layout["meters"].slice]
        counts += torch.stack([(action == INTERACT).sum(), (meters < 0.3).any(1).sum(), (term | trunc).sum()])
    assert (counts > 0).all()  # interactions, low meters (cascades) and resets all happened


def test_rows_are_selected_only_where_it_pays():
    env = TownletVectorEnv(4, "L2_partial_observability", torch_output=True)
    flags = torch.tensor([True, False, True, False])
    assert env.ops.rows_where(flags) is None  # a small batch: every row is as cheap
    env.ops.subset_min_rows = 4
    assert env.ops.rows_where(flags).tolist() == [0, 2]
    env.ops.read_flags = False  # the GPU branch never reads flags
    assert env.ops.rows_where(flags) is None
