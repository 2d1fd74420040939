"""Building the pieces a run is made of from its config: the env, the Q-network, and the
plain-data record of an observation layout that checkpoints carry. The trainer, the
evaluate command and the scripts all build them here, so they build them alike.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from omegaconf import OmegaConf

from townlet_env import NUM_ACTIONS, TownletVectorEnv

from .checkpoint import CheckpointError
from .network import FeedForwardQNetwork, RecurrentQNetwork


def _value(x):
    """An Enum member's value (a composed config holds Enums, a checkpoint's plain strings)."""
    return getattr(x, "value", x)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_env(cfg, device, num_envs: int | None = None, **kwargs) -> TownletVectorEnv:
    """The torch-output vector env `cfg.env` describes (a level name or a pack path). New
    towns draw their layouts from the training pool, so that evaluation towns (the held-out
    pool) are never trained on."""
    e = cfg.env
    kwargs.setdefault("layout_pool", "train")
    kwargs.setdefault("max_steps", e.get("max_steps"))
    return TownletVectorEnv(
        num_envs or e.num_envs, _value(e.level), device=device,
        torch_output=True, reward_mode=_value(e.reward_mode), layout_mode=_value(e.layout_mode),
        layout_seed=e.layout_seed, landmarks=bool(e.get("landmarks", False)), **kwargs,
    )


def make_network(cfg, layout, device):
    a = cfg.agent
    cls = RecurrentQNetwork if _value(a.network) == "recurrent" else FeedForwardQNetwork
    # A checkpoint's config from before `agent.dueling` / `agent.position_encoding` existed
    # describes a plain Q head and a linear position encoder.
    return cls(layout, NUM_ACTIONS, hidden_size=a.hidden_size, encoder_size=a.encoder_size,
               dueling=a.get("dueling", False),
               position_cells=_value(a.get("position_encoding", "linear")) == "cells").to(device)


def compile_network(net) -> None:
    """torch.compile, in place, the two passes training runs: `step` (acting, one step for
    all agents) and `forward` (the learner's sequence unrolls). Weights and state_dict are
    untouched, so checkpoints do not know whether a run compiled."""
    net.forward = torch.compile(net.forward)
    net.step = torch.compile(net.step)


def layout_record(layout) -> dict:
    """The observation layout as plain data (stored in checkpoints, compared on resume)."""
    return {"one_hot": layout.one_hot,
            "parts": [[p.name, p.start, list(p.shape), p.categories] for p in layout.parts]}


def describe_layout(record: dict) -> str:
    """A layout record in one line, for messages: its parts with their shapes, e.g.
    "grid 25, position 2, ..." (the level's window, one-hot and landmarks all show in it)."""
    parts = ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, _, shape, _ in record["parts"])
    return parts + (" (one-hot)" if record["one_hot"] else "")


def acting_network(payload: dict, env: TownletVectorEnv, device, source, weights: str | None = None):
    """The checkpoint's network in eval mode and which weights it carries: `weights` when the
    checkpoint has them, else the averaged ones when it kept them, else the online ones."""
    if payload["layout"] != layout_record(env.obs_layout):
        raise CheckpointError(f"{source}: trained on a level with a different observation "
                              f"layout than {env.pack.name!r}")
    net = make_network(OmegaConf.create(payload["config"]), env.obs_layout, device)
    if weights not in payload:
        weights = "averaged" if "averaged" in payload else "online"
    try:
        net.load_state_dict(payload[weights])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: network weights do not fit: {str(e).splitlines()[0]}") from None
    return net.eval(), weights

