"""The cost curve as the number of towns N grows: env agent-steps/s and end-to-end training SPS.

Two tables, measured in one process so they share a machine and its load:
  * env: the native vector env (TownletVectorEnv, L2_partial_observability), actions
    pre-generated, at N = 1, 4, 16, ..., 2^--max-log2; numpy output (host arrays, what a
    Gymnasium user gets) and torch output (tensors on --device, what the trainer uses).
    With --device cuda the torch column is measured on the GPU and N extends to 2^20.
  * train: `+experiment=pomdp` end to end (acting, env, replay, learning at the configured
    replay ratio, logging, final checkpoint) at env.num_envs = 16 ... 1024, each run sized
    to last about --train-seconds, SPS = env steps / wall time of Trainer.train().

    python scripts/bench_scale.py                    # CPU: env N up to 65536, train N 16..1024
    python scripts/bench_scale.py --quick            # fewer sizes, shorter runs (~5 minutes on 1 core)
    python scripts/bench_scale.py --device cuda      # GPU: env N up to 2^20, training on cuda
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from townlet_env import TownletVectorEnv  # noqa: E402

from townlet_agents.config import compose  # noqa: E402
from townlet_agents.trainer import Trainer  # noqa: E402

LEVEL = "L2_partial_observability"
POOL = 16  # pre-generated action batches, cycled


def env_rate(n: int, device: str, torch_output: bool, seconds: float) -> float:
    """Agent-steps/s of TownletVectorEnv(n) over a block of about `seconds` after a warm-up."""
    env = TownletVectorEnv(n, LEVEL, device=device if torch_output else "cpu", torch_output=torch_output)
    env.reset(seed=0)
    pool = torch.randint(0, 6, (POOL, n), generator=torch.Generator().manual_seed(0))
    actions = [a.to(env.device) for a in pool] if torch_output else [a.numpy() for a in pool]
    sync = torch.cuda.synchronize if env.device.type == "cuda" else (lambda: None)

    def run(steps: int) -> float:
        sync()
        t0 = time.perf_counter()
        for i in range(steps):
            env.step(actions[i % POOL])
        sync()
        return time.perf_counter() - t0

    per_step = run(3) / 3  # warm-up and probe
    steps = max(3, int(seconds / max(per_step, 1e-9)))
    rate = n * steps / run(steps)
    env.close()
    return rate


def train_sps(n: int, device: str, seconds: float, probe_sps: float | None) -> tuple[float, int, int]:
    """(SPS, env steps, learner updates) of one pomdp run at env.num_envs = n, sized from a probe."""
    steps = max(4 * n * 16, int(seconds * (probe_sps or 3000)))  # at least a few sequences per agent
    cfg = compose("+experiment=pomdp", f"env.num_envs={n}", f"device={device}", f"train.total_env_steps={steps}",
                  "train.progress_bar=false", "wandb.mode=disabled", "agent.learning_starts=2000",
                  f"train.log_every_env_steps={max(steps // 4, n)}", "checkpoint.every_env_steps=100000000")
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as run_dir:
        trainer = Trainer(cfg, Path(run_dir))
        t0 = time.perf_counter()
        trainer.train()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return trainer.global_step / elapsed, trainer.global_step, trainer.learner.updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--max-log2", type=int, default=None, help="largest env N = 2^this (default 16 CPU, 20 CUDA)")
    ap.add_argument("--train-sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--env-seconds", type=float, default=2.0, help="timed block per env measurement")
    ap.add_argument("--train-seconds", type=float, default=18.0, help="target length of each training run")
    ap.add_argument("--quick", action="store_true",
                    help="env N in steps of 16x (1, 16, ..., 65536), 1 s blocks, train N 16, 128, 1024 at ~12 s")
    ap.add_argument("--no-train", action="store_true", help="env table only")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    max_log2 = args.max_log2 if args.max_log2 is not None else (20 if args.device == "cuda" else 16)
    stride = 4 if args.quick else 2
    env_sizes = [2**k for k in range(0, max_log2 + 1, stride)]
    train_sizes = [16, 128, 1024] if args.quick and args.train_sizes == ap.get_default("train_sizes") \
        else args.train_sizes
    env_seconds = 1.0 if args.quick else args.env_seconds
    train_seconds = 12.0 if args.quick else args.train_seconds

    print(f"bench_scale: torch {torch.__version__}, {args.threads} CPU thread(s), device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device == "cuda" else "")
          + f", level {LEVEL}, {os.cpu_count()} CPUs visible")
    torch_col = f"torch ({args.device})"
    print(f"\nenv agent-steps/s: TownletVectorEnv(N, {LEVEL!r}), numpy output on CPU, torch output on {args.device}")
    print(f"{'N':>9}{'numpy (cpu)':>16}{torch_col:>16}")
    for n in env_sizes:
        numpy_rate = env_rate(n, "cpu", False, env_seconds) if n <= 2**16 else float("nan")
        torch_rate = env_rate(n, args.device, True, env_seconds)
        print(f"{n:>9}{numpy_rate:>16,.0f}{torch_rate:>16,.0f}", flush=True)

    if args.no_train:
        return
    print(f"\ntraining SPS: +experiment=pomdp end to end on {args.device} (agent.learning_starts=2000, "
          f"~{train_seconds:.0f} s per run, SPS = env steps / wall time incl. learning and checkpoint)")
    print(f"{'num_envs':>9}{'SPS':>10}{'env steps':>11}{'updates':>9}{'steps/update':>14}")
    probe = None
    for n in train_sizes:
        sps, steps, updates = train_sps(n, args.device, train_seconds, probe)
        probe = sps
        print(f"{n:>9}{sps:>10,.0f}{steps:>11,}{updates:>9}{steps / max(updates, 1):>14,.0f}", flush=True)


if __name__ == "__main__":
    main()
