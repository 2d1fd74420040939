"""The training loop: collect with all agents at once, store sequences, learn, log,
checkpoint. It reads top to bottom like CleanRL's dqn.py; the pieces it calls live in
their own modules (factories, acting, replay, learner, exploration, curriculum,
checkpoint, episodes). The factories are re-exported here for callers written against
this module.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from townlet_env import NUM_ACTIONS
from townlet_env.schema import SETTLES_AT_EPISODE_END

from . import episodes
from .acting import Actor, masked_entropy
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import check_config, resolve_device
from .curriculum import Curriculum
from .exploration import RND, EpsilonSchedule, HeldExploration, IntrinsicAnnealer
from .factories import compile_network, describe_layout, layout_record, make_env, make_network, seed_everything
from .guards import DivergenceGuard
from .learner import Learner, learner_config
from .metrics import MetricsSink
from .replay import SequenceReplay
from .resume import AUTO, find_resumable, remove_stale_temp_files
from .run_errors import DivergenceError, MetricsWriteError
from .run_lock import RunLock
from .stage_events import StageEventLog
from .stopping import StoppedBySignal
from .world_identity import check_world, world_identity

__all__ = ["Trainer", "compile_network", "layout_record", "make_env", "make_network", "seed_everything"]

class Trainer:
    def __init__(self, cfg, run_dir: Path, job_name: str | None = None):
        check_config(cfg)
        self.cfg, self.run_dir, self.job_name = cfg, Path(run_dir), job_name
        self.device = resolve_device(cfg.device)
        torch.set_num_threads(cfg.train.torch_threads)
        seed_everything(cfg.seed)
        a, n = cfg.agent, cfg.env.num_envs

        self.env = make_env(cfg, self.device, autoreset_mode="SameStep", validate_inputs=False,
                            start_spread=cfg.env.get("start_spread", 0.0))
        self.layout = self.env.obs_layout
        self.max_steps = self.env.pack.max_steps
        online = make_network(cfg, self.layout, self.device)
        self.recurrent = online.is_recurrent
        self.learner = Learner(online, config=learner_config(
            a, intrinsic_weight=cfg.exploration.intrinsic_weight if cfg.exploration.rnd else 0.0))
        if cfg.train.compile:  # after the Learner's deepcopy: each network compiles its own methods
            compile_network(self.learner.online)
            compile_network(self.learner.target)
        self.replay = SequenceReplay(max(a.replay_capacity, n), n, a.seq_len, self.layout.size, NUM_ACTIONS,
                                     a.hidden_size, self.device, recurrent=self.recurrent,
                                     priority_exponent=a.priority_alpha)
        hold = HeldExploration(a.epsilon_hold, n, self.device) if a.epsilon_hold else None
        self.actor = Actor(online, n, self.device,
                           EpsilonSchedule(a.epsilon_start, a.epsilon_end, a.epsilon_decay_steps, a.epsilon_ladder),
                           hold)
        cu = cfg.curriculum
        baselines = None
        if cu.get("idle_baseline", False):
            steps = self.env.idle_survival(list(cu.multipliers)).cpu()
            baselines = tuple((steps / self.max_steps).clamp(max=1.0).tolist())
        self.curriculum = Curriculum(
            n, self.max_steps, multipliers=tuple(cu.multipliers), window=cu.window,
            min_episodes=cu.min_episodes, advance_survival=cu.advance_survival,
            retreat_survival=cu.retreat_survival, entropy_threshold=cu.entropy_threshold, device=self.device,
            idle_baselines=baselines,
        ) if cu.enabled else None
        ex = cfg.exploration
        self.rnd = RND(self.layout.size, lr=ex.rnd_lr, device=self.device) if ex.rnd else None
        self.annealer = IntrinsicAnnealer(
            ex.intrinsic_weight, window=ex.anneal_window, variance_threshold=ex.anneal_variance,
            survival_floor=ex.anneal_survival_floor, decay=ex.anneal_decay, device=self.device,
        ) if ex.rnd else None

        # Counters (host ints: they depend only on how many steps ran, never on values).
        self.global_step = 0
        self.updates_due = 0.0
        self.replay_restored = False
        self.next_log = cfg.train.log_every_env_steps
        self.next_checkpoint = cfg.checkpoint.every_env_steps
        # Per-agent episode accumulators and since-last-log totals (device tensors).
        z = lambda dtype=torch.float32: torch.zeros(n, device=self.device, dtype=dtype)  # noqa: E731
        self.ep_return, self.ep_length, self.ep_entropy = z(), z(torch.long), z()
        self.totals = torch.zeros(4, device=self.device)  # episodes, lengths, returns, entropy
        self.episodes = 0
        # Stage changes found on a GPU are kept on the device and read at log intervals.
        self.events_each_step = self.device.type == "cpu"
        self.stage_events = StageEventLog.for_run(n, cfg.train.log_every_env_steps, cfg.curriculum.min_episodes,
                                                  self.device)
        # Reliability: divergence stops the run (read each update on the CPU, else at
        # logs and checkpoints); world_identity goes into every checkpoint.
        self.guard = DivergenceGuard(self.device, check_every_update=self.device.type == "cpu")
        self.world_identity = world_identity(self.env.pack, layout_record(self.layout))
        # baseline_relative pays its whole episode's reward at the last step, truncation
        # included: nothing is left to bootstrap, so that step is stored as terminal.
        self.truncation_is_terminal = self.env.pack.reward_mode in SETTLES_AT_EPISODE_END
        self.last_metrics: dict[str, torch.Tensor] = {}
        self.final_survival = float("nan")
        self.final_eval_survival = float("nan")

    # --- the loop ---------------------------------------------------------------------------

    def train(self, stop=None) -> float:
        """Train to the budget; `stop` (a stopping.GracefulStop) ends the run cleanly after
        the iteration in which a signal arrived, then raises StoppedBySignal."""
        with RunLock(self.run_dir):
            remove_stale_temp_files(self.run_dir)
            return self._train(stop)

    def _start(self):
        """Where the run begins: `resume=auto`'s newest loadable checkpoint of the run
        folder, `resume=PATH`, or fresh towns."""
        resume = self.cfg.resume
        found = find_resumable(self.run_dir, self.device) if resume == AUTO else None
        if found is not None:
            print(f"resume=auto: continuing from {found[0]}", flush=True)
            return self.resume(str(found[0]), found[1])
        if resume and resume != AUTO:
            return self.resume(resume)
        if resume == AUTO:
            print(f"resume=auto: no checkpoint in {self.run_dir / 'checkpoints'}; starting a new run", flush=True)
        obs, info = self.env.reset(seed=self.cfg.seed)
        self._apply_difficulty()
        return obs, info

    def _train(self, stop) -> float:
        cfg, env, n = self.cfg, self.env, self.cfg.env.num_envs
        a = cfg.agent
        obs, info = self._start()
        mask = info["action_mask"]
        self.replay.begin(obs, mask, self.actor.state if self.recurrent else None, episode_start=self.ep_length == 0)
        sink = MetricsSink(self.run_dir, cfg, cfg.train.total_env_steps, self.global_step, self.job_name)
        learning_starts = max(a.learning_starts, n * a.seq_len)  # first sequences must exist
        if self.global_step and not self.replay_restored:  # resumed without its replay: refill first
            learning_starts += self.global_step
        updates_per_env_step = a.replay_ratio / (a.batch_size * a.seq_len)
        start, sps_step, sps_time = time.time(), self.global_step, time.time()
        zeros = torch.zeros(n, device=self.device)
        finished = False
        stopped = False  # by a signal: checkpoint and log as at the end, no final evaluation
        unsafe = False  # diverged weights or a failing disk: write nothing more
        try:
            while self.global_step < cfg.train.total_env_steps:
                # 1. act: one forward pass for all agents, masked epsilon-greedy.
                action, q, eps = self.actor.act(obs, mask, self.global_step)
                next_obs, reward, terminated, truncated, info = env.step(action)
                done = terminated | truncated
                # The true next observation: the final one where an episode just ended.
                real_next = torch.where(done[:, None], info["final_obs"], next_obs)
                real_mask = torch.where(done[:, None], info["final_info"]["action_mask"], info["action_mask"])
                r_int = self.rnd.intrinsic_reward(real_next) if self.rnd else zeros

                # 2. store: the step for every agent, sequences emitted at ends and when full.
                no_bootstrap = terminated | truncated if self.truncation_is_terminal else terminated
                self.replay.add(action, reward, r_int, no_bootstrap, truncated, real_next, real_mask,
                                self.actor.state if self.recurrent else None, next_obs, info["action_mask"])
                self.actor.end_episodes(done)

                # 3. finished episodes: stats, curriculum (once per episode), annealer.
                self.ep_return += reward
                self.ep_length += 1
                self.ep_entropy += masked_entropy(q, mask)
                self._finish_episodes(done, sink)
                obs, mask = next_obs, info["action_mask"]
                self.global_step += n

                # 4. learn at the configured replay ratio.
                if self.global_step >= learning_starts:
                    self.updates_due += n * updates_per_env_step
                    while self.updates_due >= 1.0:
                        self._learn()
                        self.updates_due -= 1.0

                # 5. log, checkpoint, wall-clock budget.
                if self.global_step >= self.next_log:
                    self.guard.check()
                    now = time.time()
                    self._log(sink, (self.global_step - sps_step) / max(now - sps_time, 1e-9), eps)
                    sps_step, sps_time = self.global_step, now
                    self.next_log += cfg.train.log_every_env_steps
                if self.global_step >= self.next_checkpoint:
                    # Advanced first: the checkpoint records where the next one falls, so a run
                    # resumed from it does not checkpoint (and flush) again at once.
                    self.next_checkpoint += cfg.checkpoint.every_env_steps
                    self.checkpoint()
                if cfg.train.max_wall_minutes and time.time() - start >= 60 * cfg.train.max_wall_minutes:
                    break
                if stop is not None and stop.requested:
                    stopped = True
                    break
            finished = True
        except (DivergenceError, MetricsWriteError, CheckpointError):
            unsafe = True
            raise
        finally:
            # Checkpoint before the closing row: the row consumes the since-last-log
            # accumulators, which a resumed run must still have to log what a run that
            # never stopped would.
            try:
                if not unsafe:
                    self.checkpoint(final=True)
                    if finished and self.global_step > sps_step:  # a last row for the steps since the last log
                        self._log(sink, (self.global_step - sps_step) / max(time.time() - sps_time, 1e-9), eps)
                    if finished and not stopped and cfg.train.final_eval_episodes > 0:
                        self.final_eval_survival = self.final_evaluation(sink)
            finally:
                sink.close()
        if stopped:
            raise StoppedBySignal(stop.requested, (
                f"stopped by {stop.requested} at env step {self.global_step}: checkpoint "
                f"{self.run_dir / 'checkpoints' / 'latest.pt'} written; continue with resume=auto "
                f"hydra.run.dir={self.run_dir}"))
        return self.final_eval_survival if cfg.train.final_eval_episodes > 0 else self.final_survival

    def final_evaluation(self, sink: MetricsSink | None = None, towns: int | None = None) -> float:
        """Greedy episodes of the policy network (averaged weights if kept) at full
        difficulty (multiplier 1.0), one fresh town per episode on `train.final_eval_seed`,
        measured by the same loop as `townlet_agents.evaluate`; logs `eval/*` and returns the mean survival (the
        objective a sweeper maximises: unlike the training survival it is free of
        epsilon and curriculum)."""
        t = self.cfg.train
        towns = towns or t.final_eval_episodes
        env = make_env(self.cfg, self.device, num_envs=towns, max_steps=t.get("final_eval_max_steps"),
                       layout_pool="held_out")
        env.set_difficulty(torch.ones(towns))
        net = self.learner.policy_network
        was_training = net.training
        net.eval()
        try:
            survival, returns = episodes.run_episodes(env, Actor(net, towns, self.device).greedy,
                                             seed=t.final_eval_seed)
        finally:
            net.train(was_training)
            env.close()
        mean = float(survival.mean())
        if sink is not None:
            sink.log(self.global_step, {"eval/mean_survival": mean, "eval/median_survival": float(np.median(survival)),
                                        "eval/mean_return": float(returns.mean()), "eval/episodes": len(survival)})
        return mean

    def _learn(self) -> None:
        a = self.cfg.agent
        batch = self.replay.sample(a.batch_size, prioritized=a.prioritized)
        if self.annealer is not None:
            self.learner.intrinsic_weight = self.annealer.weight_tensor
        metrics = self.learner.update(batch)
        self.guard.observe(metrics, self.learner.online_parameters, self.global_step, self.learner.updates)
        if a.prioritized:
            self.replay.update_priorities(batch["indices"], metrics["priority"])
        if self.rnd is not None:  # train the predictor on observations of valid steps only
            valid = batch["valid"].reshape(-1).float()
            obs = batch["obs"][:, :-1].reshape(-1, self.layout.size)
            pick = torch.multinomial(valid + 1e-12, min(256, valid.numel()), replacement=True)
            metrics["rnd_loss"] = self.rnd.update(obs[pick])
        self.last_metrics = metrics

    def _finish_episodes(self, done: torch.Tensor, sink: MetricsSink) -> None:
        """Per finished episode: totals for logging, one curriculum update, the annealer."""
        d = done.float()
        length = self.ep_length.float()
        entropy = self.ep_entropy / length.clamp(min=1)
        self.totals += torch.stack([d.sum(), (length * d).sum(), (self.ep_return * d).sum(), (entropy * d).sum()])
        if self.curriculum is not None:
            if self.events_each_step:  # reading events is free on the CPU: log each one
                for event in self.curriculum.record_episodes(done, self.ep_length, entropy=entropy,
                                                             returns=self.ep_return):
                    sink.event(self.global_step, "curriculum_stage_change", event.as_dict())
            else:  # on a GPU stay sync-free: changes go into a device table read at log time
                u = self.curriculum.record_episodes_tensor(done, self.ep_length, entropy=entropy,
                                                           returns=self.ep_return)
                self.stage_events.record(self.global_step, u, entropy)
            self._apply_difficulty()
        if self.annealer is not None:
            self.annealer.observe(self.ep_length, done)
        keep = ~done
        self.ep_return *= keep
        self.ep_length *= keep
        self.ep_entropy *= keep

    def _apply_difficulty(self) -> None:
        if self.curriculum is not None:
            self.env.set_difficulty(self.curriculum.multipliers())

    def _log(self, sink: MetricsSink, sps: float, eps: torch.Tensor) -> None:
        episodes, lengths, returns, entropy = self.totals.tolist()
        self.totals.zero_()
        self.episodes += int(episodes)
        m: dict[str, float] = {
            "charts/SPS": sps,
            "charts/episodes": self.episodes,
            "charts/epsilon": float(eps.mean()),
            "charts/updates": self.learner.updates,
            "charts/replay_size": int(self.replay.size),
        }
        if episodes:
            m["charts/episodic_length"] = lengths / episodes
            m["charts/episodic_return"] = returns / episodes
            m["charts/policy_entropy"] = entropy / episodes
            self.final_survival = lengths / episodes
        for k, v in self.last_metrics.items():
            if v.dim() == 0:
                m[f"losses/{k}"] = float(v)
        if self.curriculum is not None:
            stages = self.curriculum.stage
            m["curriculum/stage_mean"] = float(stages.float().mean())
            m["curriculum/multiplier_mean"] = float(self.curriculum.multipliers().mean())
            counts = torch.bincount(stages, minlength=len(self.cfg.curriculum.multipliers)).tolist()
            for k, c in enumerate(counts):
                m[f"curriculum/stage_{k}"] = c / self.cfg.env.num_envs
        if self.annealer is not None:
            m["charts/intrinsic_weight"] = self.annealer.weight
        sink.log(self.global_step, m)
        self._log_pending_changes(sink)

    def _log_pending_changes(self, sink: MetricsSink) -> None:
        """Emit the stage changes kept on the device since the last log (GPU path), each at
        the env step it happened, and a count of any the table had no room for."""
        events, dropped = self.stage_events.drain()
        for e in events:
            step = e.pop("global_step")
            sink.event(step, "curriculum_stage_change", e)
        if dropped:
            sink.event(self.global_step, "curriculum_stage_changes_dropped", {"count": dropped})

    # --- checkpoints ----------------------------------------------------------------------

    def payload(self) -> dict:
        learner = self.learner.state_dict()
        cfg = OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True) \
            if OmegaConf.is_config(self.cfg) else dict(self.cfg)
        p = {
            **{k: learner[k] for k in ("online", "target", "optimizer", "averaged") if k in learner},
            "counters": {"global_step": self.global_step, "updates": self.learner.updates,
                         "updates_due": self.updates_due, "episodes": self.episodes,
                         "next_log": self.next_log, "next_checkpoint": self.next_checkpoint},
            "rng": rng_state(),
            "exploration": {
                "rnd": self.rnd.state_dict() if self.rnd else {},
                "annealer": self.annealer.state_dict() if self.annealer else {},
                "hold": self.actor.hold.state_dict() if self.actor.hold else {},
            },
            "curriculum": self.curriculum.state_dict() if self.curriculum else {},
            "layout": layout_record(self.layout),
            "world_identity": self.world_identity,
            "config": cfg,
            "world": {
                "env": self.env.state_dict(),
                "actor_state": list(self.actor.state),
                "episode": {"return": self.ep_return, "length": self.ep_length, "entropy": self.ep_entropy,
                            "totals": self.totals},
            },
        }
        if self.cfg.checkpoint.save_replay:
            p["replay"] = self.replay.state_dict()
        return p

    def checkpoint(self, final: bool = False) -> Path:
        """Flush every unfinished episode into replay, then write the checkpoint atomically
        (never from diverged weights)."""
        self.guard.check()
        self.replay.flush(self.actor.state if self.recurrent else None)
        folder = self.run_dir / "checkpoints"
        path = folder / f"step_{self.global_step:012d}.pt"
        payload = self.payload()
        save_checkpoint(path, payload)
        save_checkpoint(folder / "latest.pt", payload)
        periodic = sorted(folder.glob("step_*.pt"))
        for old in periodic[: max(0, len(periodic) - self.cfg.checkpoint.keep)]:
            try:
                old.unlink(missing_ok=True)
            except OSError as e:  # the new checkpoints are safe; an old one merely stays
                print(f"warning: {old}: cannot remove an old checkpoint: {e.strerror or e}", file=sys.stderr)
        return path

    def resume(self, path: str, payload: dict | None = None):
        """Continue from a checkpoint: networks, optimiser, counters, RNG, exploration,
        curriculum, the towns themselves and (when saved) the replay buffer."""
        p = payload if payload is not None else load_checkpoint(path, map_location=self.device)
        if p["layout"] != layout_record(self.layout):
            raise CheckpointError(
                f"{path}: its observation layout does not match this run's (checkpoint level "
                f"{p['config'].get('env', {}).get('level')!r}: {describe_layout(p['layout'])}; this run, level "
                f"{self.cfg.env.level!r}: {describe_layout(layout_record(self.layout))})")
        check_world(path, p["world_identity"], self.world_identity, self.cfg.get("allow_world_change", False),
                    "resume")
        try:
            self.learner.load_state_dict({"online": p["online"], "target": p["target"], "averaged": p.get("averaged"),
                                          "optimizer": p["optimizer"], "updates": p["counters"]["updates"]})
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: does not fit the configured network "
                                  f"(agent.hidden_size / agent.network?): {str(e).splitlines()[0]}") from None
        c = p["counters"]
        self.global_step, self.updates_due, self.episodes = c["global_step"], c["updates_due"], c["episodes"]
        self.next_log, self.next_checkpoint = c["next_log"], c["next_checkpoint"]
        set_rng_state(p["rng"])
        try:  # per-agent and per-buffer state must fit this run's env.num_envs / agent settings
            if self.rnd is not None and p["exploration"].get("rnd"):
                self.rnd.load_state_dict(p["exploration"]["rnd"])
            if self.annealer is not None and p["exploration"].get("annealer"):
                self.annealer.load_state_dict(p["exploration"]["annealer"])
            if self.curriculum is not None and p["curriculum"]:
                self.curriculum.load_state_dict(p["curriculum"])
            if "replay" in p:
                self.replay.load_state_dict(p["replay"])
                self.replay_restored = True
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: does not fit this run's settings (env.num_envs / agent.*?): "
                                  f"{str(e).splitlines()[0]}") from None
        world = p.get("world")
        if world is None or world["env"]["cell"].shape[0] != self.cfg.env.num_envs:
            obs, info = self.env.reset(seed=self.cfg.seed + self.global_step)
        else:
            obs, info = self.env.load_state_dict(world["env"])
            self.actor.state = tuple(s.to(self.device) for s in world["actor_state"])
            if self.actor.hold is not None and p["exploration"].get("hold"):
                self.actor.hold.load_state_dict(p["exploration"]["hold"])
            ep = world["episode"]
            self.ep_return, self.ep_length, self.ep_entropy = ep["return"], ep["length"], ep["entropy"]
            self.totals = ep["totals"]
        self._apply_difficulty()
        return obs, info
