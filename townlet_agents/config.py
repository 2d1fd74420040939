"""The trainer's configuration: dataclasses that are both the Hydra schema and the docs.

Registered in Hydra's ConfigStore as the schema of conf/config.yaml, so a misspelt key or
a wrong type fails at composition, naming the key. `check_config` then checks values
(ranges, devices) before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from townlet_env import PackError, load_pack
from townlet_env.schema import LAYOUT_MODES, REWARD_MODES

# The env owns these vocabularies; the Enums only let Hydra reject a wrong choice at
# composition, naming the key.
RewardMode = Enum("RewardMode", {m: m for m in REWARD_MODES}, type=str)
LayoutMode = Enum("LayoutMode", {m: m for m in LAYOUT_MODES}, type=str)


class NetworkKind(str, Enum):
    recurrent = "recurrent"
    feedforward = "feedforward"


class PositionEncoding(str, Enum):
    linear = "linear"
    cells = "cells"


class LstmPrecision(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"


class LossKind(str, Enum):
    huber = "huber"
    mse = "mse"


class WandbMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class EnvConfig:
    level: str = "L0_5_dual_resource"
    """World pack to train on: a shipped level name or the path of a .toml pack
    (docs/custom_worlds.md). The default run's town is small (Bed, Hospital, HomeMeal,
    Job) so that it learns to earn, eat and sleep within minutes; every experiment names
    its own level."""
    num_envs: int = 128
    """Towns (agents) stepped together; each batched step adds num_envs env steps (agent-steps)."""
    reward_mode: Optional[RewardMode] = None
    """Reward mode; null uses the level pack's default (survival)."""
    layout_mode: Optional[LayoutMode] = None
    """Layout mode; null uses the pack's (shared: one town layout for the whole run)."""
    layout_seed: Optional[int] = None
    """Seed of the shared layout; null uses the pack's."""
    max_steps: Optional[int] = None
    """Step limit of each training life; null uses the level's. Longer lives let training
    see the slow costs (neglected hygiene and social) that a short limit cuts off; the
    final evaluation keeps the level's limit (`train.final_eval_max_steps`)."""
    start_spread: float = 0.0
    """Training lives start with each meter lowered by its own uniform fraction in
    [0, start_spread) of the level's start (0 = the level's start). A neglected need then
    costs within the discount horizon instead of hundreds of steps in; every evaluation
    (the final one, `evaluate`, the benchmarks) starts from the level's meters."""
    landmarks: bool = False
    """Add the landmark parts to the observation: where each affordance the agent has seen
    this episode is from it, and which cells it has seen (townlet_env.landmarks). With a
    new town every episode the LSTM otherwise has to learn to store where each place was
    before it can go back to it (docs/training.md, "Landmarks")."""


@dataclass
class AgentConfig:
    network: NetworkKind = NetworkKind.recurrent
    """recurrent (LSTM, for partial observability) or feedforward (full observability)."""
    hidden_size: int = 128
    """LSTM / hidden layer width."""
    encoder_size: int = 64
    """Width of each observation part's encoder output."""
    position_encoding: PositionEncoding = PositionEncoding.linear
    """How the network reads the agent's (x, y): `linear` (Linear+ReLU of the two floats) or
    `cells` (a learned vector per grid cell, distinct up to 16x16 towns). With full
    observability of a fixed town the grid input never changes, so position is the only
    thing telling states apart, and two floats through a few ReLUs blur neighbouring cells."""
    dueling: bool = False
    """Dueling Q head (V + A - mean A), meant to keep small action differences resolvable.
    Off by default: it showed no gain when measured (docs/training.md, "Learning results")."""
    lr: float = 1e-3
    """Adam learning rate."""
    adam_eps: float = 1e-4
    """Adam epsilon."""
    gamma: float = 0.995
    """Discount factor, in (0, 1]. Money spent now is missed a few hundred steps later, so
    the horizon has to reach that far (docs/training.md, "How the defaults were found")."""
    average_decay: float = 0.999
    """Keep an exponential moving average of the online weights with this decay per update
    (0 = none); the final evaluation and `evaluate` act with it. Greedy policies from
    nearby snapshots of the online weights can differ widely in survival; the average
    varies less (docs/training.md, "Learning results")."""
    reward_scale: Optional[float] = None
    """Multiplies rewards in the TD target; null = 1 - gamma, which puts the value of
    "+1 per step forever" at 1. Adam moves outputs by roughly lr-sized steps, so values of
    order 1 / (1 - gamma) took thousands of updates just to reach their scale, and
    meanwhile every state looked alike (docs/training.md, "Learning results"). Logged
    q_values are in scaled units."""
    n_step: int = 10
    """Steps of the n-step return (at most seq_len - burn_in are used)."""
    seq_len: int = 16
    """Stored sequence length L (even); sequences overlap by L/2."""
    burn_in: int = 4
    """Steps at the start of each sampled sequence that only warm the LSTM state (no loss)."""
    batch_size: int = 32
    """Sequences per gradient update."""
    replay_capacity: int = 8192
    """Sequences kept in the replay ring buffer."""
    replay_ratio: float = 4.0
    """Sampled (sequence) steps per env step: updates happen every batch*seq_len/ratio env steps."""
    learning_starts: int = 5000
    """Env steps collected before the first update."""
    target_update_every: int = 100
    """Hard target-network copy every this many updates (when tau = 0)."""
    tau: float = 0.0
    """Polyak coefficient for a soft target update each update; 0 = hard updates."""
    grad_clip: float = 10.0
    """Max global gradient norm."""
    loss: LossKind = LossKind.huber
    """TD loss: huber or mse, averaged over valid steps only."""
    prioritized: bool = False
    """R2D2-style prioritised sequence sampling (0.9 max + 0.1 mean |TD|)."""
    priority_alpha: float = 0.6
    """Priority exponent when prioritized."""
    epsilon_start: float = 1.0
    """Initial exploration rate."""
    epsilon_end: float = 0.05
    """Final exploration rate."""
    epsilon_decay_steps: int = 150_000
    """Env steps of the linear epsilon decay."""
    epsilon_ladder: bool = False
    """Ape-X ladder: a different epsilon per agent around the schedule."""
    shaping: float = 0.0
    """Potential-based reward shaping (Ng, Harada and Russell 1999): Phi(s) = shaping * the
    mean of the observed meters, in the scaled rewards' value units; each step's reward in
    the TD target gains gamma * Phi(s') - Phi(s) (Phi = 0 after termination), which leaves
    the optimal policy unchanged. 0 = off."""
    distress: float = 0.0
    """Weight w of the distress cost: each step's reward in the TD target loses
    w * the mean, over every meter but money, of how far the meter observed after the step
    lies below `distress_threshold` (as a fraction of it). In [0, 1], so a step alive is
    never worth less than a death. Changes the objective: time spent in a cascade costs at
    once. 0 = off."""
    distress_threshold: float = 0.3
    """Meter level below which the distress cost starts (the SPEC's cascade threshold)."""
    distress_money: bool = False
    """Count money as an eighth term of the distress mean: money below the threshold costs
    too, although no cascade runs from it (an agent short of money cannot buy its way out
    of a cascade; deaths while broke are a large share of the long-life deaths)."""
    epsilon_hold: float = 0.0
    """0 = plain epsilon-greedy. Above 1: ez-greedy, each exploratory action is held for n
    steps, P(n) proportional to n ** -epsilon_hold (n <= 100), ending early at a wall."""
    lstm_precision: LstmPrecision = LstmPrecision.float32
    """Precision of the LSTM in the learner's unrolls: `float32`, or `bfloat16` (autocast:
    the LSTM layer computes in bfloat16 and its outputs and states return as float32; the
    encoders, the Q head, the targets, the optimiser, acting and evaluation stay float32).
    Faster per second where the hardware has bfloat16 matrix units; throughput and learning
    measured on a CPU with them (not on a GPU) in docs/scaling.md, "bfloat16 LSTM"."""


@dataclass
class ExplorationConfig:
    rnd: bool = False
    """Add an RND intrinsic reward computed on the next observation."""
    intrinsic_weight: float = 0.1
    """Initial weight of the intrinsic reward (applied once, in the TD target)."""
    rnd_lr: float = 1e-4
    """RND predictor learning rate."""
    anneal_window: int = 100
    """Finished episodes considered by the intrinsic-weight annealer."""
    anneal_variance: float = 100.0
    """Anneal when the variance of recent survival is below this..."""
    anneal_survival_floor: float = 50.0
    """...and mean survival (steps) is above this."""
    anneal_decay: float = 0.5
    """Factor applied to the weight at each anneal."""


@dataclass
class CurriculumConfig:
    enabled: bool = False
    """Per-agent adversarial curriculum; off = every agent at multiplier 1.0. Off by default:
    on pomdp_random_layout it took agents to full difficulty but scored lower on all 5
    seeds (docs/training.md, "The curriculum, measured")."""
    multipliers: list[float] = field(default_factory=lambda: [0.2, 0.5, 0.8, 1.0, 1.0])
    """Depletion multiplier of each stage."""
    window: int = 20
    """Recent episodes per agent the decision reads."""
    min_episodes: int = 10
    """Episodes at a stage before it may change."""
    advance_survival: float = 0.5
    """Advance when the mean survival fraction is at least this... (at 0.7 no agent reached
    full difficulty within pomdp_random_layout's 7M env steps; docs/training.md)"""
    retreat_survival: float = 0.3
    """Retreat when it falls below this."""
    entropy_threshold: Optional[float] = None
    """...and, when set, policy entropy (nats, softmax(Q) over allowed actions) is below
    this. Off by default: with rewards scaled by 1 - gamma that entropy stays near its
    maximum (docs/training.md, "Curriculum")."""
    idle_baseline: bool = False
    """...and, when on, survival is at least what an agent that never interacts reaches at
    the stage's multiplier (capped at the step limit). Off by default: at stage 0 the idler
    lives the whole episode, so the gate asked for a perfect window and never opened."""


@dataclass
class TrainConfig:
    total_env_steps: int = 1_000_000
    """Stop after this many env steps (agent-steps summed over towns). The default is the
    default run's few minutes on a CPU; every experiment sets its own budget."""
    max_wall_minutes: float = 0.0
    """Stop cleanly (final checkpoint) after this many minutes; 0 = no limit."""
    log_every_env_steps: int = 10_000
    """Logging interval; values are read from the device only here."""
    torch_threads: int = 1
    """torch.set_num_threads (scripts/bench_train.py measures the gain, docs/scaling.md); keep 1 when running parallel sweep jobs."""
    progress_bar: bool = True
    """Show a console progress bar."""
    final_eval_episodes: int = 0
    """Greedy episodes at full difficulty after training, on a seed apart from training's; their mean survival is what train() returns (the sweep objective). 0 = skip."""
    final_eval_seed: int = 12345
    """Seed of the final evaluation's towns (keep it apart from training seeds)."""
    final_eval_max_steps: Optional[int] = None
    """Step limit of each final-evaluation life; null = the level's (set it higher to
    measure how long the agent lives on past the training limit)."""
    summary_episodes: int = 100
    """Held-out towns (seed final_eval_seed) on which the command line's closing summary
    compares the greedy agent with random play and the oracle; 0 = no summary."""
    compile: bool = False
    """torch.compile the network forward passes used by acting and learning; measured in docs/scaling.md ("torch.compile")."""


@dataclass
class CheckpointConfig:
    every_env_steps: int = 100_000
    """Checkpoint interval (a final one is always written)."""
    save_replay: bool = False
    """Include the replay buffer in checkpoints (large)."""
    keep: int = 3
    """Periodic checkpoints kept (latest.pt is always kept)."""


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.offline
    """offline (default), online or disabled; the WANDB_MODE variable wins when set."""
    project: str = "townlet"
    """wandb project."""
    entity: Optional[str] = None
    """wandb entity (team)."""
    group: Optional[str] = None
    """Run group; multirun sweeps default to the sweep directory's name."""
    tags: list[str] = field(default_factory=list)
    """Run tags."""


@dataclass
class Config:
    seed: int = 0
    """Seeds torch, numpy, python and the towns."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    resume: Optional[str] = None
    """Checkpoint path to continue a run from, or `auto`: the newest checkpoint of this run
    folder that loads (a new run when there is none), for requeued jobs."""
    allow_world_change: bool = False
    """Resume from a checkpoint trained on a different world (pack numbers) on purpose, for
    fine-tuning; without it such a resume is refused, naming what differs."""
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


#: Upper bounds that types cannot express: room for `seed + env steps` in 64 bits, the
#: world packs' own limit on layout seeds, and a thread count no machine needs.
MAX_SEED = 2**62
MAX_LAYOUT_SEED = 2**31 - 1
MAX_THREADS = 1024


class ConfigError(ValueError):
    """A configuration value is out of range or unusable; the message names the key."""


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {problem}")


def check_known_keys(cfg, schema: type | None = None, prefix: str = "") -> None:
    """Refuse keys the schema does not define: a setting under a wrong name must never
    be silently ignored in favour of a default. Composition already rejects
    `agent.lrr=1`, but Hydra lets an append override (`+agent.foo=1`) insert a new key even
    into a structured config, so the composed config is walked once more here."""
    schema = schema or Config
    hints = get_type_hints(schema)
    known = sorted(f.name for f in fields(schema))
    for name in known:  # `~key` deletes a key, even one with no default to fall back on
        if name not in cfg:
            raise ConfigError(f"{prefix}{name}: missing (removed with ~{prefix}{name}?); set a value instead")
    for key in cfg.keys():
        if key not in hints:
            raise ConfigError(f"{prefix}{key}: unknown key (known keys here: {', '.join(known)})")
        if is_dataclass(hints[key]) and isinstance(cfg[key], DictConfig):
            check_known_keys(cfg[key], hints[key], f"{prefix}{key}.")


def check_resolvable(cfg) -> None:
    """Every `${...}` resolves and no value is `???` (found by fuzzing: `seed=${seed}`
    otherwise fails at its first use, with a traceback)."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{key}: {problem}") from None


def check_level(level: str, key: str = "env.level") -> None:
    """Load the pack once so that a bad level name or a bad pack file fails before any
    training or evaluation starts, naming the pack's file and key."""
    try:
        load_pack(level)
    except PackError as e:
        raise ConfigError(f"{key}: {e}") from None


def check_agent(a) -> None:
    """Range checks of `agent.*` (an AgentConfig or its DictConfig); the learner's view of
    the config is built through here too, so these are the only checks of its values."""
    for key in ("hidden_size", "encoder_size", "n_step", "seq_len", "batch_size", "replay_capacity",
                "target_update_every"):
        value = getattr(a, key)
        _check(value > 0, f"agent.{key}", f"must be > 0, got {value}")
    _check(a.seq_len % 2 == 0, "agent.seq_len", f"must be even (sequences overlap by half), got {a.seq_len}")
    _check(0 <= a.burn_in < a.seq_len, "agent.burn_in", f"must be in [0, seq_len), got {a.burn_in}")
    _check(0.0 < a.gamma <= 1.0, "agent.gamma", f"must be in (0, 1], got {a.gamma}")
    _check(a.reward_scale is None or a.reward_scale > 0, "agent.reward_scale",
           f"must be > 0 (or null for 1 - gamma), got {a.reward_scale}")
    _check(_value(a.loss) in [k.value for k in LossKind], "agent.loss",
           f"must be one of {', '.join(k.value for k in LossKind)}, got {_value(a.loss)!r}")
    _check(a.lr > 0, "agent.lr", f"must be > 0, got {a.lr}")
    _check(a.adam_eps > 0, "agent.adam_eps", f"must be > 0, got {a.adam_eps}")
    _check(a.replay_ratio > 0, "agent.replay_ratio", f"must be > 0, got {a.replay_ratio}")
    _check(a.learning_starts >= 0, "agent.learning_starts", f"must be >= 0, got {a.learning_starts}")
    _check(0.0 <= a.tau <= 1.0, "agent.tau", f"must be in [0, 1], got {a.tau}")
    _check(0.0 <= a.average_decay < 1.0, "agent.average_decay", f"must be in [0, 1), got {a.average_decay}")
    _check(a.grad_clip > 0, "agent.grad_clip", f"must be > 0, got {a.grad_clip}")
    _check(a.epsilon_decay_steps > 0, "agent.epsilon_decay_steps", f"must be > 0, got {a.epsilon_decay_steps}")
    for key in ("epsilon_start", "epsilon_end"):
        v = getattr(a, key)
        _check(0.0 <= v <= 1.0, f"agent.{key}", f"is a probability, must be in [0, 1], got {v}")
    _check(a.shaping >= 0, "agent.shaping", f"must be >= 0 (0 = off), got {a.shaping}")
    _check(0.0 <= a.distress <= 1.0, "agent.distress",
           f"must be in [0, 1] (0 = off; above 1 a step alive could be worth less than death), got {a.distress}")
    _check(0.0 < a.distress_threshold <= 1.0, "agent.distress_threshold",
           f"is a meter level, must be in (0, 1], got {a.distress_threshold}")
    _check(a.epsilon_hold == 0 or a.epsilon_hold > 1, "agent.epsilon_hold",
           f"must be 0 (off) or a zeta exponent > 1, got {a.epsilon_hold}")
    _check(a.priority_alpha >= 0, "agent.priority_alpha", f"must be >= 0, got {a.priority_alpha}")


def _value(x):
    return getattr(x, "value", x)


def check_config(cfg) -> None:
    """Range checks that types alone cannot express. Raises ConfigError naming the key."""
    if isinstance(cfg, DictConfig):
        check_resolvable(cfg)
        check_known_keys(cfg)
    a, t, c, cu, e = cfg.agent, cfg.train, cfg.checkpoint, cfg.curriculum, cfg.exploration
    check_agent(a)
    for key, value in (("env.num_envs", cfg.env.num_envs),
                       ("train.total_env_steps", t.total_env_steps),
                       ("train.log_every_env_steps", t.log_every_env_steps),
                       ("train.torch_threads", t.torch_threads),
                       ("checkpoint.every_env_steps", c.every_env_steps), ("checkpoint.keep", c.keep),
                       ("curriculum.min_episodes", cu.min_episodes)):
        _check(value > 0, key, f"must be > 0, got {value}")
    for key, value in (("curriculum.window", cu.window), ("exploration.anneal_window", e.anneal_window)):
        _check(value >= 2, key, f"must be >= 2 episodes (a trend needs two), got {value}")
    _check(e.intrinsic_weight >= 0, "exploration.intrinsic_weight", f"must be >= 0, got {e.intrinsic_weight}")
    _check(e.rnd_lr > 0, "exploration.rnd_lr", f"must be > 0, got {e.rnd_lr}")
    _check(e.anneal_variance >= 0, "exploration.anneal_variance", f"must be >= 0, got {e.anneal_variance}")
    _check(0.0 < e.anneal_decay <= 1.0, "exploration.anneal_decay", f"must be in (0, 1], got {e.anneal_decay}")
    _check(len(cu.multipliers) > 0 and all(m > 0 for m in cu.multipliers), "curriculum.multipliers",
           f"must be a non-empty list of numbers > 0, got {list(cu.multipliers)}")
    for key in ("advance_survival", "retreat_survival"):
        v = getattr(cu, key)
        _check(0.0 <= v <= 1.0, f"curriculum.{key}", f"is a fraction, must be in [0, 1], got {v}")
    _check(cu.retreat_survival <= cu.advance_survival, "curriculum.retreat_survival",
           "must not exceed curriculum.advance_survival")
    _check(t.max_wall_minutes >= 0, "train.max_wall_minutes", f"must be >= 0, got {t.max_wall_minutes}")
    _check(t.final_eval_episodes >= 0, "train.final_eval_episodes", f"must be >= 0, got {t.final_eval_episodes}")
    _check(t.final_eval_max_steps is None or t.final_eval_max_steps >= 1, "train.final_eval_max_steps",
           f"must be null or >= 1, got {t.final_eval_max_steps}")
    check_level(str(cfg.env.level))
    _check(cfg.env.get("max_steps") is None or cfg.env.max_steps >= 1, "env.max_steps",
           f"must be null or >= 1, got {cfg.env.get('max_steps')}")
    _check(0.0 <= cfg.env.get("start_spread", 0.0) <= 1.0, "env.start_spread",
           f"must be in [0, 1], got {cfg.env.get('start_spread')}")
    _check(t.summary_episodes >= 0, "train.summary_episodes", f"must be >= 0, got {t.summary_episodes}")
    if cfg.env.layout_seed is not None:
        _check(0 <= cfg.env.layout_seed <= MAX_LAYOUT_SEED, "env.layout_seed",
               f"must be in [0, {MAX_LAYOUT_SEED}], got {cfg.env.layout_seed}")
    # Found by fuzzing the command line (tests/agents/test_cli_fuzz.py): seeds past 64 bits
    # overflow torch's generator; a negative one is refused by Gymnasium only at reset.
    _check(0 <= cfg.seed <= MAX_SEED, "seed", f"must be in [0, 2**62], got {cfg.seed}")
    _check(t.torch_threads <= MAX_THREADS, "train.torch_threads", f"must be <= {MAX_THREADS}, got {t.torch_threads}")
    resolve_device(cfg.device)


def resolve_device(spec: str):
    """'auto' -> cuda when available else cpu; refuses unknown strings and absent GPUs."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device: unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {spec!r} requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)


class Policy(str, Enum):
    checkpoint = "checkpoint"
    random = "random"
    oracle = "oracle"


@dataclass
class EvalEnvConfig:
    level: Optional[str] = None
    """Level name or .toml pack path; null = the checkpoint's (L3_temporal_mechanics for
    policy=random or oracle)."""
    reward_mode: Optional[RewardMode] = None
    """Reward mode; null = the checkpoint's, else the pack's."""
    layout_mode: Optional[LayoutMode] = None
    """Layout mode; null = the checkpoint's, else the pack's."""
    layout_seed: Optional[int] = None
    """Layout seed; null = the checkpoint's, else the pack's."""
    max_steps: Optional[int] = None
    """Step limit of each life; null = the level's. Raise it to measure lives longer than
    training's limit."""


@dataclass
class EvalConfig:
    checkpoint: Optional[str] = None
    """Checkpoint to evaluate (required unless policy=random)."""
    policy: Policy = Policy.checkpoint
    """checkpoint | random | oracle (the env's scripted baseline, townlet_env.oracle)."""
    episodes: int = 100
    """Greedy episodes, run as that many towns in one batch."""
    seed: int = 12345
    """Seed of the evaluation towns (keep it apart from training seeds)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    video: Optional[str] = None
    """Write town 0's episode as a GIF (or .mp4 with imageio-ffmpeg) to this path."""
    torch_threads: int = 1
    """torch.set_num_threads."""
    allow_world_change: bool = False
    """Evaluate on a world whose pack numbers differ from the checkpoint's on purpose;
    without it that is refused, naming what differs."""
    env: EvalEnvConfig = field(default_factory=EvalEnvConfig)


def register_eval_configs() -> None:
    ConfigStore.instance().store(name="evaluate_schema", node=EvalConfig)


def conf_dir() -> Path:
    """The Hydra config folder. In a checkout (or an editable install) it is the
    repository's top-level conf/, so edits there take effect at once; an installed wheel
    carries a copy as townlet_agents/conf (pyproject.toml maps one onto the other)."""
    package = Path(__file__).resolve().parent
    root = package.parent
    if (root / "pyproject.toml").is_file() and (root / "conf" / "config.yaml").is_file():
        return root / "conf"
    return package / "conf"


CONF_DIR = conf_dir()


def reward_scale(agent: AgentConfig) -> float:
    """`agent.reward_scale`, with null resolved to 1 - gamma (1 when gamma is 1)."""
    if agent.reward_scale is not None:
        return float(agent.reward_scale)
    return 1.0 - agent.gamma if agent.gamma < 1.0 else 1.0


def compose(*overrides: str, config_name: str = "config"):
    """The config the CLI would build from these overrides, composed in Python (for
    notebooks and tests): `compose("+experiment=pomdp", "agent.lr=3e-4")`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    register_eval_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
