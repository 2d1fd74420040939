"""End-to-end training throughput: env steps per second with learning included (CleanRL's
SPS: env steps over wall time), for `+experiment=pomdp` with its defaults.

Each measurement builds a fresh in-process Trainer (progress bar off, wandb disabled, a
temporary run dir) and times `Trainer.train()` from start to end: acting, env steps,
replay inserts, learning at the configured replay ratio, the periodic logging and the final
checkpoint. Rows: CPU at torch threads 1 and 2 (--threads), and CUDA when a device is
present (--device all|cuda). Each figure is the median over --repeats runs.

    python scripts/bench_train.py                        # CPU, 150k env steps, 3 repeats
    python scripts/bench_train.py --steps 50000 --repeats 1
    python scripts/bench_train.py --device cuda --steps 500000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from townlet_agents.config import register_configs  # noqa: E402
from townlet_agents.trainer import Trainer  # noqa: E402


def compose_config(overrides: list[str]):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


def one_run(experiment: str, device: str, threads: int, steps: int, extra: list[str]) -> tuple[float, int]:
    """(env steps per second, learner updates) of one complete training run."""
    cfg = compose_config([f"+experiment={experiment}", f"device={device}", f"train.torch_threads={threads}",
                          f"train.total_env_steps={steps}", "train.progress_bar=false", "wandb.mode=disabled",
                          *extra])
    with tempfile.TemporaryDirectory(prefix="bench_train_") as run_dir:
        trainer = Trainer(cfg, Path(run_dir))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.train()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return trainer.global_step / elapsed, trainer.learner.updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="pomdp")
    parser.add_argument("--steps", type=int, default=150_000, help="train.total_env_steps of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU torch thread counts")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="all = CPU, plus CUDA when a device is present")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. env.num_envs=256")
    args = parser.parse_args()

    rows: list[tuple[str, int]] = []
    if args.device in ("all", "cpu"):
        rows += [("cpu", t) for t in args.threads]
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            rows.append(("cuda", 1))
        elif args.device == "cuda":
            sys.exit("no CUDA device is available")

    cfg = compose_config([f"+experiment={args.experiment}", *args.overrides])
    a = cfg.agent
    print(f"experiment={args.experiment} level={cfg.env.level.value} num_envs={cfg.env.num_envs} "
          f"network={a.network.value} hidden={a.hidden_size} seq_len={a.seq_len} batch={a.batch_size} "
          f"replay_ratio={a.replay_ratio} learning_starts={a.learning_starts} steps={args.steps} "
          f"repeats={args.repeats} torch={torch.__version__}")
    if torch.cuda.is_available():
        print(f"cuda: {torch.cuda.get_device_name(0)}")

    results: dict[tuple[str, int], float] = {}
    print(f"\n{'device':<7}{'threads':>8}{'median SPS':>12}{'min':>10}{'max':>10}{'updates':>9}")
    for device, threads in rows:
        runs = [one_run(args.experiment, device, threads, args.steps, args.overrides) for _ in range(args.repeats)]
        sps = [r[0] for r in runs]
        results[(device, threads)] = statistics.median(sps)
        print(f"{device:<7}{threads:>8}{statistics.median(sps):>12.0f}{min(sps):>10.0f}{max(sps):>10.0f}"
              f"{runs[-1][1]:>9}", flush=True)

    cpu = {t: v for (d, t), v in results.items() if d == "cpu"}
    if len(cpu) > 1:
        best = max(cpu, key=cpu.get)
        worst = min(cpu, key=cpu.get)
        print(f"\nfaster on CPU: {best} thread(s), {cpu[best] / cpu[worst]:.2f}x the SPS of {worst} thread(s)")
    if ("cuda", 1) in results and cpu:
        print(f"CUDA / best CPU: {results[('cuda', 1)] / max(cpu.values()):.2f}x")


if __name__ == "__main__":
    main()
