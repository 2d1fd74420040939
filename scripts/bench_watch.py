"""Viewer server cost: CPU time of the `townlet_agents.watch` process per second of wall
time, while it streams to connected pages (target: under half a core for 16 towns at 30
frames per second).

Starts the real command (`python -m townlet_agents.watch port=0 ...` plus any arguments
after `--`) in its own process, connects --clients WebSocket clients from this process
(they read every frame, like pages, and their cost is not counted), lets it warm up, then
reads the server's user + system CPU time from /proc over --seconds of wall time. Prints
each repeat and the median, and the frame rate the clients actually received.

    python scripts/bench_watch.py                                   # oracle, 16 towns, 30 fps
    python scripts/bench_watch.py --clients 4 -- checkpoint=outputs/.../latest.pt towns=16 fps=30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def measure(url: str, pid: int, clients: int, warmup: float, seconds: float) -> tuple[float, float]:
    import websockets

    frames = [0] * clients
    counting = asyncio.Event()

    async def page(i: int) -> None:
        async with websockets.connect(url, max_size=None) as ws:
            async for text in ws:
                if counting.is_set() and json.loads(text)["type"] == "frame":
                    frames[i] += 1

    tasks = [asyncio.create_task(page(i)) for i in range(clients)]
    await asyncio.sleep(warmup)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    counting.set()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (cpu1 - cpu0) / (t1 - t0), statistics.mean(frames) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured wall time per repeat")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1, help="WebSocket clients (pages) connected")
    parser.add_argument("watch_args", nargs="*", help="arguments of townlet_agents.watch (after --)")
    args = parser.parse_args()
    watch_args = args.watch_args or ["towns=16", "fps=30"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    loads, rates = [], []
    for r in range(args.repeats):
        proc = subprocess.Popen([sys.executable, "-m", "townlet_agents.watch", "port=0", *watch_args], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            if not line.startswith("Townlet viewer: "):
                sys.exit(f"the server did not start: {line}{proc.stderr.read()}")
            url = line.split()[2].replace("http://", "ws://") + "ws"
            load, rate = asyncio.run(measure(url, proc.pid, args.clients, args.warmup, args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        loads.append(load)
        rates.append(rate)
        print(f"repeat {r + 1}: server CPU {load:.3f} cores, {rate:.1f} frames/s per client")
    print(f"watch {' '.join(watch_args)}, {args.clients} client(s): median server CPU "
          f"{statistics.median(loads):.3f} cores (CPU time / wall time), {statistics.median(rates):.1f} frames/s")


if __name__ == "__main__":
    main()
