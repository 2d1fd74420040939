"""Behaviour fingerprint: hashes of env trajectories and of short training runs.

A refactor that must not change behaviour prints the same hashes before and after:

    python scripts/fingerprint.py            # every part
    python scripts/fingerprint.py env        # env trajectories only (seconds)
    python scripts/fingerprint.py golden     # rewrite tests/env/golden_trajectories.json

The golden file pins the env's trajectories in the test suite
(tests/env/test_golden_trajectories.py). A change that is meant to alter the world (a
pack's numbers, a rule) regenerates it with the last command and says so in its commit.

Env part: on every shipped level, the torch vector env, the numpy vector env and the
single env are stepped with seeded random allowed actions, and the scripted oracle plays
the torch vector env; observations, rewards, flags and masks are hashed. Train part: two
short CPU runs (recurrent with curriculum; feed-forward with RND, priorities, Polyak
targets and weight averaging) with fixed seeds, hashing the final network parameters.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from townlet_env import TownletEnv, TownletVectorEnv  # noqa: E402

from townlet_env.oracle import OraclePolicy  # noqa: E402

# Written out (not townlet_env.LEVELS) so that adding a level does not change the hashes.
LEVELS = ("L0_minimal", "L0_5_dual_resource", "L1_full_observability",
          "L2_partial_observability", "L3_temporal_mechanics")
STEPS = 300
TOWNS = 8


def _feed(h, *arrays) -> None:
    for a in arrays:
        a = a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())


def _pick(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A uniformly random allowed action per row of a [N, 6] mask."""
    scores = rng.random(mask.shape) * mask
    return scores.argmax(axis=1).astype(np.int64)


def vector_hash(level: str, torch_output: bool, **kwargs) -> str:
    h = hashlib.sha256()
    env = TownletVectorEnv(TOWNS, level, torch_output=torch_output, **kwargs)
    rng = np.random.default_rng(7)
    obs, info = env.reset(seed=3)
    env.set_difficulty(np.linspace(0.2, 1.0, TOWNS).astype(np.float32))
    _feed(h, obs, info["action_mask"])
    for _ in range(STEPS):
        mask = info["action_mask"]
        action = _pick(rng, mask.cpu().numpy() if torch_output else mask)
        obs, reward, term, trunc, info = env.step(torch.as_tensor(action) if torch_output else action)
        _feed(h, obs, reward, term, trunc, info["action_mask"])
    return h.hexdigest()[:16]


def single_hash(level: str) -> str:
    h = hashlib.sha256()
    env = TownletEnv(level)
    rng = np.random.default_rng(11)
    obs, info = env.reset(seed=5)
    _feed(h, obs, info["action_mask"])
    for _ in range(STEPS):
        action = int(_pick(rng, info["action_mask"][None])[0])
        obs, reward, term, trunc, info = env.step(action)
        _feed(h, obs, np.float64(reward), np.bool_(term), np.bool_(trunc), info["action_mask"])
        if term or trunc:
            obs, info = env.reset()
            _feed(h, obs)
    return h.hexdigest()[:16]


def oracle_hash(level: str) -> str:
    h = hashlib.sha256()
    env = TownletVectorEnv(TOWNS, level, torch_output=True)
    policy = OraclePolicy(env)
    obs, info = env.reset(seed=9)
    for _ in range(STEPS):
        action = policy(obs, info["action_mask"])
        obs, reward, term, trunc, info = env.step(action)
        _feed(h, action, obs, reward, term, trunc)
    return h.hexdigest()[:16]


TRAIN_RUNS = {
    "recurrent": ["env.num_envs=16", "agent.learning_starts=512", "agent.batch_size=8",
                  "agent.replay_capacity=256", "agent.epsilon_decay_steps=2000",
                  "curriculum.min_episodes=1", "curriculum.window=2"],
    "feedforward": ["+experiment=full_obs", "env.num_envs=16", "agent.learning_starts=512",
                    "agent.batch_size=8", "agent.replay_capacity=256", "agent.tau=0.05",
                    "agent.prioritized=true", "agent.loss=mse", "exploration.rnd=true",
                    "agent.epsilon_decay_steps=2000"],
}


def train_hash(name: str) -> str:
    from townlet_agents.config import compose
    from townlet_agents.trainer import Trainer

    cfg = compose(*TRAIN_RUNS[name], "train.total_env_steps=4000", "train.log_every_env_steps=1000",
                  "train.progress_bar=false", "wandb.mode=disabled", "device=cpu", "seed=1",
                  "checkpoint.every_env_steps=100000")
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, Path(d))
        trainer.train()
    h = hashlib.sha256()
    for net in (trainer.learner.online, trainer.learner.target):
        for k, v in sorted(net.state_dict().items()):
            h.update(k.encode())
            _feed(h, v)
    return h.hexdigest()[:16]


GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "env" / "golden_trajectories.json"


def golden_records() -> dict[str, str]:
    """What the golden file pins: the env alone (vector torch path, single numpy path and
    the two other reward modes), not the oracle or training, whose float reductions may
    round differently on another CPU."""
    records = {}
    for level in LEVELS:
        records[f"{level} vector"] = vector_hash(level, True)
        records[f"{level} single"] = single_hash(level)
    for level in ("L1_full_observability", "L3_temporal_mechanics"):
        for mode in ("interoception", "baseline_relative"):
            records[f"{level} {mode}"] = vector_hash(level, True, reward_mode=mode)
    return records


def main(parts: list[str]) -> None:
    torch.set_num_threads(1)
    parts = parts or ["env", "train"]
    if "golden" in parts:
        GOLDEN.write_text(json.dumps(golden_records(), indent=1) + "\n")
        print(f"wrote {GOLDEN}")
    if "env" in parts:
        for level in LEVELS:
            print(f"env {level:26s} torch {vector_hash(level, True)}  numpy {vector_hash(level, False)}  "
                  f"single {single_hash(level)}  oracle {oracle_hash(level)}", flush=True)
        for level in ("L1_full_observability", "L3_temporal_mechanics"):
            hashes = [f"{m} {vector_hash(level, True, reward_mode=m)}" for m in ("interoception", "baseline_relative")]
            print(f"rewards {level:22s} " + "  ".join(hashes), flush=True)
    if "train" in parts:
        for name in TRAIN_RUNS:
            print(f"train {name:12s} {train_hash(name)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
