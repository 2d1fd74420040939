"""The CPU shortcuts (`TorchOps.rows_where`: compute the interaction, the cascades and the
resets for the towns involved only) give bitwise the results of the every-row branch a
GPU runs."""

from __future__ import annotations

import pytest
import torch

from townlet_env import LEVELS, TownletVectorEnv
from townlet_env.schema import INTERACT


@pytest.mark.parametrize("layout_mode,start_spread", [(None, 0.0), ("per_episode", 0.0), ("per_episode", 0.6)])
@pytest.mark.parametrize("level", LEVELS)
def test_cpu_shortcuts_match_the_every_row_branch(level, layout_mode, start_spread):
    n = 24
    envs = [TownletVectorEnv(n, level, torch_output=True, layout_mode=layout_mode, max_steps=60,
                             start_spread=start_spread) for _ in range(2)]
    assert envs[0].ops.read_flags
    envs[0].ops.subset_min_rows = 0  # the shortcuts at any size
    envs[1].ops.read_flags = False
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
        (obs, reward, term, trunc, info), (obs2, reward2, term2, trunc2, info2) = outs
        for a, b in ((obs, obs2), (reward, reward2), (term, term2), (trunc, trunc2),
                     (info["action_mask"], info2["action_mask"])):
            assert torch.equal(a, b)
        assert torch.equal(obs.view(torch.int32), obs2.view(torch.int32))  # -0.0 vs 0.0 too
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
