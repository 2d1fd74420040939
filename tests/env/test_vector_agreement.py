"""The native vector env agrees step by step with Gymnasium's SyncVectorEnv over single envs.

Town i of `TownletVectorEnv.reset(seed=s)` and single env i of
`gym.make_vec(..., vectorization_mode="sync").reset(seed=s)` (seeded s + i) must play the
same episodes, including every autoreset, under both NEXT_STEP and SAME_STEP. Masks and
flags must agree exactly; floats to 1e-6 (numpy and torch matmuls may round differently).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from townlet_env import TownletVectorEnv

torch.set_num_threads(1)

ATOL = 1e-6
SHORT_PACK = """\
base = "town.toml"

[level]
grid_size = 4
affordances = ["Bed", "HomeMeal", "Job", "Park"]
observability = "partial"
window_radius = 1
temporal_mechanics = true
starting_money = 20.0
max_steps = 60
reward_mode = "survival"
layout_mode = "per_episode"
layout_seed = 3
random_start_hour = true
"""


@pytest.fixture
def short_pack(tmp_path):
    """A tiny level whose episodes are truncated at 60 steps (terminations are rare)."""
    import townlet_env

    (tmp_path / "town.toml").write_bytes(
        (townlet_env.pack.pack_path("L0_minimal").parent / "town.toml").read_bytes())
    path = tmp_path / "short.toml"
    path.write_text(SHORT_PACK)
    return str(path)


def _make_pair(n, mode, **kwargs):
    native = gym.make_vec("Townlet-v0", num_envs=n, autoreset_mode=mode, **kwargs)
    assert type(native) is TownletVectorEnv
    sync = gym.make_vec("Townlet-v0", num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode}, **kwargs)
    assert sync.metadata["autoreset_mode"] == mode
    return native, sync


def _cmp_float(a, b, what, t):
    np.testing.assert_allclose(a, b, rtol=0, atol=ATOL, err_msg=f"{what} at step {t}")


def _cmp_exact(a, b, what, t):
    np.testing.assert_array_equal(a, b, err_msg=f"{what} at step {t}")


def run_agreement(n, mode, steps, seed, multipliers=None, action_seed=0, **kwargs):
    """Step both envs with the same random actions; return (terminations, truncations)."""
    native, sync = _make_pair(n, mode, **kwargs)
    if multipliers is not None:
        native.set_difficulty(multipliers)
        for env, m in zip(sync.envs, multipliers):
            env.unwrapped.set_difficulty(float(m))
    on, infon = native.reset(seed=seed)
    os_, infos = sync.reset(seed=seed)
    _cmp_float(on, os_, "reset obs", -1)
    _cmp_exact(infon["action_mask"], infos["action_mask"], "reset mask", -1)
    _cmp_exact(infon["episode_step"], infos["episode_step"], "reset episode_step", -1)
    _cmp_exact(native.action_masks(), np.stack([e.unwrapped.action_masks() for e in sync.envs]),
               "action_masks()", -1)

    rng = np.random.default_rng(action_seed)
    ends = np.zeros(2, dtype=np.int64)
    autoresets = 0
    prev_done = np.zeros(n, dtype=bool)
    for t in range(steps):
        # mostly random, with stretches of WAIT / INTERACT so that interactions complete
        r = rng.random()
        if r < 0.15:
            actions = np.full(n, 4)
        elif r < 0.25:
            actions = np.full(n, 5)
        else:
            actions = rng.integers(0, 6, n)
        on, rn, ten, trn, infon = native.step(actions)
        os_, rs, tes, trs, infos = sync.step(actions)
        _cmp_float(on, os_, "obs", t)
        _cmp_float(rn, rs, "reward", t)
        _cmp_exact(ten, tes, "terminated", t)
        _cmp_exact(trn, trs, "truncated", t)
        _cmp_exact(infon["action_mask"], infos["action_mask"], "action_mask", t)
        _cmp_exact(infon["episode_step"], infos["episode_step"], "episode_step", t)
        _cmp_exact(native.action_masks(), infos["action_mask"], "action_masks()", t)
        # the sync env has no "action_masked" for a town it reset in this step
        have = infos.get("_action_masked", np.zeros(n, bool))
        if have.any():
            _cmp_exact(infon["action_masked"][have], infos["action_masked"][have], "action_masked", t)
        done = ten | trn
        if mode == AutoresetMode.NEXT_STEP:
            # a town done last step was reset now: reward 0, flags False, episode_step 0
            assert not (rn[prev_done] != 0).any() and not done[prev_done].any()
            assert (infon["episode_step"][prev_done] == 0).all()
            assert not infon["action_masked"][prev_done].any()
            autoresets += int(prev_done.sum())
            prev_done = done
        else:
            _cmp_exact(infon["_final_obs"], done, "_final_obs", t)
            _cmp_exact(infos.get("_final_obs", np.zeros(n, bool)), done, "sync _final_obs", t)
            for i in np.flatnonzero(done):
                _cmp_float(infon["final_obs"][i], infos["final_obs"][i], f"final_obs[{i}]", t)
                _cmp_exact(infon["final_info"]["episode_step"][i],
                           infos["final_info"]["episode_step"][i], f"final episode_step[{i}]", t)
                _cmp_exact(infon["final_info"]["action_mask"][i],
                           infos["final_info"]["action_mask"][i], f"final action_mask[{i}]", t)
            # a town reset within the step starts its new episode at step 0
            assert (infon["episode_step"][done] == 0).all()
            autoresets += int(done.sum())
        ends += [int(ten.sum()), int(trn.sum())]
    # the towns' internal state agrees too (episode counters, clocks, layouts)
    for i, env in enumerate(sync.envs):
        s = env.unwrapped.state
        assert int(native.state.episode[i]) == int(s.episode[0])
        assert int(native.state.hour[i]) == int(s.hour[0])
        assert int(native.state.cell[i]) == int(s.cell[0])
        _cmp_exact(native.state.grid[i].numpy(), s.grid[0], f"grid[{i}]", steps)
    assert autoresets > 0
    return ends


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_agreement_l0_minimal(mode):
    ends = run_agreement(4, mode, 600, seed=7, level="L0_minimal")
    assert ends[0] >= 6  # several deaths


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_agreement_dual_resource(mode):
    ends = run_agreement(4, mode, 350, seed=123, level="L0_5_dual_resource", action_seed=1)
    assert ends[0] >= 6


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_agreement_temporal_with_difficulty_and_baseline_reward(mode):
    """Per-town multipliers feed both depletion and the baseline_relative reward."""
    ends = run_agreement(4, mode, 300, seed=1000, level="L3_temporal_mechanics",
                         multipliers=np.array([0.2, 0.5, 0.8, 1.0], dtype=np.float32),
                         reward_mode="baseline_relative", action_seed=2)
    assert ends[0] >= 3


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_agreement_partial_one_hot_interoception_per_town(mode):
    ends = run_agreement(3, mode, 250, seed=42, level="L2_partial_observability",
                         one_hot=True, reward_mode="interoception", layout_mode="per_town",
                         action_seed=3)
    assert ends[0] >= 3


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_agreement_with_truncations(short_pack, mode):
    """Truncations at a 60-step limit, random start hours and per-episode layouts."""
    ends = run_agreement(3, mode, 200, seed=5, level=short_pack, action_seed=4)
    assert ends[1] >= 6


def test_agreement_with_seed_list_and_reseeding():
    """reset(seed=[...]) gives town i seed[i]; a reseed mid-run restarts both alike."""
    native, sync = _make_pair(3, AutoresetMode.NEXT_STEP, level="L0_5_dual_resource")
    on, _ = native.reset(seed=[11, 5, 99])
    singles = [gym.make("Townlet-v0", level="L0_5_dual_resource") for _ in range(3)]
    rows = [e.reset(seed=s)[0] for e, s in zip(singles, [11, 5, 99])]
    _cmp_float(on, np.stack(rows), "seed list reset", -1)
    rng = np.random.default_rng(9)
    for round_ in range(2):
        on, _ = native.reset(seed=300 + round_)
        os_, _ = sync.reset(seed=300 + round_)
        _cmp_float(on, os_, "reseed", round_)
        for t in range(100):
            a = rng.integers(0, 6, 3)
            rn = native.step(a)
            rs = sync.step(a)
            _cmp_float(rn[0], rs[0], "obs", t)
            _cmp_float(rn[1], rs[1], "reward", t)
            _cmp_exact(rn[2], rs[2], "terminated", t)
            _cmp_exact(rn[3], rs[3], "truncated", t)
