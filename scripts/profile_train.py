"""Where the time of one training iteration goes: acting, env step, replay, learner parts.

Runs an in-process `+experiment=pomdp` Trainer (its defaults, wandb disabled, progress bar
off, a temporary run dir, one torch thread) for --steps env steps after learning has
started, and times each component of the loop separately:

    acting              Actor.act: the network's acting step and masked epsilon-greedy
    env step            TownletVectorEnv.step
    replay add          SequenceReplay.add
    sample              SequenceReplay.sample
    network unroll      learner.unroll, online and target
    loss/targets        the rest of sequence_td, n_step_targets, sequence_loss, metrics
    backward+optimiser  the rest of Learner.update: zero_grad, backward, clipping, Adam
    target/averaging    Learner._update_target and _update_average
    bookkeeping, log    everything else in the loop: episode stats, curriculum, the
                        divergence guard, logging (the iteration's wall time minus the above)

How: the script wraps those functions on the trainer's own objects (and the learner
module's functions) with perf_counter timers. Nothing in the trainer changes, so the
normal path pays nothing, and the timed run executes exactly the code of a real run.
Timers are exclusive (a wrapped call nested in another is subtracted from its parent),
so the rows add up to the iteration time. torch.profiler was not used: its per-op
recording costs more than some of these phases. On CUDA each timer synchronises first.

The window runs from the first iteration that learns to the last iteration (the final
checkpoint is outside it). Each figure is the median over --repeats runs.

    python scripts/profile_train.py                    # pomdp defaults, 3 runs
    python scripts/profile_train.py --steps 20000 --repeats 5
    python scripts/profile_train.py env.num_envs=512   # extra Hydra overrides
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from townlet_agents import learner as learner_module  # noqa: E402
from townlet_agents.config import compose  # noqa: E402
from townlet_agents.trainer import Trainer  # noqa: E402

ROWS = ("acting", "env step", "replay add", "sample", "network unroll", "loss/targets",
        "backward+optimiser", "target/averaging", "bookkeeping, log")
LEARNER_ROWS = ("sample", "network unroll", "loss/targets", "backward+optimiser", "target/averaging")
# (module-level function of townlet_agents.learner, row it is charged to)
LEARNER_FUNCTIONS = (("unroll", "network unroll"), ("sequence_td", "loss/targets"),
                     ("n_step_targets", "loss/targets"), ("sequence_loss", "loss/targets"),
                     ("sequence_priority", "loss/targets"), ("masked_mean", "loss/targets"))


class Timers:
    """Exclusive wall time per row: a timed call's own time, less that of timed calls
    nested inside it."""

    def __init__(self, sync):
        self.sync = sync
        self.totals = dict.fromkeys(ROWS, 0.0)
        self.stack: list[float] = []  # time spent in nested timed calls, one entry per open call

    def wrap(self, fn, row: str):
        def timed(*args, **kwargs):
            self.sync()
            self.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                elapsed = time.perf_counter() - t0
                nested = self.stack.pop()
                self.totals[row] += elapsed - nested
                if self.stack:
                    self.stack[-1] += elapsed
        return timed


def profile_run(steps: int, overrides: list[str]) -> dict:
    """One run: ms per iteration of each row, iterations, updates and env-steps/s in the window."""
    probe = compose("+experiment=pomdp", *overrides)
    n = probe.env.num_envs
    learning_starts = max(probe.agent.learning_starts, n * probe.agent.seq_len)
    cfg = compose("+experiment=pomdp", "wandb.mode=disabled", "train.progress_bar=false",
                  "train.torch_threads=1", f"train.total_env_steps={learning_starts + steps}", *overrides)
    with tempfile.TemporaryDirectory(prefix="profile_train_") as run_dir:
        trainer = Trainer(cfg, Path(run_dir))
        torch.set_num_threads(1)
        cuda = trainer.device.type == "cuda"
        timers = Timers(torch.cuda.synchronize if cuda else (lambda: None))
        marks = []  # (time, totals snapshot, updates) at each act call inside the window

        act = trainer.actor.act

        def act_marked(*args, **kwargs):
            if trainer.learner.updates > 0:
                timers.sync()
                marks.append((time.perf_counter(), dict(timers.totals), trainer.learner.updates))
            return act(*args, **kwargs)

        trainer.actor.act = timers.wrap(act_marked, "acting")
        trainer.env.step = timers.wrap(trainer.env.step, "env step")
        trainer.replay.add = timers.wrap(trainer.replay.add, "replay add")
        trainer.replay.sample = timers.wrap(trainer.replay.sample, "sample")
        trainer.learner.update = timers.wrap(trainer.learner.update, "backward+optimiser")
        trainer.learner._update_target = timers.wrap(trainer.learner._update_target, "target/averaging")
        trainer.learner._update_average = timers.wrap(trainer.learner._update_average, "target/averaging")
        originals = {name: getattr(learner_module, name) for name, _ in LEARNER_FUNCTIONS}
        try:
            for name, row in LEARNER_FUNCTIONS:
                setattr(learner_module, name, timers.wrap(originals[name], row))
            trainer.train()
        finally:
            for name, fn in originals.items():
                setattr(learner_module, name, fn)
    if len(marks) < 2:
        raise SystemExit("the timed window is empty: raise --steps")
    (t0, first, u0), (t1, last, u1) = marks[0], marks[-1]
    iterations = len(marks) - 1
    ms = {row: 1e3 * (last[row] - first[row]) / iterations for row in ROWS}
    total = 1e3 * (t1 - t0) / iterations
    ms["bookkeeping, log"] = total - sum(v for row, v in ms.items() if row != "bookkeeping, log")
    return {"ms": ms, "total": total, "iterations": iterations, "updates": u1 - u0, "num_envs": n}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000, help="env steps timed after learning starts")
    parser.add_argument("--repeats", type=int, default=3, help="runs; each figure is their median")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. env.num_envs=256")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    runs = [profile_run(args.steps, args.overrides) for _ in range(args.repeats)]
    n = runs[0]["num_envs"]
    ms = {row: statistics.median(r["ms"][row] for r in runs) for row in ROWS}
    total = statistics.median(r["total"] for r in runs)
    per_update = runs[0]["updates"] / runs[0]["iterations"]
    sps = statistics.median(1e3 * r["num_envs"] / r["total"] for r in runs)
    print(f"profile_train: +experiment=pomdp {' '.join(args.overrides)}  num_envs={n}  "
          f"{runs[0]['iterations']} iterations / {runs[0]['updates']} updates timed per run, "
          f"median of {args.repeats}, torch {torch.__version__}, 1 thread")
    print(f"\n{'component':<20}{'ms/iter':>9}{'ms/update':>11}{'share':>8}")
    for row in ROWS:
        per_up = f"{ms[row] / per_update:>11.3f}" if row in LEARNER_ROWS and per_update else f"{'':>11}"
        print(f"{row:<20}{ms[row]:>9.3f}{per_up}{100 * ms[row] / total:>7.1f}%")
    print(f"{'total':<20}{total:>9.3f}{'':>11}{100.0:>7.1f}%")
    print(f"\nenv-steps/s in the window: {sps:,.0f}  ({per_update:.2f} updates per iteration of {n} env steps)")
    return {"ms": ms, "total": total, "sps": sps}


if __name__ == "__main__":
    main()
