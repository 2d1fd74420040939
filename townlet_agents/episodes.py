"""The evaluation episode loop, shared by `evaluate` and the trainer's final evaluation so
that both measure survival the same way."""

from __future__ import annotations

import numpy as np
import torch


def run_episodes(env, policy, seed: int, video_frames: list | None = None,
                 record=None) -> tuple[np.ndarray, np.ndarray]:
    """Step until every town has finished one episode; returns survival and returns [N].

    `policy(obs, action_mask) -> actions`; towns are reset with `seed` and run at whatever
    difficulty the env holds (a fresh env: full, 1.0), for at most the level's step limit.
    A `record` (townlet_agents.life_record.LifeRecord) is shown every first life's actions
    and endings.
    """
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    done_once = torch.zeros(n, dtype=torch.bool, device=env.device)
    survival = torch.zeros(n, dtype=torch.long, device=env.device)
    returns = torch.zeros(n, device=env.device)
    for _ in range(env.pack.max_steps):
        if video_frames is not None and not bool(done_once[0]):
            video_frames.append(env.render())
        action = policy(obs, info["action_mask"])
        live = ~done_once
        if record is not None:
            record.acted(obs, action, live)
        obs, reward, terminated, truncated, info = env.step(action)
        survival += live.long()
        returns += reward * live
        if record is not None:
            record.ended(_last_obs(obs, info), terminated, truncated, live & (terminated | truncated))
        done_once |= terminated | truncated
        if bool(done_once.all()):
            break
    return survival.cpu().numpy(), returns.cpu().numpy()


def _last_obs(obs, info):
    """The observation of each town's latest step: with a same-step autoreset the one that
    ended an episode is in info["final_obs"]."""
    if "final_obs" not in info:
        return obs
    return torch.where(info["_final_obs"].unsqueeze(1), info["final_obs"], obs)


def random_policy(device, seed: int):
    """Uniformly random allowed actions, from its own generator."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def policy(obs, mask):
        scores = torch.rand(mask.shape, generator=gen, device=device).masked_fill(~mask, -1.0)
        return scores.argmax(dim=-1)

    return policy
