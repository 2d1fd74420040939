"""The training loop end to end, in process, with tiny budgets: per-agent difficulty
(never agent 0's for all), no dead-agent transitions, survivors flushed, recurrent state reset
only for ended agents (2), complete checkpoints and resume (29), config wiring (22-24),
CleanRL-style metrics."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_type_hints

import pytest
import torch

from townlet_agents.acting import Actor
from townlet_agents.checkpoint import CheckpointError, load_checkpoint
from townlet_agents.config import Config, compose
from townlet_agents.factories import make_env
from townlet_agents.trainer import Trainer


TINY = [
    "env.num_envs=4", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16", "agent.encoder_size=8",
    "agent.batch_size=4", "agent.learning_starts=200", "agent.replay_capacity=1024",
    "wandb.mode=disabled", "train.progress_bar=false", "train.log_every_env_steps=500",
    "checkpoint.every_env_steps=1000000",
    "curriculum.enabled=true",  # the experiments turn it off; these tests exercise it
]
WAIT = 5  # townlet_env.ACTIONS index of WAIT


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the variable wins over the config


def compose_config(*overrides: str):
    return compose(*overrides)


def make_trainer(run_dir: Path, experiment: str = "pomdp", *overrides: str) -> Trainer:
    return Trainer(compose_config(f"+experiment={experiment}", *TINY, *overrides), run_dir)


def stored(replay) -> dict[str, torch.Tensor]:
    size = int(replay.size)
    return {k: v[:size] for k, v in replay.storage.items()}


# ------------------------------------------------------------------------ per agent

def test_each_agent_gets_its_own_stage_multiplier(tmp_path):
    t = make_trainer(tmp_path, "pomdp", "env.num_envs=5")
    t.env.reset(seed=0)
    t.curriculum.stage = torch.tensor([4, 0, 3, 1, 2])
    t._apply_difficulty()
    assert t.env.state.multiplier.tolist() == pytest.approx([1.0, 0.2, 1.0, 0.5, 0.8])


def test_per_agent_multipliers_change_each_towns_dynamics(tmp_path):
    # Same towns, same actions; only agent 0's multiplier differs between the two envs.
    t = make_trainer(tmp_path, "pomdp", "env.num_envs=3")
    reference = make_env(t.cfg, t.device)
    t.env.reset(seed=7)
    reference.reset(seed=7)
    t.curriculum.stage = torch.tensor([3, 0, 0])  # 1.0, 0.2, 0.2
    t._apply_difficulty()
    reference.set_difficulty(torch.tensor([0.2, 0.2, 0.2]))
    wait = torch.full((3,), WAIT)
    for _ in range(3):
        t.env.step(wait)
        reference.step(wait)
    meters, ref = t.env.state.meters, reference.state.meters
    assert torch.equal(meters[1:], ref[1:])
    assert (meters[0] <= ref[0]).all() and (meters[0] < ref[0]).any()  # harder world drains faster


def test_curriculum_stages_reach_the_env_during_training(tmp_path):
    # A curriculum that advances every agent after every finished episode: stages diverge
    # between agents, and the env must always hold each agent's own multiplier.
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=1600", "curriculum.min_episodes=1",
                     "curriculum.window=2", "curriculum.advance_survival=0", "curriculum.retreat_survival=0",
                     "curriculum.entropy_threshold=100", "curriculum.idle_baseline=false")
    t.train()
    stages = t.curriculum.stage
    assert stages.max() > 0
    assert torch.equal(t.env.state.multiplier, t.curriculum.multipliers())
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    changes = [e for e in events if e.get("event") == "curriculum_stage_change"]
    assert len(changes) == int(stages.sum())  # one logged event per advance, with its rationale
    assert {"agent", "from_stage", "to_stage", "reason", "survival_rate", "learning_progress"} <= changes[0].keys()


# ---------------------------------------------------------------------- no dead agents

def test_replay_holds_no_post_terminal_steps_and_one_end_per_episode(tmp_path):
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=2000", "agent.replay_capacity=4096")
    t.train()
    assert int(t.replay.total_emitted) <= t.replay.capacity  # nothing overwritten: all is here
    s = stored(t.replay)
    valid, term, trunc = s["valid"], s["terminated"], s["truncated"]
    assert valid.shape[0] > 0
    assert valid[:, 0].all()                                   # every sequence has a step
    assert not (valid[:, 1:] & ~valid[:, :-1]).any()          # valid is a prefix
    assert not ((term | trunc) & ~valid).any()                 # ends only on valid steps
    ended_before = (torch.cumsum((term | trunc).long(), 1) - (term | trunc).long()) > 0
    assert not (valid & ended_before).any()                    # nothing valid after an end
    length = valid.sum(1)
    last = (term | trunc)[torch.arange(len(length)), length - 1]
    assert torch.equal((term | trunc).any(1), last)            # an end is the last valid step
    assert not (s["reward_ext"] * ~valid).any() and not (s["action"] * ~valid).any()

    # Every finished episode ended exactly one stored sequence and one curriculum update.
    episodes = t.episodes + int(t.totals[0])
    assert term.any()
    assert int((term | trunc).any(1).sum()) == episodes
    assert int(t.curriculum.episodes_at_stage.sum()) == episodes  # no stage change at these settings


# ---------------------------------------------------------------------------- flushing

def test_checkpoint_flushes_every_unfinished_episode(tmp_path):
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=1000")
    seen = []
    original = t.checkpoint

    def spy(final=False):
        r = t.replay
        pending = r.pos > r.emitted_upto
        seen.append((pending.clone(), r.pos.clone(), int(r.total_emitted)))
        path = original(final)
        seen[-1] += (int(r.total_emitted), r.pos.clone())
        return path

    t.checkpoint = spy
    t.train()
    (pending, pos, before, after, pos_after) = seen[-1]
    assert pending.any()
    assert after - before == int(pending.sum())
    assert not pos_after.any()  # every window restarted empty
    # The flushed rows are the pending agents' unfinished episodes, in agent order.
    rows = torch.arange(before, after) % t.replay.capacity
    flushed = {k: v[rows] for k, v in t.replay.storage.items()}
    assert flushed["valid"].sum(1).tolist() == pos[pending].tolist()
    assert not flushed["terminated"].any() and not flushed["truncated"].any()  # bootstrapped, not terminal


def test_survivors_at_the_step_limit_are_truncated_stored_and_counted(tmp_path):
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=400", "agent.learning_starts=100000")
    real_reset = t.env.reset

    def reset_near_the_limit(**kwargs):  # agents 0 and 1 start 3 steps before the limit
        out = real_reset(**kwargs)
        t.env.state.steps[:2] = t.max_steps - 3
        return out

    t.env.reset = reset_near_the_limit
    t.train()
    s = stored(t.replay)
    first_two = {k: v[:2] for k, v in s.items()}  # nothing else ends within 3 steps
    assert first_two["valid"].sum(1).tolist() == [3, 3]
    assert first_two["truncated"][:, 2].all() and not first_two["terminated"].any()
    # The curriculum got each survivor's episode once (3 of max_steps), and the episode
    # counters started again from zero (no carry-over into the next episode).
    assert t.curriculum.episodes_at_stage[:2].tolist() == [1, 1]
    assert t.curriculum.survival_window[:2, -1].tolist() == pytest.approx([3 / t.max_steps] * 2)
    assert (t.ep_length[:2] == 100 - 3).all()  # 100 iterations, 3 in the first episode
    assert (t.ep_length[2:] == 100).all()


# --------------------------------------------------------------------- recurrent state

def test_end_episodes_zeroes_only_ended_agents():
    from townlet_agents.network import RecurrentQNetwork
    from townlet_env.layout import ObsLayout

    net = RecurrentQNetwork(ObsLayout.build(cells=25), 6, hidden_size=8, encoder_size=4)
    actor = Actor(net, 4, torch.device("cpu"))
    actor.state = tuple(torch.randn(4, 8) for _ in actor.state)
    before = tuple(s.clone() for s in actor.state)
    actor.end_episodes(torch.tensor([True, False, True, False]))
    for s, b in zip(actor.state, before):
        assert (s[[0, 2]] == 0).all()
        assert torch.equal(s[[1, 3]], b[[1, 3]])


def test_learning_never_touches_the_acting_state(tmp_path):
    # Between two acting steps only end_episodes may change an agent's state, and only for
    # the agents whose episode ended; gradient updates happen in between.
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=1200", "agent.learning_starts=100")
    actor, log = t.actor, {"checked": 0, "partial_ends": 0}
    real_act, real_end = actor.act, actor.end_episodes
    expected = {}

    def act(obs, mask, step):
        if "state" in expected:
            for s, e in zip(actor.state, expected["state"]):
                assert torch.equal(s, e)
            log["checked"] += 1
        return real_act(obs, mask, step)

    def end_episodes(done):
        before = tuple(s.clone() for s in actor.state)
        real_end(done)
        for s, b in zip(actor.state, before):
            assert torch.equal(s[~done], b[~done]) and (s[done] == 0).all()
        log["partial_ends"] += int(done.any() and not done.all())
        expected["state"] = tuple(s.clone() for s in actor.state)

    actor.act, actor.end_episodes = act, end_episodes
    t.train()
    assert t.learner.updates > 0
    assert log["checked"] == 1200 // 4 - 1 and log["partial_ends"] > 0
    assert any(s.abs().sum() > 0 for s in actor.state)


# ------------------------------------------------------------------------------ resume

RESUME = ["checkpoint.every_env_steps=600", "checkpoint.save_replay=true", "agent.replay_capacity=512",
          "curriculum.min_episodes=1", "curriculum.window=2", "curriculum.advance_survival=0",
          "curriculum.retreat_survival=0", "curriculum.entropy_threshold=100", "curriculum.idle_baseline=false",
          "curriculum.multipliers=[1.0,1.5,2.0]"]  # short episodes: stages change within the budget


def _same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def test_checkpoint_restores_everything(tmp_path):
    first = make_trainer(tmp_path / "a", "pomdp", *RESUME, "train.total_env_steps=600")
    first.train()
    path = tmp_path / "a" / "checkpoints" / "latest.pt"
    assert sorted(p.name for p in path.parent.glob("*.pt")) == ["latest.pt", "step_000000000600.pt"]
    payload = load_checkpoint(path)
    assert payload["version"] == 3 and payload["counters"]["global_step"] == 600

    second = make_trainer(tmp_path / "b", "pomdp", *RESUME, "train.total_env_steps=1200", f"resume={path}")
    obs, info = second.resume(str(path))
    assert (second.global_step, second.learner.updates) == (first.global_step, first.learner.updates)
    # The checkpoint is written before the closing log row, which then counts its episodes.
    assert second.episodes == payload["counters"]["episodes"] <= first.episodes
    assert second.updates_due == first.updates_due
    assert (second.next_log, second.next_checkpoint) == (first.next_log, first.next_checkpoint)
    assert first.curriculum.stage.max() > 0
    assert _same_tensors(second.curriculum.state_dict(), first.curriculum.state_dict())
    assert torch.equal(second.env.state.multiplier, first.curriculum.multipliers())
    assert _same_tensors(second.learner.online.state_dict(), first.learner.online.state_dict())
    assert _same_tensors(second.learner.target.state_dict(), first.learner.target.state_dict())
    assert _same_tensors(second.learner.optimizer.state_dict(), first.learner.optimizer.state_dict())
    assert _same_tensors(second.env.state_dict(), first.env.state_dict())
    assert _same_tensors(second.actor.state, first.actor.state)
    assert _same_tensors(second.replay.state_dict(), first.replay.state_dict())
    assert torch.equal(second.ep_length, first.ep_length) and torch.equal(second.ep_return, first.ep_return)
    assert torch.equal(info["action_mask"], first.env.action_masks())


def test_resumed_run_continues_as_if_never_stopped(tmp_path):
    averaging = "agent.average_decay=0.9"  # the averaged weights are part of what must carry over
    straight = make_trainer(tmp_path / "straight", "pomdp", *RESUME, averaging, "train.total_env_steps=1200")
    straight.train()
    make_trainer(tmp_path / "part1", "pomdp", *RESUME, averaging, "train.total_env_steps=600").train()
    resumed = make_trainer(tmp_path / "part2", "pomdp", *RESUME, averaging, "train.total_env_steps=1200",
                           f"resume={tmp_path / 'part1' / 'checkpoints' / 'latest.pt'}")
    resumed.train()
    assert resumed.global_step == straight.global_step == 1200
    assert resumed.learner.updates == straight.learner.updates > 0
    assert _same_tensors(resumed.learner.online.state_dict(), straight.learner.online.state_dict())
    assert _same_tensors(resumed.learner.averaged.state_dict(), straight.learner.averaged.state_dict())
    assert _same_tensors(resumed.curriculum.state_dict(), straight.curriculum.state_dict())
    assert _same_tensors(resumed.env.state_dict(), straight.env.state_dict())
    rows = [json.loads(line) for line in (tmp_path / "part2" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["global_step"] > 600  # logging continues from the checkpoint's step

    def after_600(run: str) -> list[dict]:  # every logged value but wall-clock speed
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "charts/SPS"} for x in lines
                if json.loads(x)["global_step"] > 600]

    assert after_600("part2") == after_600("straight") != []


def test_a_longer_budget_passes_through_the_shorter_runs_end(tmp_path):
    """Nothing but when training stops depends on the budget, so a long run's periodic
    checkpoint is the checkpoint a run with that budget ends with (what
    `bench_learning --runs RUN --at-step N` relies on)."""
    averaging = "agent.average_decay=0.9"
    make_trainer(tmp_path / "short", "pomdp", *RESUME, averaging, "train.total_env_steps=600").train()
    make_trainer(tmp_path / "long", "pomdp", *RESUME, averaging, "train.total_env_steps=1200").train()
    short = load_checkpoint(tmp_path / "short" / "checkpoints" / "latest.pt")
    passed = load_checkpoint(tmp_path / "long" / "checkpoints" / "step_000000000600.pt")
    assert short["counters"] == passed["counters"]
    for part in ("online", "averaged", "replay"):
        assert _same_tensors(short[part], passed[part]), part


def test_run_resumed_from_a_periodic_checkpoint_continues_as_if_never_stopped(tmp_path):
    """A stopped run's newest checkpoint is a periodic one (what `resume=auto` picks)."""
    straight = make_trainer(tmp_path / "straight", "pomdp", *RESUME, "train.total_env_steps=1800")
    straight.train()
    periodic = tmp_path / "straight" / "checkpoints" / "step_000000000600.pt"
    resumed = make_trainer(tmp_path / "resumed", "pomdp", *RESUME, "train.total_env_steps=1800", f"resume={periodic}")
    resumed.train()
    assert resumed.global_step == straight.global_step == 1800
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").glob("step_*.pt")) == [
        "step_000000001200.pt", "step_000000001800.pt"]  # no extra checkpoint right after the resume
    assert _same_tensors(resumed.learner.online.state_dict(), straight.learner.online.state_dict())
    assert _same_tensors(resumed.replay.state_dict(), straight.replay.state_dict())


def test_resumed_run_with_held_exploration_continues_as_if_never_stopped(tmp_path):
    # The holds in progress are part of the state: a resumed run acts exactly as the straight one.
    hold = ("agent.epsilon_hold=1.5", "agent.epsilon_end=0.3")
    straight = make_trainer(tmp_path / "straight", "pomdp", *RESUME, *hold, "train.total_env_steps=1200")
    straight.train()
    make_trainer(tmp_path / "part1", "pomdp", *RESUME, *hold, "train.total_env_steps=600").train()
    resumed = make_trainer(tmp_path / "part2", "pomdp", *RESUME, *hold, "train.total_env_steps=1200",
                           f"resume={tmp_path / 'part1' / 'checkpoints' / 'latest.pt'}")
    resumed.train()
    assert (straight.actor.hold.left > 0).any()  # some holds were under way at the end
    assert _same_tensors(resumed.actor.hold.state_dict(), straight.actor.hold.state_dict())
    assert _same_tensors(resumed.learner.online.state_dict(), straight.learner.online.state_dict())
    assert _same_tensors(resumed.env.state_dict(), straight.env.state_dict())


def test_resume_without_the_replay_refills_it_before_learning(tmp_path):
    # Replay is not saved by default: the resumed run must collect learning_starts env steps
    # again before its first update, not sample an empty or nearly empty buffer.
    make_trainer(tmp_path / "a", "pomdp", "train.total_env_steps=600").train()
    t = make_trainer(tmp_path / "b", "pomdp", "train.total_env_steps=1200",
                     f"resume={tmp_path / 'a' / 'checkpoints' / 'latest.pt'}")
    sampled, real_sample = [], t.replay.sample

    def sample(batch_size, **kwargs):
        sampled.append((t.global_step, int(t.replay.size)))
        return real_sample(batch_size, **kwargs)

    t.replay.sample = sample
    t.train()
    assert sampled and sampled[0][0] >= 600 + 200  # resume step + agent.learning_starts
    assert min(size for _, size in sampled) >= 4  # never an empty or one-sequence buffer


def test_resume_refuses_a_checkpoint_of_another_level_or_network(tmp_path):
    make_trainer(tmp_path / "a", "pomdp", "train.total_env_steps=300").train()
    path = tmp_path / "a" / "checkpoints" / "latest.pt"
    other_level = make_trainer(tmp_path / "b", "minimal", f"resume={path}")
    with pytest.raises(CheckpointError, match="layout"):
        other_level.resume(str(path))
    other_size = make_trainer(tmp_path / "c", "pomdp", "agent.hidden_size=32", f"resume={path}")
    with pytest.raises(CheckpointError, match="hidden_size"):
        other_size.resume(str(path))
    # same level, one more observation part: the message names the parts on each side
    with_landmarks = make_trainer(tmp_path / "d", "pomdp", "env.landmarks=true", f"resume={path}")
    with pytest.raises(CheckpointError, match=r"time 3; this run.*time 3, landmarks 14x3, seen_cells 64\)"):
        with_landmarks.resume(str(path))
    other_agents = make_trainer(tmp_path / "d", "pomdp", "env.num_envs=6", f"resume={path}")
    with pytest.raises(CheckpointError, match="num_envs"):
        other_agents.resume(str(path))


# ------------------------------------------------------------------------------ wiring

def test_temporal_level_trains_with_its_clock(tmp_path):
    t = make_trainer(tmp_path, "temporal", "train.total_env_steps=400", "agent.learning_starts=100000")
    assert t.env.params.temporal is True
    assert t.env.pack.name == "L3_temporal_mechanics"
    t.train()
    time_part = next(p for p in t.layout.parts if p.name == "time")
    obs = t.replay.storage["obs"][: int(t.replay.size)]
    time_obs = obs[..., time_part.start: time_part.start + time_part.shape[0]]
    assert time_obs.abs().sum() > 0  # the clock reaches what the network is trained on
    assert make_trainer(tmp_path / "p", "pomdp").env.params.temporal is False


def _grid_encoder_width(t) -> int:
    grid = t.learner.online.encoder.encoders["grid"]
    return grid.out_features if hasattr(grid, "out_features") else grid[0].out_features


# Every setting: a non-default override, where the trainer must have put it, what it must be
# there. None = checked by a training run below instead.
WIRING = {
    "env.level": ("env.level=L1_full_observability", lambda t: t.env.pack.name, "L1_full_observability"),
    "env.num_envs": ("env.num_envs=6", lambda t: (t.env.num_envs, t.actor.num_agents, t.replay.num_agents,
                                                  t.curriculum.num_agents), (6, 6, 6, 6)),
    "env.reward_mode": ("env.reward_mode=interoception", lambda t: t.env.pack.reward_mode, "interoception"),
    "env.layout_mode": ("env.layout_mode=per_town", lambda t: t.env.pack.layout_mode, "per_town"),
    "env.layout_seed": ("env.layout_seed=4321", lambda t: t.env.pack.layout_seed, 4321),
    "env.max_steps": ("env.max_steps=321", lambda t: (t.env.params.max_steps, t.max_steps), (321, 321)),
    "env.start_spread": ("env.start_spread=0.25", lambda t: t.env.pack.start_spread, 0.25),
    "env.landmarks": ("env.landmarks=true", lambda t: ("landmarks" in t.layout.names(),
                                                       "landmarks" in t.learner.online.encoder.encoders), (True, True)),
    "agent.network": ("agent.network=feedforward", lambda t: (type(t.learner.online).__name__, t.recurrent),
                      ("FeedForwardQNetwork", False)),
    "agent.hidden_size": ("agent.hidden_size=24", lambda t: (t.learner.online.hidden_size, t.actor.state[0].shape[-1],
                                                             t.replay.hidden_size), (24, 24, 24)),
    "agent.encoder_size": ("agent.encoder_size=12", _grid_encoder_width, 12),
    "agent.dueling": ("agent.dueling=true", lambda t: (type(t.learner.online.q_head).__name__,
                                                       type(t.learner.target.q_head).__name__),
                      ("DuelingHead", "DuelingHead")),
    "agent.position_encoding": ("agent.position_encoding=cells",
                                lambda t: (type(t.learner.online.encoder.encoders["position"]).__name__,
                                           type(t.learner.target.encoder.encoders["position"]).__name__),
                                ("PositionCellEncoder", "PositionCellEncoder")),
    "agent.lr": ("agent.lr=0.00123", lambda t: [g["lr"] for g in t.learner.optimizer.param_groups], [0.00123]),
    "agent.adam_eps": ("agent.adam_eps=3e-6", lambda t: [g["eps"] for g in t.learner.optimizer.param_groups], [3e-6]),
    "agent.gamma": ("agent.gamma=0.97", lambda t: t.learner.config.gamma, 0.97),
    "agent.n_step": ("agent.n_step=2", lambda t: t.learner.config.n_step, 2),
    "agent.reward_scale": ("agent.reward_scale=0.5", lambda t: t.learner.config.reward_scale, 0.5),
    "agent.average_decay": ("agent.average_decay=0.9", lambda t: (t.learner.config.average_decay,
                                                                  t.learner.averaged is not None), (0.9, True)),
    "agent.seq_len": ("agent.seq_len=10", lambda t: (t.replay.seq_len, t.cfg.agent.seq_len), (10, 10)),
    "agent.burn_in": ("agent.burn_in=3", lambda t: t.learner.config.burn_in, 3),
    "agent.batch_size": None,
    "agent.replay_capacity": ("agent.replay_capacity=333", lambda t: t.replay.capacity, 333),
    "agent.replay_ratio": None,
    "agent.learning_starts": None,
    "agent.target_update_every": ("agent.target_update_every=77", lambda t: t.learner.config.target_update_every, 77),
    "agent.tau": ("agent.tau=0.01", lambda t: t.learner.config.tau, 0.01),
    "agent.grad_clip": ("agent.grad_clip=2.5", lambda t: t.learner.config.grad_clip, 2.5),
    "agent.loss": ("agent.loss=mse", lambda t: t.learner.config.loss, "mse"),
    "agent.prioritized": None,
    "agent.priority_alpha": ("agent.priority_alpha=0.7", lambda t: t.replay.priority_exponent, 0.7),
    "agent.epsilon_start": ("agent.epsilon_start=0.9", lambda t: t.actor.schedule.start, 0.9),
    "agent.epsilon_end": ("agent.epsilon_end=0.02", lambda t: t.actor.schedule.end, 0.02),
    "agent.epsilon_decay_steps": ("agent.epsilon_decay_steps=777", lambda t: t.actor.schedule.decay_steps, 777),
    "agent.epsilon_ladder": ("agent.epsilon_ladder=true", lambda t: t.actor.schedule.ladder, True),
    "agent.shaping": ("agent.shaping=0.5", lambda t: t.learner.config.shaping, 0.5),
    "agent.distress": ("agent.distress=0.5", lambda t: t.learner.config.distress, 0.5),
    "agent.distress_threshold": ("agent.distress_threshold=0.2", lambda t: t.learner.config.distress_threshold, 0.2),
    "agent.distress_money": ("agent.distress_money=true", lambda t: t.learner.config.distress_money, True),
    "agent.lstm_precision": ("agent.lstm_precision=bfloat16", lambda t: t.learner.config.lstm_precision,
                             "bfloat16"),
    "agent.epsilon_hold": ("agent.epsilon_hold=1.5", lambda t: t.actor.hold.cdf[0].item(),
                           pytest.approx(1 / sum(k ** -1.5 for k in range(1, 101)))),
    "exploration.rnd": ("exploration.rnd=true", lambda t: (t.rnd is not None, t.annealer is not None), (True, True)),
    "exploration.intrinsic_weight": ("exploration.intrinsic_weight=0.25",
                                     lambda t: (t.learner.config.intrinsic_weight, t.annealer.weight), (0.25, 0.25)),
    "exploration.rnd_lr": ("exploration.rnd_lr=3e-4", lambda t: t.rnd.optimizer.param_groups[0]["lr"], 3e-4),
    "exploration.anneal_window": ("exploration.anneal_window=17", lambda t: t.annealer.window, 17),
    "exploration.anneal_variance": ("exploration.anneal_variance=12", lambda t: t.annealer.variance_threshold, 12.0),
    "exploration.anneal_survival_floor": ("exploration.anneal_survival_floor=33",
                                          lambda t: t.annealer.survival_floor, 33.0),
    "exploration.anneal_decay": ("exploration.anneal_decay=0.75", lambda t: t.annealer.decay, 0.75),
    "curriculum.enabled": ("curriculum.enabled=false", lambda t: t.curriculum, None),
    "curriculum.multipliers": ("curriculum.multipliers=[0.3,0.6,1.0]",
                               lambda t: t.curriculum.stage_multipliers.tolist(), [0.3, 0.6, 1.0]),
    "curriculum.window": ("curriculum.window=7", lambda t: t.curriculum.window, 7),
    "curriculum.min_episodes": ("curriculum.min_episodes=3", lambda t: t.curriculum.min_episodes, 3),
    "curriculum.advance_survival": ("curriculum.advance_survival=0.65", lambda t: t.curriculum.advance_survival, 0.65),
    "curriculum.retreat_survival": ("curriculum.retreat_survival=0.25", lambda t: t.curriculum.retreat_survival, 0.25),
    "curriculum.entropy_threshold": ("curriculum.entropy_threshold=0.9",
                                     lambda t: t.curriculum.entropy_threshold, 0.9),
    "curriculum.idle_baseline": ("curriculum.idle_baseline=true", lambda t: t.curriculum.uses_baseline, True),
    "train.log_every_env_steps": ("train.log_every_env_steps=640", lambda t: t.next_log, 640),
    "train.torch_threads": ("train.torch_threads=1", lambda t: torch.get_num_threads(), 1),
    "checkpoint.every_env_steps": ("checkpoint.every_env_steps=960", lambda t: t.next_checkpoint, 960),
}
# Read outside the Trainer's components; each is tested elsewhere in this file or in test_cli.py.
NOT_WIRED_HERE = {"seed", "device", "resume", "train.total_env_steps", "train.max_wall_minutes",
                  "train.progress_bar", "checkpoint.save_replay", "checkpoint.keep", "wandb.mode",
                  "wandb.project", "wandb.entity", "wandb.group", "wandb.tags",
                  # tested by their own tests below:
                  "train.final_eval_episodes", "train.final_eval_seed", "train.final_eval_max_steps",
                  "train.compile",
                  "train.summary_episodes",  # the closing summary: tests/agents/test_summary.py
                  "allow_world_change"}  # tests/agents/test_reliability.py


def _schema_keys(schema=Config, prefix="") -> set[str]:
    hints, keys = get_type_hints(schema), set()
    for f in fields(schema):
        if is_dataclass(hints[f.name]):
            keys |= _schema_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.add(f"{prefix}{f.name}")
    return keys


def test_wiring_table_covers_every_setting():
    # A new setting must get a row in WIRING: every config number must be used.
    assert set(WIRING) | NOT_WIRED_HERE == _schema_keys()


# Settings that cannot share one trainer with the rest get their own.
SEPARATE = {"env.level": "full_obs", "agent.network": "full_obs", "curriculum.enabled": "no_curriculum"}


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    """One trainer per group, built with every override of its group at once."""
    groups: dict[str, list[str]] = {"main": ["exploration.rnd=true"], "full_obs": [], "no_curriculum": []}
    for key, row in WIRING.items():
        if row is not None and key != "exploration.rnd":
            groups[SEPARATE.get(key, "main")].append(row[0])
    cache: dict[str, Trainer] = {}

    def get(key: str) -> Trainer:
        group = SEPARATE.get(key, "main")
        if group not in cache:
            experiment = "full_obs" if group == "full_obs" else "pomdp"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("WANDB_MODE", "disabled")
                cache[group] = make_trainer(tmp_path_factory.mktemp(group), experiment, *groups[group])
        return cache[group]

    return get


@pytest.mark.parametrize("key", sorted(k for k, row in WIRING.items() if row is not None))
def test_each_setting_reaches_its_component(wired, key):
    _, getter, expected = WIRING[key]
    got = getter(wired(key))
    assert got == (pytest.approx(expected) if isinstance(expected, (float, list)) else expected)


def test_batch_size_replay_ratio_and_learning_starts_drive_the_updates(tmp_path):
    # 4 agents, ratio 0.5, batch 4, seq 8: 4 * 0.5 / 32 = 1/16 update per loop iteration,
    # from the iteration at which global_step reaches max(400, 4 * 8) = 400, i.e. iterations
    # 100..400 (301 of them) -> floor(301 / 16) = 18 updates.
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=1600", "agent.learning_starts=400",
                     "agent.replay_ratio=0.5", "agent.batch_size=4", "agent.prioritized=true")
    sampled = []
    real_sample = t.replay.sample

    def sample(batch_size, **kwargs):
        sampled.append((t.global_step, batch_size, kwargs))
        return real_sample(batch_size, **kwargs)

    t.replay.sample = sample
    t.train()
    assert t.learner.updates == len(sampled) == 18
    assert sampled[0][0] == 400 + 15 * 4 and all(b == 4 for _, b, _ in sampled)
    assert all(kw.get("prioritized") is True for _, _, kw in sampled)
    assert not torch.all(t.replay.priority[: int(t.replay.size)] == 1.0)  # priorities were updated


# ---------------------------------------------------------------------- metrics

def test_metrics_rows_use_cleanrl_names_against_env_steps(tmp_path):
    t = make_trainer(tmp_path, "pomdp", "train.total_env_steps=1100", "agent.learning_starts=200")
    t.train()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "event" not in r]
    assert [r["global_step"] for r in rows] == [500, 1000, 1100]  # every 500, and a last row
    for row in rows:
        assert {"charts/SPS", "charts/epsilon", "charts/episodes", "losses/td_loss", "losses/q_values"} <= row.keys()
        assert row["charts/SPS"] > 0
    assert any("charts/episodic_length" in r for r in rows)
    assert rows[-1]["charts/updates"] == t.learner.updates
    assert rows[-1]["charts/episodes"] == t.episodes


class _Events:
    def __init__(self):
        self.rows = []

    def event(self, step, kind, data):
        self.rows.append((step, kind, data))


@pytest.mark.parametrize("each_step", [True, False])
def test_stage_changes_are_logged_with_rationale_on_both_paths(tmp_path, each_step):
    """CPU logs each change as it happens; the GPU path buffers it on the device and logs
    it at the next interval. Both carry the numbers behind the decision."""
    t = make_trainer(tmp_path, "minimal")
    t.events_each_step = each_step
    cu = t.curriculum
    n = cu.num_agents
    t.env.reset(seed=0)
    sink = _Events()
    # Every agent finishes a full-length episode, enough of them to be eligible.
    for _ in range(cu.min_episodes):
        t.ep_length = torch.full((n,), t.max_steps, dtype=torch.long)
        t.ep_entropy = torch.zeros(n)
        t._finish_episodes(torch.ones(n, dtype=torch.bool), sink)
    if not each_step:
        assert sink.rows == []
        t._log_pending_changes(sink)
    changes = [d for _, kind, d in sink.rows if kind == "curriculum_stage_change"]
    assert sorted(d["agent"] for d in changes) == list(range(n))
    for d in changes:
        assert d["from_stage"] == 0 and d["to_stage"] == 1
        assert d["survival_rate"] == pytest.approx(1.0)
        assert d["learning_progress"] == 0.0 and d["progress_noise"] == 0.0
        assert d["episodes_at_stage"] >= cu.min_episodes
    assert torch.equal(cu.stage, torch.ones(n, dtype=torch.long))


# ------------------------------------------------- final evaluation: the run's objective

def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_final_evaluation_is_what_train_returns_and_matches_the_evaluate_cli(tmp_path):
    """train() returns the greedy full-difficulty mean survival, logs it as eval/*, and gets
    the same numbers as `python -m townlet_agents.evaluate` on the final checkpoint."""
    from townlet_agents.evaluate import evaluate

    t = make_trainer(tmp_path, "minimal", "train.total_env_steps=400", "train.final_eval_episodes=3",
                     "train.final_eval_seed=77")
    result = t.train()
    evals = [r for r in _rows(tmp_path) if "eval/mean_survival" in r]
    assert len(evals) == 1
    row = evals[0]
    assert row["global_step"] == t.global_step and row["eval/episodes"] == 3
    assert result == pytest.approx(row["eval/mean_survival"])
    assert 1 <= result <= t.max_steps
    cli = evaluate(compose("checkpoint=" + str(tmp_path / "checkpoints" / "latest.pt"), "episodes=3", "seed=77",
                           "device=cpu", config_name="evaluate"))
    assert cli["mean_survival"] == pytest.approx(result)
    assert cli["median_survival"] == pytest.approx(row["eval/median_survival"])


def test_final_evaluation_uses_full_difficulty_its_own_seed_and_greedy_actions(tmp_path, monkeypatch):
    import townlet_agents.episodes as episodes_module

    seen = {}
    real = episodes_module.run_episodes

    def recording(env, policy, seed, video_frames=None):
        seen["seed"], seen["num_envs"], seen["limit"] = seed, env.num_envs, env.params.max_steps
        survival, returns = real(env, policy, seed, video_frames)
        seen["multiplier"] = env.state.multiplier.clone()
        return survival, returns

    monkeypatch.setattr(episodes_module, "run_episodes", recording)
    # Training keeps every agent at curriculum stage 0 (multiplier 0.2) ...
    t = make_trainer(tmp_path, "minimal", "train.total_env_steps=200", "train.final_eval_episodes=5",
                     "curriculum.min_episodes=100000", "train.final_eval_max_steps=1234")
    t.train()
    assert seen["limit"] == 1234 and t.max_steps == 1000  # longer lives for the evaluation only
    assert t.env.state.multiplier.tolist() == pytest.approx([0.2] * t.cfg.env.num_envs)
    # ... the evaluation does not: fresh towns at 1.0, seeded apart from training.
    assert seen["seed"] == 12345 and seen["num_envs"] == 5
    assert seen["multiplier"].tolist() == pytest.approx([1.0] * 5)
    assert t.learner.online.training  # back in training mode afterwards


def _record_evaluation_envs(monkeypatch, read) -> list:
    """`read(env)` of every env an evaluation loop (`episodes.run_episodes`) runs on."""
    from townlet_agents import episodes as episodes_module
    seen = []
    real = episodes_module.run_episodes

    def recording(env, policy, seed, video_frames=None):
        seen.append(read(env))
        return real(env, policy, seed, video_frames)

    monkeypatch.setattr(episodes_module, "run_episodes", recording)
    return seen


def test_longer_training_lives_leave_the_final_evaluation_at_the_level_limit(tmp_path, monkeypatch):
    limits = _record_evaluation_envs(monkeypatch, lambda env: env.params.max_steps)
    t = make_trainer(tmp_path, "minimal", "train.total_env_steps=200", "train.final_eval_episodes=2",
                     "env.max_steps=1500", "train.summary_episodes=0")
    t.train()
    assert t.env.params.max_steps == 1500 and t.max_steps == 1500
    assert limits == [1000]  # the level's limit: results stay comparable across training limits


def test_lowered_starts_are_for_training_lives_only(tmp_path, monkeypatch):
    spreads = _record_evaluation_envs(monkeypatch, lambda env: env.pack.start_spread)
    t = make_trainer(tmp_path, "minimal", "train.total_env_steps=200", "train.final_eval_episodes=2",
                     "env.start_spread=0.5", "train.summary_episodes=0")
    t.train()
    assert t.env.pack.start_spread == 0.5
    assert spreads == [0.0]  # the final evaluation starts at the level's meters


def test_without_final_evaluation_train_returns_the_training_survival(tmp_path):
    t = make_trainer(tmp_path, "minimal", "train.total_env_steps=4000")
    result = t.train()
    rows = _rows(tmp_path)
    assert not any(k.startswith("eval/") for r in rows for k in r)
    lengths = [r["charts/episodic_length"] for r in rows if "charts/episodic_length" in r]
    assert lengths and result == pytest.approx(lengths[-1])


# Read after training (final evaluation, tested above) or only wrapping methods (below).


@pytest.mark.parametrize("compile_", [False, True])
def test_compile_wraps_each_networks_own_acting_and_learning_passes(tmp_path, compile_):
    t = make_trainer(tmp_path, "pomdp", f"train.compile={str(compile_).lower()}")
    online, target = t.learner.online, t.learner.target
    for net in (online, target):  # instance attributes shadow the class methods only when compiled
        assert ("forward" in vars(net)) == compile_ and ("step" in vars(net)) == compile_
    if compile_:  # the target's compiled forward runs the target, not the online network
        assert vars(target)["forward"] is not vars(online)["forward"]
        assert t.actor.net is online
    assert set(t.learner.state_dict()["online"]) == set(online.state_dict())  # checkpoints unchanged


def test_make_network_reads_a_checkpoint_config_from_before_position_encoding():
    """A stored config without `agent.position_encoding` (or `agent.dueling`) rebuilds the
    network it was trained with: linear position encoder, plain Q head."""
    from omegaconf import OmegaConf

    from townlet_agents.factories import make_network
    from townlet_env.layout import ObsLayout

    old = OmegaConf.create({"agent": {"network": "feedforward", "hidden_size": 8, "encoder_size": 8}})
    net = make_network(old, ObsLayout.build(cells=9), "cpu")
    assert type(net.encoder.encoders["position"]).__name__ == "Sequential"
    assert type(net.q_head).__name__ == "Linear"
    old.agent.position_encoding = "cells"
    net = make_network(old, ObsLayout.build(cells=9), "cpu")
    assert type(net.encoder.encoders["position"]).__name__ == "PositionCellEncoder"
