"""Entry point: `python -m townlet_agents.evaluate checkpoint=PATH [episodes=N]
[env.level=NAME|PATH.toml] [seed=...] [video=out.gif] [policy=random|oracle]`.

Runs greedy episodes at full difficulty (multiplier 1.0), one town per episode in one
batch, and prints survival statistics; the last line is JSON.
"""

from __future__ import annotations

import json
import sys

import hydra
import numpy as np
import torch

from townlet_env import TownletVectorEnv
from townlet_env import OraclePolicy
from townlet_env.schema import DEFAULT_LEVEL

from .acting import Actor
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .cli_errors import user_error
from .config import (
    CONF_DIR, ConfigError, EvalConfig, check_known_keys, check_level, register_eval_configs, resolve_device,
)
from .episodes import random_policy, run_episodes
from .factories import acting_network, layout_record
from .life_record import GAVE_UP_WAITS, LifeRecord, cheapest_rescue
from .world_identity import check_world, world_identity

register_eval_configs()


def _pick(override, saved, default=None):
    value = getattr(override, "value", override)
    return value if value is not None else (saved if saved is not None else default)


def held_out_env(towns: int, level: str, saved: dict, device, max_steps=None, *, reward_mode=None,
                 layout_mode=None, layout_seed=None, render_mode=None) -> TownletVectorEnv:
    """One town per life, drawn from the held-out layouts training never sees; each setting
    left at None comes from the checkpoint's env config `saved`."""
    return TownletVectorEnv(
        towns, level, device=device, torch_output=True,
        reward_mode=_pick(reward_mode, saved.get("reward_mode")),
        layout_mode=_pick(layout_mode, saved.get("layout_mode")),
        layout_seed=_pick(layout_seed, saved.get("layout_seed")),
        max_steps=max_steps,
        landmarks=bool(saved.get("landmarks", False)),  # the observation the network was trained on
        layout_pool="held_out",
        render_mode=render_mode,
    )


def evaluate(cfg) -> dict:
    check_known_keys(cfg, EvalConfig)  # `+env.foo=1` slips through composition
    if cfg.episodes <= 0:
        raise ConfigError(f"episodes: must be > 0, got {cfg.episodes}")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    policy_kind = getattr(cfg.policy, "value", cfg.policy)
    saved: dict = {}
    payload = None
    weights = None  # which of a checkpoint's networks acts: "averaged" when it has one
    world_changes: list[str] = []
    if policy_kind == "checkpoint":
        if not cfg.checkpoint:
            raise ConfigError("checkpoint: a checkpoint path is required (or use policy=random)")
        payload = load_checkpoint(resolve_checkpoint(cfg.checkpoint), map_location=device)
        saved = payload["config"].get("env", {})
    level = _pick(cfg.env.level, saved.get("level"), DEFAULT_LEVEL)
    check_level(level, "env.level")
    env = held_out_env(cfg.episodes, level, saved, device, cfg.env.max_steps,
                       reward_mode=cfg.env.reward_mode, layout_mode=cfg.env.layout_mode,
                       layout_seed=cfg.env.layout_seed, render_mode="rgb_array" if cfg.video else None)
    if payload is not None:
        net, weights = acting_network(payload, env, device, cfg.checkpoint)  # refuses another layout first
        world_changes = check_world(cfg.checkpoint, payload["world_identity"],
                                    world_identity(env.pack, layout_record(env.obs_layout)),
                                    cfg.allow_world_change, "evaluation")
        actor = Actor(net, cfg.episodes, device)
        policy = actor.greedy
    elif policy_kind == "oracle":
        policy = OraclePolicy(env)
    else:
        policy = random_policy(device, cfg.seed)

    frames: list | None = [] if cfg.video else None
    record = LifeRecord(env.obs_layout, cfg.episodes, device, cheapest_rescue(env.pack))
    survival, returns = run_episodes(env, policy, cfg.seed, frames, record)
    if frames:
        _write_video(cfg.video, frames)
    return {
        "policy": policy_kind,
        "weights": weights,
        "level": level,
        "layout_mode": env.pack.layout_mode,
        "reward_mode": env.pack.reward_mode,
        "layout_pool": env.pack.layout_pool if env.pack.layout_mode != "shared" else "shared",
        "episodes": int(cfg.episodes),
        "seed": int(cfg.seed),
        "mean_survival": float(survival.mean()),
        "median_survival": float(np.median(survival)),
        "std_survival": float(survival.std()),
        "min_survival": int(survival.min()),
        "max_survival": int(survival.max()),
        "step_limit": int(env.pack.max_steps),
        "reached_limit": float((survival >= env.pack.max_steps).mean()),
        "mean_return": float(returns.mean()),
        "world_changes": world_changes,
        **record.summary(),
    }


def _how_lives_ended(result: dict) -> str:
    """Readable lines: how the lives ended, what the agents pressed INTERACT on, and how
    the deaths among them came."""
    ended = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in result["ended_by"].items() if v)
    meters = " ".join(f"{k} {v:.2f}" for k, v in result["meters_at_end"].items())
    used = ", ".join(f"{k} {v:.2f}" for k, v in result["interacts_per_life"].items() if v) or "nothing"
    lines = [f"lives ended by: {ended}; mean meters at the end: {meters}", f"INTERACTs per life: {used}"]
    deaths = result["deaths"]
    if deaths["count"]:
        at_death = " ".join(f"{k} {v:.2f}" for k, v in deaths["meters_at_death"].items())
        lines.append(f"{deaths['count']} deaths: {deaths['broke']:.0%} broke, {deaths['gave_up']:.0%} after "
                     f"{GAVE_UP_WAITS}+ WAITs in a row; mean meters at death: {at_death}")
    return "\n".join(lines)


def _write_video(path: str, frames: list) -> None:
    import imageio.v2 as imageio

    try:
        if str(path).lower().endswith(".gif"):
            imageio.mimsave(path, frames, duration=0.25, loop=0)
        else:
            imageio.mimsave(path, frames, fps=4)
    except (ValueError, RuntimeError, ImportError) as e:
        raise ConfigError(f"video: could not write {path!r} ({e}); use a .gif path, or install imageio-ffmpeg for .mp4") from None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg) -> None:
    try:
        result = evaluate(cfg)
    except (ConfigError, CheckpointError, ValueError) as e:  # PackError is a ValueError
        user_error(e)
    print(f"survival over {result['episodes']} episodes on {result['level']}: mean {result['mean_survival']:.1f}, "
          f"median {result['median_survival']:.1f} (limit {result['step_limit']})")
    print(_how_lives_ended(result))
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
