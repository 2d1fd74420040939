"""Memory soak: train `+experiment=pomdp` for a fixed wall time and sample the process's
resident memory. Prints RSS over time and its growth after the replay buffer is full
(target: under 5%).

    python scripts/soak_memory.py --minutes 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    run = Path(tempfile.mkdtemp(prefix="townlet-soak-"))
    cmd = [sys.executable, "-m", "townlet_agents.train", "+experiment=pomdp", "train.total_env_steps=10000000000",
           f"train.max_wall_minutes={args.minutes}", "train.progress_bar=false", "wandb.mode=disabled",
           "checkpoint.every_env_steps=2000000", f"hydra.run.dir={run}", *args.overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    samples = []  # (seconds, rss MiB, replay size, global_step)
    start = time.time()
    while proc.poll() is None:
        time.sleep(args.every)
        try:
            rss = rss_mib(proc.pid)
        except (FileNotFoundError, RuntimeError):
            break
        last = {}
        metrics = run / "metrics.jsonl"
        if metrics.exists():
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if '"charts/replay_size"' in x]
            last = rows[-1] if rows else {}
        samples.append((time.time() - start, rss, last.get("charts/replay_size", 0), last.get("global_step", 0)))
        print(f"{samples[-1][0]:7.0f} s  RSS {rss:8.1f} MiB  replay {samples[-1][2]:6d}  step {samples[-1][3]:,}",
              flush=True)
    proc.wait()
    capacity = max(s[2] for s in samples) if samples else 0
    full = [s for s in samples if capacity and s[2] >= capacity]
    if len(full) >= 2:
        first, last = full[0], full[-1]
        peak = max(s[1] for s in full)  # the last sample may fall in shutdown, after buffers are freed
        growth = 100.0 * (peak - first[1]) / first[1]
        print(f"\nreplay full ({capacity} sequences) from {first[0]:.0f} s: RSS {first[1]:.1f} MiB, peak after that "
              f"{peak:.1f} MiB over {last[0] - first[0]:.0f} s = {growth:+.2f}% growth (target < 5%); "
              f"steps {last[3]:,}")
    print(f"exit code {proc.returncode}; run dir {run}")


if __name__ == "__main__":
    main()
