"""The Gymnasium facade: registration, env_checker, make_vec, autoreset modes, masks,
torch output, fresh buffers and set_difficulty (docs/world.md, "Difficulty" and "Levels")."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import townlet_env
from townlet_env import LEVELS, METERS, TownletEnv, TownletVectorEnv, load_pack

torch.set_num_threads(1)

ENERGY = METERS.index("energy")
WAIT, UP = 5, 0


def _np(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


# --- registration -----------------------------------------------------------------------

def test_registered_id_makes_the_complete_town():
    assert "Townlet-v0" in gym.registry
    env = gym.make("Townlet-v0")
    assert isinstance(env.unwrapped, TownletEnv)
    assert env.unwrapped.pack.name == "L3_temporal_mechanics"
    assert env.unwrapped.params.temporal
    assert env.unwrapped.pack.observability == "partial"
    env.close()


@pytest.mark.parametrize("level", LEVELS)
def test_level_kwarg_selects_each_level(level):
    env = gym.make("Townlet-v0", level=level)
    u = env.unwrapped
    expected = load_pack(level)
    assert u.pack.name == level
    assert u.pack == expected
    assert env.observation_space.shape == (u.obs_layout.size,)
    assert env.action_space == gym.spaces.Discrete(6)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    env.close()


def test_levels_differ_as_specified():
    """docs/world.md "Levels" table: grid, deployed count, observability, temporal, money, step limit."""
    table = {
        "L0_minimal": (3, 1, "full", False, 25.0, 1000),
        "L0_5_dual_resource": (7, 4, "full", False, 100.0, 500),
        "L1_full_observability": (8, 14, "full", False, 50.0, 500),
        "L2_partial_observability": (8, 14, "partial", False, 50.0, 500),
        "L3_temporal_mechanics": (8, 14, "partial", True, 50.0, 500),
    }
    for level, row in table.items():
        p = gym.make("Townlet-v0", level=level).unwrapped.pack
        got = (p.grid_size, len(p.deployed), p.observability, p.temporal_mechanics,
               p.starting_money, p.max_steps)
        assert got == row, level


# --- gymnasium's env checker -------------------------------------------------------------

def _check_strict(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


def test_check_env_default_passes_with_warnings_as_errors():
    _check_strict(gym.make("Townlet-v0").unwrapped)


@pytest.mark.parametrize("level", LEVELS)
def test_check_env_each_level(level):
    _check_strict(gym.make("Townlet-v0", level=level).unwrapped)


@pytest.mark.parametrize("level", ["L0_minimal", "L3_temporal_mechanics"])
def test_check_env_one_hot(level):
    _check_strict(gym.make("Townlet-v0", level=level, one_hot=True).unwrapped)


# --- make_vec ----------------------------------------------------------------------------

def test_make_vec_returns_native_vector_env():
    envs = gym.make_vec("Townlet-v0", num_envs=5)
    assert type(envs) is TownletVectorEnv
    assert envs.num_envs == 5
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.pack.name == "L3_temporal_mechanics"
    d = envs.single_observation_space.shape[0]
    assert envs.observation_space.shape == (5, d)
    assert envs.single_action_space == gym.spaces.Discrete(6)
    assert envs.action_space == gym.spaces.MultiDiscrete([6] * 5)
    obs, info = envs.reset(seed=3)
    assert obs.shape == (5, d) and obs.dtype == np.float32
    assert info["action_mask"].shape == (5, 6) and info["action_mask"].dtype == bool
    obs, rew, term, trunc, info = envs.step(np.full(5, WAIT))
    assert rew.shape == term.shape == trunc.shape == (5,)
    assert term.dtype == bool and trunc.dtype == bool
    envs.close()


@pytest.mark.parametrize("level", LEVELS)
def test_make_vec_level_kwarg(level):
    envs = gym.make_vec("Townlet-v0", num_envs=2, level=level)
    assert type(envs) is TownletVectorEnv
    assert envs.pack.name == level
    single = gym.make("Townlet-v0", level=level)
    assert envs.single_observation_space == single.observation_space


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, "SameStep"])
def test_make_vec_same_step(mode):
    envs = gym.make_vec("Townlet-v0", num_envs=2, autoreset_mode=mode)
    assert type(envs) is TownletVectorEnv
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    # the class metadata is not mutated by one instance
    assert TownletVectorEnv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert gym.make_vec("Townlet-v0", num_envs=2).metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


@pytest.mark.parametrize("mode", ["whenever", 3])
def test_unsupported_autoreset_mode_rejected(mode):
    with pytest.raises(ValueError, match="autoreset_mode"):
        TownletVectorEnv(2, autoreset_mode=mode)


def test_make_vec_sync_wraps_single_envs():
    envs = gym.make_vec("Townlet-v0", num_envs=3, vectorization_mode="sync", level="L0_minimal")
    assert type(envs) is not TownletVectorEnv
    assert all(isinstance(e.unwrapped, TownletEnv) for e in envs.envs)
    native = gym.make_vec("Townlet-v0", num_envs=3, level="L0_minimal")
    assert envs.single_observation_space == native.single_observation_space
    assert envs.observation_space == native.observation_space


# --- autoreset semantics -----------------------------------------------------------------

def _kill(envs, town):
    """Energy so low that the next step ends town's episode (death)."""
    envs.state.meters[town, ENERGY] = 1e-4


def _episode_obs(level, seed, episode):
    """Observation at the start of `episode` (0-based) of a single env seeded `seed`."""
    env = TownletEnv(level)
    obs, _ = env.reset(seed=seed)
    for _ in range(episode):
        obs, _ = env.reset()
    return obs


@pytest.mark.parametrize("level", ["L0_5_dual_resource", "L3_temporal_mechanics"])
def test_next_step_autoreset(level):
    envs = TownletVectorEnv(3, level)
    obs, _ = envs.reset(seed=10)
    _kill(envs, 1)
    obs, rew, term, trunc, info = envs.step(np.full(3, WAIT))
    assert term.tolist() == [False, True, False]
    assert not trunc.any()
    assert rew.tolist() == [1.0, 0.0, 1.0]  # survival: 0 on the death step
    assert obs[1, envs.obs_layout["meters"].start + ENERGY] == 0.0  # the terminal observation
    assert info["episode_step"].tolist() == [1, 1, 1]
    assert "final_obs" not in info

    # the next step resets town 1: its action is ignored, reward 0, flags False
    obs, rew, term, trunc, info = envs.step(np.array([WAIT, UP, WAIT]))
    assert rew.tolist() == [1.0, 0.0, 1.0]
    assert not term.any() and not trunc.any()
    assert info["episode_step"].tolist() == [2, 0, 2]
    assert not info["action_masked"][1]
    np.testing.assert_array_equal(obs[1], _episode_obs(level, 11, 1))
    assert envs.state.episode.tolist() == [0, 1, 0]

    # and it plays on normally afterwards
    obs, rew, term, trunc, info = envs.step(np.full(3, WAIT))
    assert rew.tolist() == [1.0, 1.0, 1.0]
    assert info["episode_step"].tolist() == [3, 1, 3]


def test_next_step_autoreset_after_truncation():
    envs = TownletVectorEnv(2, "L0_minimal")
    envs.reset(seed=0)
    envs.state.steps[0] = envs.params.max_steps - 1
    obs, rew, term, trunc, info = envs.step(np.full(2, WAIT))
    assert trunc.tolist() == [True, False] and not term.any()
    assert rew.tolist() == [1.0, 1.0]  # alive on the truncation step
    obs, rew, term, trunc, info = envs.step(np.full(2, WAIT))
    assert rew.tolist() == [0.0, 1.0]
    assert not trunc.any() and not term.any()
    assert info["episode_step"].tolist() == [0, 2]
    np.testing.assert_array_equal(obs[0], _episode_obs("L0_minimal", 0, 1))


@pytest.mark.parametrize("level", ["L0_5_dual_resource", "L3_temporal_mechanics"])
def test_same_step_autoreset(level):
    envs = TownletVectorEnv(3, level, autoreset_mode="SameStep")
    envs.reset(seed=20)
    _kill(envs, 2)
    obs, rew, term, trunc, info = envs.step(np.full(3, WAIT))
    assert term.tolist() == [False, False, True]
    assert rew.tolist() == [1.0, 1.0, 0.0]
    # the returned observation is already the new episode's
    np.testing.assert_array_equal(obs[2], _episode_obs(level, 22, 1))
    assert info["episode_step"].tolist() == [1, 1, 0]
    assert info["_final_obs"].tolist() == [False, False, True]
    assert info["_final_info"].tolist() == [False, False, True]
    final = info["final_obs"]
    assert final.shape == obs.shape
    assert final[2, envs.obs_layout["meters"].start + ENERGY] == 0.0
    np.testing.assert_array_equal(final[:2], obs[:2])  # rows not done are the live obs
    assert info["final_info"]["episode_step"][2] == 1
    assert envs.state.episode.tolist() == [0, 0, 1]
    # no extra reset step follows
    obs, rew, term, trunc, info = envs.step(np.full(3, WAIT))
    assert rew.tolist() == [1.0, 1.0, 1.0]
    assert info["episode_step"].tolist() == [2, 2, 1]
    assert not info["_final_obs"].any()


def test_same_step_truncation_reports_final_obs():
    envs = TownletVectorEnv(2, "L0_minimal", autoreset_mode=AutoresetMode.SAME_STEP)
    envs.reset(seed=5)
    envs.state.steps[1] = envs.params.max_steps - 1
    obs, rew, term, trunc, info = envs.step(np.full(2, WAIT))
    assert trunc.tolist() == [False, True] and not term.any()
    assert rew.tolist() == [1.0, 1.0]
    assert info["_final_obs"].tolist() == [False, True]
    assert info["final_info"]["episode_step"][1] == envs.params.max_steps
    np.testing.assert_array_equal(obs[1], _episode_obs("L0_minimal", 6, 1))


# --- action masks ------------------------------------------------------------------------

def test_single_env_action_masks_match_info():
    env = gym.make("Townlet-v0", level="L2_partial_observability")
    u = env.unwrapped
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = u.action_masks()
        assert m.dtype == bool and m.shape == (6,)
        np.testing.assert_array_equal(m, info["action_mask"])
        assert m[WAIT]
        _, _, term, trunc, info = env.step(int(rng.integers(6)))
        if term or trunc:
            _, info = env.reset()


@pytest.mark.parametrize("torch_output", [False, True])
def test_vector_action_masks_match_info(torch_output):
    envs = TownletVectorEnv(6, "L3_temporal_mechanics", torch_output=torch_output)
    _, info = envs.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(100):
        m = envs.action_masks()
        assert tuple(m.shape) == (6, 6)
        assert m.dtype in (np.bool_, torch.bool)
        np.testing.assert_array_equal(_np(m), _np(info["action_mask"]))
        assert _np(m)[:, WAIT].all()
        _, _, _, _, info = envs.step(rng.integers(0, 6, 6))


def test_action_masks_before_reset_raise():
    with pytest.raises(RuntimeError, match="reset"):
        TownletEnv().action_masks()
    with pytest.raises(RuntimeError, match="reset"):
        TownletVectorEnv(2).action_masks()
    with pytest.raises(RuntimeError, match="reset"):
        TownletEnv().step(0)
    with pytest.raises(RuntimeError, match="reset"):
        TownletVectorEnv(2).step(np.zeros(2, dtype=np.int64))


# --- torch mode --------------------------------------------------------------------------

def _devices():
    devs = ["cpu"]
    if torch.cuda.is_available():
        devs.append("cuda")
    return devs


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_torch_output_returns_tensors_on_device(device, mode):
    envs = TownletVectorEnv(4, device=device, torch_output=True, autoreset_mode=mode)
    dev = envs.device
    assert dev.type == torch.device(device).type

    def on_dev(t, dtype=None):
        assert torch.is_tensor(t), type(t)
        assert t.device.type == dev.type
        if dtype is not None:
            assert t.dtype == dtype

    obs, info = envs.reset(seed=0)
    on_dev(obs, torch.float32)
    assert tuple(obs.shape) == envs.observation_space.shape
    on_dev(info["action_mask"], torch.bool)
    on_dev(info["episode_step"])
    on_dev(envs.action_masks(), torch.bool)
    _kill(envs, 0)
    for actions in (torch.full((4,), WAIT, device=dev), np.full(4, WAIT), [WAIT] * 4):
        obs, rew, term, trunc, info = envs.step(actions)
        on_dev(obs, torch.float32)
        on_dev(rew, torch.float32)
        on_dev(term, torch.bool)
        on_dev(trunc, torch.bool)
        on_dev(info["action_mask"], torch.bool)
        on_dev(info["action_masked"], torch.bool)
        if mode == AutoresetMode.SAME_STEP:
            on_dev(info["final_obs"], torch.float32)
            on_dev(info["_final_obs"], torch.bool)


def test_torch_and_numpy_outputs_agree():
    a = TownletVectorEnv(5, "L3_temporal_mechanics")
    b = TownletVectorEnv(5, "L3_temporal_mechanics", torch_output=True)
    oa, _ = a.reset(seed=9)
    ob, _ = b.reset(seed=9)
    np.testing.assert_array_equal(oa, _np(ob))
    rng = np.random.default_rng(1)
    for _ in range(300):
        act = rng.integers(0, 6, 5)
        ra = a.step(act)
        rb = b.step(torch.as_tensor(act))
        for x, y in zip(ra[:4], rb[:4]):
            np.testing.assert_array_equal(x, _np(y))
        np.testing.assert_array_equal(ra[4]["action_mask"], _np(rb[4]["action_mask"]))


# --- fresh arrays ------------------------------------------------------------------------

def test_single_env_returns_fresh_arrays():
    env = TownletEnv("L0_5_dual_resource")
    obs0, info0 = env.reset(seed=0)
    keep0 = obs0.copy()
    m = env.action_masks()
    m[:] = False  # mutating a returned mask must not affect the env
    assert env.action_masks()[WAIT]
    info0["action_mask"][:] = False
    assert env.action_masks()[WAIT]
    obs1, _, _, _, info1 = env.step(UP)
    keep1 = obs1.copy()
    assert not np.shares_memory(obs0, obs1)
    np.testing.assert_array_equal(obs0, keep0)
    obs0[:] = -7.0  # scribbling on an old observation does not leak into the env
    obs2, _, _, _, _ = env.step(WAIT)
    assert not np.shares_memory(obs1, obs2)
    np.testing.assert_array_equal(obs1, keep1)
    assert np.all(obs2 >= env.observation_space.low)


@pytest.mark.parametrize("torch_output", [False, True])
def test_vector_env_returns_fresh_arrays(torch_output):
    envs = TownletVectorEnv(3, "L0_5_dual_resource", torch_output=torch_output)
    obs0, info0 = envs.reset(seed=0)
    clone = (lambda x: x.clone()) if torch_output else (lambda x: x.copy())
    keep0 = clone(obs0)
    masks = envs.action_masks()
    masks[:] = False
    info0["action_mask"][:] = False
    assert _np(envs.action_masks())[:, WAIT].all()
    obs1, rew1, term1, trunc1, info1 = envs.step(np.full(3, UP))
    keep1, rew_keep = clone(obs1), clone(rew1)
    np.testing.assert_array_equal(_np(obs0), _np(keep0))
    obs2, rew2, *_ = envs.step(np.full(3, WAIT))
    np.testing.assert_array_equal(_np(obs1), _np(keep1))
    np.testing.assert_array_equal(_np(rew1), _np(rew_keep))
    if torch_output:
        assert obs1.data_ptr() != obs2.data_ptr()
    else:
        assert not np.shares_memory(obs1, obs2)


# --- set_difficulty ----------------------------------------------------------------------

def _energy_after_wait(env_cls_kwargs, multiplier):
    env = TownletVectorEnv(**env_cls_kwargs)
    env.set_difficulty(multiplier)
    env.reset(seed=0)
    before = _np(env.state.meters[:, ENERGY]).copy()
    env.step(np.full(env.num_envs, WAIT))
    return before - _np(env.state.meters[:, ENERGY])


def test_set_difficulty_scales_base_depletion_per_town():
    # L0_minimal at full meters: no cascade fires; energy loss = wait cost + 0.005 * m
    m = np.array([0.0, 0.2, 1.0, 2.0], dtype=np.float32)
    loss = _energy_after_wait(dict(num_envs=4, level="L0_minimal"), m)
    np.testing.assert_allclose(loss, 0.001 + 0.005 * m, atol=1e-6)


def test_set_difficulty_single_env():
    env = TownletEnv("L0_minimal")
    env.set_difficulty(0.5)  # before reset: applied at reset
    env.reset(seed=0)
    assert env.state.multiplier.tolist() == [0.5]
    e0 = env.state.meters[0, ENERGY]
    env.step(WAIT)
    np.testing.assert_allclose(e0 - env.state.meters[0, ENERGY], 0.001 + 0.0025, atol=1e-6)
    env.set_difficulty(np.array([2.0]))  # after reset: applies immediately
    assert env.state.multiplier.tolist() == [2.0]
    env.reset()
    assert env.state.multiplier.tolist() == [2.0]  # and persists across resets


def test_set_difficulty_persists_across_vector_resets():
    envs = TownletVectorEnv(3, "L0_minimal")
    envs.set_difficulty([0.2, 0.5, 0.8])
    envs.reset(seed=0)
    np.testing.assert_allclose(_np(envs.state.multiplier), [0.2, 0.5, 0.8])
    envs.set_difficulty(np.array([1.0, 1.0, 0.0]))
    envs.reset(seed=1)
    np.testing.assert_allclose(_np(envs.state.multiplier), [1.0, 1.0, 0.0])
    _kill(envs, 0)
    envs.step(np.full(3, WAIT))
    envs.step(np.full(3, WAIT))  # autoreset of town 0 keeps its multiplier
    np.testing.assert_allclose(_np(envs.state.multiplier), [1.0, 1.0, 0.0])


@pytest.mark.parametrize("bad, problem", [
    ([1.0, 1.0], "shape"),
    ([[1.0, 1.0, 1.0]], "shape"),
    (1.0, "shape"),
    ([1.0, -0.1, 1.0], ">= 0"),
    ([1.0, float("nan"), 1.0], "finite"),
    ([1.0, float("inf"), 1.0], "finite"),
    (["a", "b", "c"], "number"),
    (np.array([1 + 1j, 1, 1]), "number"),
])
def test_set_difficulty_validation_vector(bad, problem):
    envs = TownletVectorEnv(3, "L0_minimal")
    envs.reset(seed=0)
    envs.set_difficulty([0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match="multipliers") as e:
        envs.set_difficulty(bad)
    assert problem in str(e.value)
    np.testing.assert_allclose(_np(envs.state.multiplier), [0.3, 0.3, 0.3])


@pytest.mark.parametrize("bad", [[1.0, 1.0], -1.0, float("nan"), "x", np.ones((1, 1))])
def test_set_difficulty_validation_single(bad):
    env = TownletEnv("L0_minimal")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="multipliers"):
        env.set_difficulty(bad)
    assert env.state.multiplier.tolist() == [1.0]


def test_set_difficulty_accepts_tensor():
    envs = TownletVectorEnv(2, "L0_minimal", torch_output=True)
    envs.set_difficulty(torch.tensor([0.25, 0.75]))
    envs.reset(seed=0)
    assert torch.allclose(envs.state.multiplier, torch.tensor([0.25, 0.75]))


def test_version_and_exports():
    assert townlet_env.__version__
    for name in townlet_env.__all__:
        assert hasattr(townlet_env, name)
