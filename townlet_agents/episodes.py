"""The evaluation episode loop, shared by `evaluate` and the trainer's final evaluation so
that both measure survival the same way."""

from __future__ import annotations

import numpy as np
import torch


def run_episodes(env, policy, seed: int, video_frames: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Step until every town has finished one episode; returns survival and returns [N].

    `policy(obs, action_mask) -> actions`; towns are reset with `seed` and run at whatever
    difficulty the env holds (a fresh env: full, 1.0), for at most the level's step limit.
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
        obs, reward, terminated, truncated, info = env.step(action)
        live = ~done_once
        survival += live.long()
        returns += reward * live
        done_once |= terminated | truncated
        if bool(done_once.all()):
            break
    return survival.cpu().numpy(), returns.cpu().numpy()


def random_policy(device, seed: int):
    """Uniformly random allowed actions, from its own generator."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def policy(obs, mask):
        scores = torch.rand(mask.shape, generator=gen, device=device).masked_fill(~mask, -1.0)
        return scores.argmax(dim=-1)

    return policy
