"""Greedy survival of every checkpoint of a run, online weights against averaged weights.

Why: one snapshot of the online weights can be a much worse greedy policy than its
neighbours (docs/training.md, "Learning results"); this shows how much, and what
`agent.average_decay` buys. Train with frequent checkpoints that are all kept, e.g.

    python -m townlet_agents.train +experiment=full_obs train.max_wall_minutes=13 \\
        checkpoint.every_env_steps=100000 checkpoint.keep=200 hydra.run.dir=/tmp/fo
    python scripts/snapshot_eval.py /tmp/fo --from-step 4000000

Evaluation is `townlet_agents.evaluate`'s: full difficulty, one town per episode, seed 12345.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from townlet_agents.acting import Actor
from townlet_agents.checkpoint import load_checkpoint
from townlet_agents.episodes import run_episodes
from townlet_agents.evaluate import held_out_env
from townlet_agents.factories import acting_network

EVAL_SEED = 12345
WEIGHTS = ("online", "averaged")


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--from-step", type=int, default=0, help="skip checkpoints before this env step")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    paths = sorted((args.run_dir / "checkpoints").glob("step_*.pt"))
    paths = [p for p in paths if int(p.stem.split("_")[1]) >= args.from_step]
    if not paths:
        raise SystemExit(f"no checkpoints at or after step {args.from_step} in {args.run_dir / 'checkpoints'}")
    first = load_checkpoint(paths[0])
    if "averaged" not in first:
        raise SystemExit(f"{paths[0]} has no averaged weights: train with agent.average_decay > 0")
    saved = first["config"]["env"]
    env = held_out_env(args.episodes, saved["level"], saved, "cpu")  # the pack's step limit, as `evaluate` plays by default
    scores: dict[str, list[float]] = {weights: [] for weights in WEIGHTS}
    print(f"{'env steps':>12}  {'online':>8}  {'averaged':>8}")
    for path in paths:
        payload = load_checkpoint(path)
        for weights, column in scores.items():
            net, _ = acting_network(payload, env, "cpu", path, weights=weights)
            with torch.no_grad():
                survival, _ = run_episodes(env, Actor(net, args.episodes, "cpu").greedy, seed=EVAL_SEED)
            column.append(float(survival.mean()))
        print(f"{payload['counters']['global_step']:>12,}  {scores['online'][-1]:>8.1f}  {scores['averaged'][-1]:>8.1f}")
    limit = env.pack.max_steps
    for weights, column in scores.items():
        print(f"{weights:>8}: {len(column)} checkpoints, mean {statistics.mean(column):.1f}, "
              f"min {min(column):.1f}, at the {limit}-step limit in every episode: {sum(s == limit for s in column)}")
    return scores


if __name__ == "__main__":
    main()
