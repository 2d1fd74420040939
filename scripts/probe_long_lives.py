"""Probe a checkpoint's long lives: does the policy fail because of the greedy argmax, the
averaged weights, or the recurrent state drifting beyond the lives it trained on?

    python scripts/probe_long_lives.py RUN/checkpoints/latest.pt                    # greedy, as evaluate
    python scripts/probe_long_lives.py RUN/checkpoints/latest.pt --epsilon 0.01     # a little noise
    python scripts/probe_long_lives.py RUN/checkpoints/latest.pt --weights online
    python scripts/probe_long_lives.py RUN/checkpoints/latest.pt --reset-every 250  # forget every 250 steps

Plays the 100 held-out towns of `evaluate` (seed 12345) for `--steps` (5000) and prints
one JSON line: mean survival, the fraction alive at steps 500 / 1000 / 2000 / 3000 / 5000,
and the mean |h| and |c| of the LSTM state of the living agents at those steps (a state
that grows or fades past the training length would show here). A diagnostic, not a
benchmark: the numbers in docs/training.md ("What ends long lives") name their command.
"""

from __future__ import annotations

import argparse
import json

import torch

from townlet_agents.acting import Actor
from townlet_agents.checkpoint import load_checkpoint, resolve_checkpoint
from townlet_agents.evaluate import held_out_env
from townlet_agents.factories import acting_network

EVAL_SEED = 12345
MARKS = (500, 1000, 2000, 3000, 5000)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--towns", type=int, default=100)
    ap.add_argument("--epsilon", type=float, default=0.0, help="chance of a uniformly random allowed action")
    ap.add_argument("--weights", choices=("averaged", "online"), default="averaged")
    ap.add_argument("--reset-every", type=int, default=0, help="zero the LSTM state every N steps (0: never)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    payload = load_checkpoint(resolve_checkpoint(args.checkpoint), map_location="cpu")
    saved = payload["config"]["env"]
    env = held_out_env(args.towns, saved["level"], saved, torch.device("cpu"), max_steps=args.steps)
    net, weights = acting_network(payload, env, "cpu", args.checkpoint, weights=args.weights)
    actor = Actor(net, args.towns, torch.device("cpu"))
    noise = torch.Generator().manual_seed(EVAL_SEED)

    obs, info = env.reset(seed=EVAL_SEED)
    alive = torch.ones(args.towns, dtype=torch.bool)
    survival = torch.zeros(args.towns, dtype=torch.long)
    state_size = {}
    for t in range(args.steps):
        if args.reset_every and t and t % args.reset_every == 0 and actor.state is not None:
            actor.state = tuple(s * 0 for s in actor.state)
        mask = info["action_mask"]
        action = actor.greedy(obs, mask)
        if args.epsilon:
            uniform = torch.rand(mask.shape, generator=noise).masked_fill(~mask, -1.0).argmax(-1)
            action = torch.where(torch.rand(args.towns, generator=noise) < args.epsilon, uniform, action)
        if t in MARKS and actor.state is not None and alive.any():
            h, c = (s[..., alive, :] for s in actor.state)
            state_size[t] = {"h": round(float(h.abs().mean()), 4), "c": round(float(c.abs().mean()), 4)}
        obs, _, terminated, truncated, info = env.step(action)
        survival += alive.long()
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    result = {
        "checkpoint": args.checkpoint, "weights": weights, "epsilon": args.epsilon,
        "reset_every": args.reset_every, "steps": args.steps,
        "mean_survival": round(float(survival.float().mean()), 1),
        "alive_at": {n: round(float((survival >= n).float().mean()), 2) for n in MARKS if n <= args.steps},
        "lstm_state": state_size,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
