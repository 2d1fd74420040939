"""Entry point: `python -m townlet_agents.watch [policy=oracle|random|checkpoint]
[checkpoint=PATH|pretrained:NAME] [run=RUN_DIR] [env.level=...] [towns=16] [fps=10]
[port=8000] [host=127.0.0.1]` (also installed as `townlet-watch`).

Starts a local web server and prints its URL; the page shows the towns live. Arguments
use the same `key=value` form as `train` and `evaluate`, checked against `WatchConfig`;
every mistake (unknown key, level, checkpoint, a port in use) is reported in one line
before the server starts. See docs/viewer.md.
"""

from __future__ import annotations

import errno
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .config import ConfigError, resolve_device
from .cli_errors import user_error
from .viewer.sim import (EnvChoice, NetworkPolicy, OracleAdapter, RandomPolicy, Simulation, WatchError,
                         env_config, make_towns)

POLICIES = ("checkpoint", "oracle", "random")


@dataclass
class WatchEnvConfig:
    level: Optional[str] = None
    """Level name (or pack path); null = the checkpoint's, else L3_temporal_mechanics."""
    reward_mode: Optional[str] = None
    """Reward mode; null = the checkpoint's, else the pack's."""
    layout_mode: Optional[str] = None
    """Layout mode; null = the checkpoint's, else the pack's."""
    layout_seed: Optional[int] = None
    """Layout seed; null = the checkpoint's, else the pack's."""


@dataclass
class WatchConfig:
    policy: Optional[str] = None
    """checkpoint | oracle | random; null = checkpoint when checkpoint= or run= is given, else oracle."""
    checkpoint: Optional[str] = None
    """Checkpoint file to watch, or pretrained:NAME."""
    run: Optional[str] = None
    """A training run's folder to follow: its newest checkpoint (swapped as newer ones appear)
    and its learning curve from metrics.jsonl. Files are only read."""
    towns: int = 16
    """Towns simulated (the page shows up to 64)."""
    fps: float = 10.0
    """Steps per second at start (the page's speed control changes it, 1 to 60)."""
    seed: int = 0
    """Seed of the towns."""
    port: int = 8000
    """TCP port; 0 picks a free one (the printed URL names it)."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only)."""
    device: str = "cpu"
    """Device of the env and the network; cpu is plenty for a few towns."""
    torch_threads: int = 1
    """torch.set_num_threads: one keeps the server light next to a training run."""
    poll_seconds: float = 2.0
    """How often a followed run's folder is checked for new checkpoints and metrics."""
    env: WatchEnvConfig = field(default_factory=WatchEnvConfig)


def parse_args(argv: list[str]) -> WatchConfig:
    """`key=value` arguments over the WatchConfig defaults; one-line errors."""
    base = OmegaConf.structured(WatchConfig)
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"{arg}: expected key=value (for example towns=16 or env.level=L2_partial_observability)")
    try:
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(argv))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{key}: {first}" if key else first) from None
    return OmegaConf.to_object(cfg)


def _check(cfg: WatchConfig) -> None:
    if cfg.policy is not None and cfg.policy not in POLICIES:
        raise ConfigError(f"policy: {cfg.policy!r} is not one of {', '.join(POLICIES)}")
    if cfg.towns < 1:
        raise ConfigError(f"towns: must be >= 1, got {cfg.towns}")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port: must be in 0..65535, got {cfg.port}")
    if cfg.fps <= 0:
        raise ConfigError(f"fps: must be > 0, got {cfg.fps}")
    if cfg.poll_seconds <= 0:
        raise ConfigError(f"poll_seconds: must be > 0, got {cfg.poll_seconds}")
    if cfg.torch_threads < 1:
        raise ConfigError(f"torch_threads: must be >= 1, got {cfg.torch_threads}")
    if cfg.checkpoint and cfg.run:
        raise ConfigError("checkpoint and run: give one of them (run= follows that run's newest checkpoint)")
    if cfg.policy in ("oracle", "random") and (cfg.checkpoint or cfg.run):
        raise ConfigError(f"policy={cfg.policy} plays without a checkpoint; drop checkpoint=/run= "
                          "or use policy=checkpoint")
    if cfg.policy == "checkpoint" and not (cfg.checkpoint or cfg.run):
        raise ConfigError("checkpoint: policy=checkpoint needs checkpoint=PATH (or run=RUN_DIR)")


def build(cfg: WatchConfig):
    """The hub the server runs, built and checked before anything listens."""
    import torch

    from .viewer.follow import RunFollower
    from .viewer.server import Hub

    _check(cfg)
    torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg.device)
    choice = EnvChoice(cfg.env.level, cfg.env.reward_mode, cfg.env.layout_mode, cfg.env.layout_seed)

    built: dict = {}  # the EnvChoice the current towns were made with

    def towns_for(wanted: EnvChoice):
        env = make_towns(wanted, cfg.towns, device)
        built["choice"] = wanted
        return env

    def with_checkpoint(path: Path, payload: dict, sim: Simulation | None = None) -> Simulation:
        wanted = choice.with_defaults(env_config(payload))
        if sim is not None and wanted == built["choice"]:
            sim.set_policy(NetworkPolicy(payload, sim.env, path.name))  # same towns, newer policy
            return sim
        env = make_towns(wanted, cfg.towns, device)
        new = Simulation(env, NetworkPolicy(payload, env, path.name), cfg.seed)
        built["choice"] = wanted  # only once the checkpoint fits: a refused one changes nothing
        return new

    follower = None
    if cfg.checkpoint:
        path = resolve_checkpoint(cfg.checkpoint)
        sim = with_checkpoint(path, load_checkpoint(path, map_location=device))
    elif cfg.run:
        follower = RunFollower(cfg.run)
        found = follower.poll_checkpoint()
        if follower.error:
            raise CheckpointError(follower.error)
        if found is not None:
            sim = with_checkpoint(*found)
        else:  # no checkpoint yet: random play until the first one is written
            env = towns_for(choice.with_defaults({}))
            sim = Simulation(env, RandomPolicy(env, cfg.seed), cfg.seed)
            sim.policy.label = "random (waiting for the run's first checkpoint)"
    else:
        env = towns_for(choice.with_defaults({}))
        sim = Simulation(env, RandomPolicy(env, cfg.seed) if cfg.policy == "random" else OracleAdapter(env),
                         cfg.seed)
    swap = (lambda old, path, payload: with_checkpoint(path, payload, old)) if follower else None
    return Hub(sim, cfg.fps, follower, swap, cfg.poll_seconds)


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket now, so a port in use is a one-line error, not a crash
    inside the server; uvicorn then serves on this very socket."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as e:
        raise ConfigError(f"host: cannot resolve {host!r} ({e.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port: {host}:{port} is already in use; "
                              "pick another with port=N (0 = any free one)") from None
        raise ConfigError(f"host: cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(128)
    return sock


def make_server(hub):
    import uvicorn

    from .viewer.server import create_app

    return uvicorn.Server(uvicorn.Config(create_app(hub), log_level="warning", lifespan="on"))


def serve(hub, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"Townlet viewer: http://{shown}:{port}/  ({hub.sim.meta()['level']}, {hub.sim.env.num_envs} towns, "
          f"policy {hub.sim.policy.label}; Ctrl+C stops)", flush=True)
    make_server(hub).run(sockets=[sock])


def _require_viewer_packages() -> None:
    from importlib.util import find_spec

    missing = [name for name in ("starlette", "uvicorn", "websockets") if find_spec(name) is None]
    if missing:
        raise ConfigError(f"the viewer needs {', '.join(missing)}: pip install 'townlet[viewer]'")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        _require_viewer_packages()
        cfg = parse_args(argv)
        hub = build(cfg)
        sock = listen(cfg.host, cfg.port)
    except (ConfigError, CheckpointError, WatchError) as e:
        user_error(e)
    try:
        serve(hub, sock)
    except KeyboardInterrupt:  # uvicorn shuts down cleanly on Ctrl+C, then re-raises it
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
