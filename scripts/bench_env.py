"""Environment throughput: agent-steps per second of Townlet against MiniGrid, on one CPU thread.

Measures, in one run so that the numbers share a machine and its load:
  * the native vector env (TownletVectorEnv) at each N in --sizes, on L2 and L3, numpy
    output (or torch output with --torch), actions pre-generated;
  * the single env through gym.make("Townlet-v0", level=...) with its default wrappers;
  * the reference: MiniGrid-Empty-8x8-v0 through gym.make, same loop as the single env.
Each figure is the median over --repeats timed blocks, after a warm-up. Then it prints
ours / MiniGrid and the targets of issue 12: the vector env on L2 at N=16384 at
>= 10M agent-steps/s on one thread (about 1000x MiniGrid), and the single env through
gym.make at >= 5x MiniGrid.

Actions are uniform over the six action indices and drawn before timing. About a third
of them are masked at any moment (INTERACT off an affordance, walls); the env executes
those as WAIT, which is part of what it has to do anyway.

    python scripts/bench_env.py                       # ~1-2 minutes on a laptop core
    python scripts/bench_env.py --sizes 1024 16384 --repeats 3
    python scripts/bench_env.py --device cuda --torch # tensors stay on the GPU
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import townlet_env  # noqa: E402,F401  (registers Townlet-v0)
from townlet_env import TownletVectorEnv  # noqa: E402

LEVELS = ("L2_partial_observability", "L3_temporal_mechanics")
TARGET_VECTOR_RATE = 10e6  # vector L2, N = 16384: agent-steps/s on one thread
TARGET_VECTOR = 1000.0     # the same, over MiniGrid's steps/s
TARGET_SINGLE = 5.0        # single env steps/s over MiniGrid's
POOL = 64              # pre-generated action batches, cycled


def _median_rate(run_block, agents_per_step: int, steps: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_block(steps)
        rates.append(agents_per_step * steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def _block_steps(run_block, requested: int | None, block_seconds: float, minimum: int) -> int:
    """Steps per timed block: as requested, else sized from a short probe to last ~block_seconds."""
    if requested:
        return requested
    probe = minimum
    t0 = time.perf_counter()
    run_block(probe)
    per_step = (time.perf_counter() - t0) / probe
    return max(minimum, int(block_seconds / max(per_step, 1e-9)))


def bench_vector(level: str, n: int, args) -> tuple[float, int]:
    env = TownletVectorEnv(n, level, device=args.device, torch_output=args.torch)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 6, (POOL, n), generator=gen, dtype=torch.int64)
    if args.torch:
        actions = [a.to(args.device) for a in pool]
    else:
        actions = [a.numpy() for a in pool]
    sync = torch.cuda.synchronize if env.device.type == "cuda" else (lambda: None)
    counter = [0]

    def block(steps: int):
        i = counter[0]
        for _ in range(steps):
            env.step(actions[i % POOL])
            i += 1
        counter[0] = i
        sync()

    block(args.warmup)
    steps = _block_steps(block, args.steps, args.block_seconds, minimum=5)
    rate = _median_rate(block, n, steps, args.repeats)
    env.close()
    return rate, steps


def bench_single(make, num_actions: int, args) -> tuple[float, int]:
    env = make()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, num_actions, size=100_000).tolist()
    counter = [0]

    def block(steps: int):
        i = counter[0]
        step, reset = env.step, env.reset
        for _ in range(steps):
            _, _, term, trunc, _ = step(actions[i % len(actions)])
            if term or trunc:
                reset()
            i += 1
        counter[0] = i

    block(args.warmup * 10)
    steps = _block_steps(block, args.steps, args.block_seconds, minimum=200)
    rate = _median_rate(block, 1, steps, args.repeats)
    env.close()
    return rate, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 16384], help="vector env sizes N")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per measurement (median)")
    ap.add_argument("--steps", type=int, default=None,
                    help="env steps per timed block (default: sized to last --block-seconds)")
    ap.add_argument("--block-seconds", type=float, default=1.0, help="target length of a timed block")
    ap.add_argument("--warmup", type=int, default=20, help="warm-up steps before timing (x10 for single envs)")
    ap.add_argument("--device", default="cpu", help="vector env device: cpu or cuda")
    ap.add_argument("--torch", action="store_true", help="torch_output=True: tensors in and out, no host copy")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import minigrid  # noqa: F401  (registers MiniGrid-*)

    out = "torch" if args.torch else "numpy"
    print(f"Townlet env benchmark: torch {torch.__version__}, {args.threads} CPU thread(s), "
          f"vector device {args.device}, {out} output, median of {args.repeats}")
    make_minigrid = lambda: gym.make("MiniGrid-Empty-8x8-v0")  # noqa: E731
    mg_first, mg_steps = bench_single(make_minigrid, 7, args)
    mg = mg_first
    print(f"\nreference  MiniGrid-Empty-8x8-v0 (gym.make)      {mg:>12,.0f} steps/s   ({mg_steps} steps/block)")

    print("\nsingle env: gym.make('Townlet-v0', level=...) with default wrappers")
    single = {}
    for level in LEVELS:
        rate, steps = bench_single(lambda: gym.make("Townlet-v0", level=level), 6, args)
        single[level] = rate
        print(f"  {level:<26} {rate:>12,.0f} steps/s   {rate / mg:>8.2f}x MiniGrid   ({steps} steps/block)")

    print(f"\nvector env: TownletVectorEnv(N, level, device={args.device!r}, torch_output={args.torch})")
    vector = {}
    for level in LEVELS:
        for n in args.sizes:
            rate, steps = bench_vector(level, n, args)
            vector[level, n] = rate
            print(f"  {level:<26} N={n:<6} {rate:>12,.0f} agent-steps/s   {rate / mg:>9.1f}x MiniGrid"
                  f"   ({steps} steps/block)")

    # The machine's load can drift during the run: measure the reference again and use the
    # mean of both for the ratios (printed above with the first measurement).
    mg_last, _ = bench_single(make_minigrid, 7, args)
    mg = 0.5 * (mg_first + mg_last)
    print(f"\nreference again  MiniGrid-Empty-8x8-v0          {mg_last:>12,.0f} steps/s; "
          f"ratios below use the mean, {mg:,.0f} steps/s")

    print("\ntargets")
    key = (LEVELS[0], 16384)
    if key in vector:
        rate, r = vector[key], vector[key] / mg
        print(f"  vector L2 N=16384 >= {TARGET_VECTOR_RATE / 1e6:.0f}M agent-steps/s: {rate / 1e6:8.2f}M   "
              f"{'MET' if rate >= TARGET_VECTOR_RATE else 'NOT MET'}")
        print(f"  vector L2 N=16384 >= {TARGET_VECTOR:.0f}x MiniGrid: {r:8.1f}x   "
              f"{'MET' if r >= TARGET_VECTOR else 'NOT MET'}")
    else:
        print("  vector L2 N=16384: not measured (add 16384 to --sizes)")
    for level in LEVELS:
        r = single[level] / mg
        print(f"  single {level} >= {TARGET_SINGLE:.0f}x MiniGrid: {r:8.3f}x   "
              f"{'MET' if r >= TARGET_SINGLE else 'NOT MET'}")


if __name__ == "__main__":
    main()
