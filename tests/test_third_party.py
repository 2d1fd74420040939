"""Unmodified third-party agents and wrappers run on Townlet-v0.

Each test is tiny (a few hundred env steps on small levels) and only checks that the
library's own code path works end to end on the env: spaces, masks, vector API, wrappers.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import townlet_env  # noqa: F401  (registers Townlet-v0)

LEVEL = "L0_5_dual_resource"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _fast_env(level: str = LEVEL) -> gym.Env:
    env = gym.make("Townlet-v0", level=level)
    return env


# ---------------------------------------------------------------- stable-baselines3 / sb3-contrib


def test_maskable_ppo_learns_and_predicts_with_masks():
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks

    env = _fast_env()
    model = sb3_contrib.MaskablePPO(
        "MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(128)
    assert model.num_timesteps >= 128

    obs, info = env.reset(seed=1)
    for _ in range(20):
        mask = env.get_wrapper_attr("action_masks")()
        np.testing.assert_array_equal(mask, info["action_mask"])
        action, _ = model.predict(obs, action_masks=mask, deterministic=False)
        assert mask[int(action)], "MaskablePPO chose a masked action"
        obs, _, terminated, truncated, info = env.step(int(action))
        if terminated or truncated:
            obs, info = env.reset()

    # The SB3 VecEnv path (env_method("action_masks")) sees the same masks.
    vec_masks = get_action_masks(model.get_env())
    assert vec_masks.shape == (1, 6) and vec_masks.dtype == bool


def test_dqn_learns():
    sb3 = pytest.importorskip("stable_baselines3")
    env = _fast_env()
    model = sb3.DQN(
        "MlpPolicy", env, learning_starts=16, buffer_size=500, batch_size=16, seed=0, device="cpu"
    )
    model.learn(100)
    assert model.num_timesteps >= 100
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(int(action))


def test_ppo_learns():
    sb3 = pytest.importorskip("stable_baselines3")
    env = _fast_env()
    model = sb3.PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    assert model.num_timesteps >= 128


# ---------------------------------------------------------------- CleanRL-style vector loop


def test_cleanrl_style_vector_loop_tracks_episodic_returns():
    num_envs = 8
    envs = gym.make_vec("Townlet-v0", num_envs=num_envs, level="L0_minimal")
    assert isinstance(envs, townlet_env.TownletVectorEnv)
    envs.set_difficulty(np.full(num_envs, 50.0))  # episodes end within a few steps
    rng = np.random.default_rng(0)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (num_envs,) + envs.single_observation_space.shape

    ep_return = np.zeros(num_envs)
    prev_done = np.zeros(num_envs, dtype=bool)
    finished: list[float] = []
    for _ in range(50):
        mask = envs.action_masks()
        np.testing.assert_array_equal(mask, info["action_mask"])
        actions = (rng.random(mask.shape) * mask).argmax(axis=1)
        obs, reward, terminated, truncated, info = envs.step(actions)
        assert not info["action_masked"].any()
        # NEXT_STEP autoreset: the step after a done is a reset row (reward 0), not a transition.
        ep_return = np.where(prev_done, 0.0, ep_return + reward)
        done = terminated | truncated
        finished.extend(ep_return[done].tolist())
        prev_done = done
    envs.close()
    assert len(finished) >= num_envs
    assert all(np.isfinite(finished))


# ---------------------------------------------------------------- Gymnasium vector wrappers


def test_gymnasium_record_episode_statistics():
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    num_envs = 4
    base = gym.make_vec("Townlet-v0", num_envs=num_envs, level="L0_minimal")
    base.set_difficulty(np.full(num_envs, 50.0))
    envs = RecordEpisodeStatistics(base)
    obs, info = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = False
    for _ in range(50):
        mask = info["action_mask"]
        actions = (rng.random(mask.shape) * mask).argmax(axis=1)
        obs, reward, terminated, truncated, info = envs.step(actions)
        if (terminated | truncated).any():
            assert "episode" in info
            ended = info["_episode"]
            np.testing.assert_array_equal(ended, terminated | truncated)
            assert (info["episode"]["l"][ended] > 0).all()
            assert np.isfinite(info["episode"]["r"][ended]).all()
            seen = True
            break
    envs.close()
    assert seen, "no episode ended within 50 steps"


def test_gymnasium_numpy_to_torch():
    # Gymnasium's array-conversion wrappers need the optional array-api-compat package
    # (pip install "gymnasium[array-api]"), which is not a Townlet dependency.
    pytest.importorskip("array_api_compat")
    from gymnasium.wrappers.vector import NumpyToTorch

    num_envs = 4
    envs = NumpyToTorch(gym.make_vec("Townlet-v0", num_envs=num_envs, level="L0_minimal"))
    obs, info = envs.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.shape[0] == num_envs
    mask = info["action_mask"]
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
    for _ in range(5):
        actions = torch.multinomial(mask.float(), 1).squeeze(1)
        obs, reward, terminated, truncated, info = envs.step(actions)
        mask = info["action_mask"]
        assert isinstance(obs, torch.Tensor) and isinstance(reward, torch.Tensor)
        assert isinstance(terminated, torch.Tensor) and terminated.dtype == torch.bool
    envs.close()
