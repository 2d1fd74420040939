"""The closing summary of a training run: what the agent learned, read against random play
and the scripted oracle on the same held-out towns, where the run went and what to run
next. `python -m townlet_agents.train` prints it when `train.summary_episodes` > 0.
"""

from __future__ import annotations

import importlib.util
import shlex
from dataclasses import dataclass
from pathlib import Path

from .config import CONF_DIR


@dataclass
class Summary:
    level: str
    env_steps: int
    minutes: float
    episodes: int
    seed: int
    step_limit: int
    learned: float
    weights: str
    random: float
    oracle: float
    run_dir: Path

    def text(self) -> str:
        run = shlex.quote(str(self.run_dir))
        lines = [
            f"Trained {self.env_steps:,} env steps in {self.minutes:.1f} min on {self.level}.",
            f"Greedy survival over {self.episodes} held-out towns (seed {self.seed}, full difficulty, "
            f"step limit {self.step_limit}):",
            *(f"  {name:<32}{value:7.1f}" for name, value in (
                (f"this agent ({self.weights} weights)", self.learned), ("random play", self.random),
                ("oracle (reads the true state)", self.oracle))),
            f"Run folder: {self.run_dir}  (checkpoints/, metrics.jsonl, wandb/)",
            "Next:",
            f"  python -m townlet_agents.evaluate checkpoint={run}/checkpoints/latest.pt video={run}/agent.gif",
        ]
        plot = CONF_DIR.parent / "scripts" / "plot_run.py"
        if plot.is_file():  # a checkout: the scripts are not part of the installed package
            shown = plot.relative_to(Path.cwd()) if plot.is_relative_to(Path.cwd()) else plot
            lines.append(f"  python {shlex.quote(str(shown))} {run}")
        if importlib.util.find_spec("starlette") is not None:  # the viewer's extra is installed
            lines.append(f"  python -m townlet_agents.watch run={run}")
        return "\n".join(lines)


def baseline_survival(env, policy_kind: str, seed: int) -> float:
    """Mean survival of random play (uniform over allowed actions) or the oracle on `env`'s
    towns reset with `seed`, measured by the loop `evaluate` uses."""
    from townlet_env import OraclePolicy

    from .episodes import random_policy, run_episodes

    policy = OraclePolicy(env) if policy_kind == "oracle" else random_policy(env.device, seed)
    survival, _ = run_episodes(env, policy, seed)
    return float(survival.mean())


def summarize(trainer, minutes: float) -> Summary:
    """Evaluate the trained agent, random play and the oracle on `train.summary_episodes`
    held-out towns seeded `train.final_eval_seed`, at full difficulty, as the trainer's
    final evaluation does (whose result is reused when it ran on as many towns)."""
    from .factories import make_env

    t = trainer.cfg.train
    towns, seed = t.summary_episodes, t.final_eval_seed
    if t.final_eval_episodes == towns and trainer.final_eval_survival == trainer.final_eval_survival:
        learned = trainer.final_eval_survival
    else:
        learned = trainer.final_evaluation(towns=towns)
    baselines, step_limit = {}, trainer.max_steps
    for kind in ("random", "oracle"):
        env = make_env(trainer.cfg, trainer.device, num_envs=towns, max_steps=t.get("final_eval_max_steps"),
                       layout_pool="held_out")
        baselines[kind] = baseline_survival(env, kind, seed)
        step_limit = env.pack.max_steps
        env.close()
    return Summary(
        level=str(getattr(trainer.cfg.env.level, "value", trainer.cfg.env.level)),
        env_steps=trainer.global_step, minutes=minutes, episodes=towns, seed=seed,
        step_limit=step_limit, learned=learned,
        weights="averaged" if trainer.cfg.agent.average_decay > 0 else "online",
        random=baselines["random"], oracle=baselines["oracle"], run_dir=trainer.run_dir,
    )
