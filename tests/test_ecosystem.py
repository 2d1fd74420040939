"""The recipes of docs/ecosystem.md, run with the libraries themselves when installed
(`pip install "townlet[ecosystem]"`; CI installs them). Each checks that the library
reads Townlet's action mask: no action the mask forbids is ever taken."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import townlet_env  # noqa: F401  (registers Townlet-v0)
from townlet_env.wrappers import MaskInObservation

LEVEL = "L0_5_dual_resource"


def test_torchrl_single_env_reads_the_mask_from_info():
    pytest.importorskip("torchrl")
    from torchrl.envs import GymEnv, TransformedEnv
    from torchrl.envs.transforms import ActionMask

    base = GymEnv("townlet_env:Townlet-v0", level=LEVEL, categorical_action_encoding=True)
    base.auto_register_info_dict()  # info values are numpy: their specs are read from them
    env = TransformedEnv(base, ActionMask())
    env.set_seed(0)
    rollout = env.rollout(200, break_when_any_done=False)
    assert rollout["action_mask"].shape == (200, 6)
    assert not rollout["next", "action_masked"].any()
    assert rollout["next", "done"].any()


def test_torchrl_native_vector_env_with_autoreset_disabled():
    pytest.importorskip("torchrl")
    from torchrl.envs import GymWrapper, TransformedEnv
    from torchrl.envs.transforms import ActionMask

    envs = gym.make_vec("Townlet-v0", num_envs=4, level=LEVEL, autoreset_mode="Disabled")
    base = GymWrapper(envs, categorical_action_encoding=True)
    base.auto_register_info_dict()
    env = TransformedEnv(base, ActionMask())
    env.set_seed(0)
    rollout = env.rollout(300, break_when_any_done=False)  # TorchRL resets ended towns by reset_mask
    assert rollout.shape == (4, 300)
    assert not rollout["next", "action_masked"].any()
    assert int(rollout["next", "done"].sum()) >= 4


def test_tianshou_dqn_collects_and_learns_with_the_mask():
    pytest.importorskip("tianshou")
    from tianshou.utils.torch_utils import policy_within_training_step
    from tianshou.algorithm.modelfree.dqn import DQN, DiscreteQLearningPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.utils.net.common import Net

    def make():
        return MaskInObservation(gym.make("Townlet-v0", level=LEVEL), obs_key="obs", mask_key="mask")

    torch.manual_seed(0)
    np.random.seed(0)
    env = make()
    net = Net(state_shape=env.observation_space["obs"].shape, action_shape=int(env.action_space.n), hidden_sizes=[32])
    policy = DiscreteQLearningPolicy(model=net, action_space=env.action_space, eps_training=0.5, eps_inference=0.5)
    algorithm = DQN(policy=policy, optim=AdamOptimizerFactory(lr=1e-3), gamma=0.99, n_step_return_horizon=3,
                    target_update_freq=50)
    envs = DummyVectorEnv([make, make])
    envs.seed(0)
    buffer = VectorReplayBuffer(2000, len(envs))
    collector = Collector(algorithm, envs, buffer, exploration_noise=True)
    collector.reset()
    collector.collect(n_step=400)
    assert len(buffer) == 400
    assert not buffer.info.action_masked.any()
    stored = buffer[buffer.sample_indices(0)]
    assert (stored.obs.mask[np.arange(len(stored)), stored.act] == 1).all()
    with policy_within_training_step(policy):  # what Tianshou's trainers do around an update
        stats = algorithm.update(buffer=buffer, sample_size=64)
    assert np.isfinite(stats.loss)
