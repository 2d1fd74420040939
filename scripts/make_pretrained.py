"""Make a small pretrained checkpoint, shipped in the package, from a finished run.

    python scripts/make_pretrained.py RUN_DIR NAME [--experiment EXPERIMENT] [--checkpoint step_000012000000.pt]

Keeps what acting needs: the run's config and observation layout, the world it was
trained on, and one set of weights (the averaged ones when the run kept them), stored once
in half precision (half the bytes; loading casts them back to the network's float32) and
referenced as the online, target and averaged networks; no optimiser state, no replay. The result is an ordinary checkpoint (`checkpoint=pretrained:NAME` loads it, and
so does resuming, with a fresh optimiser). It then measures the checkpoint on 100
held-out towns and writes NAME.json beside it: the figure tests/agents/test_pretrained.py
holds it to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from townlet_agents.checkpoint import PRETRAINED_DIR, load_checkpoint, save_checkpoint  # noqa: E402
from townlet_agents.config import compose  # noqa: E402
from townlet_agents.evaluate import evaluate  # noqa: E402
from townlet_agents.factories import layout_record, make_env  # noqa: E402
from townlet_agents.world_identity import world_identity  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("name")
    ap.add_argument("--experiment", help="the experiment the run trained (default: NAME)")
    ap.add_argument("--checkpoint", default="latest.pt",
                    help="which of RUN_DIR/checkpoints (a periodic one is where a run with that budget ends)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    source = args.run_dir / "checkpoints" / args.checkpoint
    if not source.is_file():
        raise SystemExit(f"--checkpoint: no {source}")
    payload = load_checkpoint(source)
    weights = payload.get("averaged") or payload["online"]
    weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    if payload["world_identity"] is None:  # trained before checkpoints recorded it: this world's
        from omegaconf import OmegaConf

        env = make_env(OmegaConf.create(payload["config"]), "cpu", num_envs=1)
        payload["world_identity"] = world_identity(env.pack, layout_record(env.obs_layout))
    small = {**payload, "online": weights, "target": weights, "averaged": weights,
             "optimizer": {"state": {}, "param_groups": payload["optimizer"]["param_groups"]}}
    small.pop("replay", None)
    small.pop("world", None)  # the towns mid-episode: a resume from a pretrained agent starts fresh ones
    out = PRETRAINED_DIR / f"{args.name}.pt"
    save_checkpoint(out, small)
    result = evaluate(compose(f"checkpoint={out}", "episodes=100", "device=cpu", config_name="evaluate"))
    record = {key: result[key] for key in ("level", "layout_mode", "episodes", "seed", "mean_survival",
                                            "min_survival", "step_limit", "weights")}
    record.update(experiment=args.experiment or args.name, run=str(args.run_dir), checkpoint=args.checkpoint, env_steps=payload["counters"]["global_step"], bytes=out.stat().st_size)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
