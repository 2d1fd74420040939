"""The web server: one simulation loop, one WebSocket per open page, the static page.

The loop (`Hub.run`) steps the towns at the chosen speed and encodes each frame once;
every page has its own sender holding only the newest frame, so a slow or stalled tab
drops frames for itself and never holds up the loop or the other tabs. Controls from
any page act on the one shared simulation, and every page sees the result.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .follow import RunFollower
from .sim import Simulation, encode

STATIC = Path(__file__).resolve().parent / "static"
MIN_FPS, MAX_FPS = 1.0, 60.0


class Client:
    """One page: messages that must arrive (meta, curve, control) and the newest frame."""

    def __init__(self, ws: WebSocket):
        self.ws = ws
        self.urgent: list[str] = []
        self.frame: str | None = None
        self.ready = asyncio.Event()

    def push(self, text: str, urgent: bool = False) -> None:
        if urgent:
            self.urgent.append(text)
        else:
            self.frame = text  # an unsent older frame is simply replaced
        self.ready.set()

    async def pump(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            batch, self.urgent = self.urgent, []
            if self.frame is not None:
                batch.append(self.frame)
                self.frame = None
            for text in batch:
                await self.ws.send_text(text)


class Hub:
    """The simulation, its speed and play state, the run being followed, and the pages."""

    def __init__(self, sim: Simulation, fps: float = 10.0, follower: RunFollower | None = None,
                 swap: Callable[[Simulation, Path, dict], Simulation] | None = None, poll_seconds: float = 2.0):
        self.sim = sim
        self.fps = min(max(float(fps), MIN_FPS), MAX_FPS)
        self.playing = True
        self.follower = follower
        self.swap = swap  # builds the simulation for a newer checkpoint of the followed run
        self.poll_seconds = poll_seconds
        self.clients: set[Client] = set()
        self.curve: list[list[float]] = []
        self.status = ""
        self._step_once = False
        self._wake: asyncio.Event | None = None

    # --- messages ---------------------------------------------------------------------------

    def meta_text(self) -> str:
        follow = str(self.follower.run_dir) if self.follower else None
        return encode(self.sim.meta({"follow": follow, "status": self.status, **self.control_state()}))

    def control_state(self) -> dict:
        return {"playing": self.playing, "fps": self.fps}

    def broadcast(self, text: str, urgent: bool = False) -> None:
        for client in self.clients:
            client.push(text, urgent)

    def publish_frame(self) -> None:
        if self.clients:  # with no page open the towns go on, unencoded
            self.broadcast(encode(self.sim.frame()))

    # --- controls ---------------------------------------------------------------------------

    def control(self, msg: dict) -> None:
        """Apply one page's command; unknown or malformed commands are ignored."""
        cmd = msg.get("cmd") if isinstance(msg, dict) else None
        if cmd == "pause":
            self.playing = False
        elif cmd == "play":
            self.playing = True
        elif cmd == "step":
            self.playing = False
            self._step_once = True
        elif cmd == "speed" and isinstance(msg.get("fps"), (int, float)):
            self.fps = min(max(float(msg["fps"]), MIN_FPS), MAX_FPS)
        elif cmd == "reset" and isinstance(msg.get("town"), int) and 0 <= msg["town"] < self.sim.env.num_envs:
            self.sim.reset_town(msg["town"])
            self.publish_frame()
        else:
            return
        self.broadcast(encode({"type": "control", **self.control_state()}), urgent=True)
        if self._wake is not None:
            self._wake.set()

    # --- following a run --------------------------------------------------------------------

    async def poll_run(self) -> None:
        points, restarted = self.follower.poll_curve()
        if restarted:
            self.curve = []
        if points or restarted:
            self.curve.extend(points)
            self.broadcast(encode({"type": "curve", "points": points, "reset": restarted}), urgent=True)
        found = await asyncio.to_thread(self.follower.poll_checkpoint)  # torch.load off the loop
        status = self.follower.error or self.status
        if found is not None:
            path, payload = found
            try:
                self.sim = self.swap(self.sim, path, payload)
                status = f"following {path.name}"
            except ValueError as e:  # CheckpointError, WatchError: the checkpoint does not fit
                status = f"kept the previous policy: {e}"
        if found is not None or status != self.status:
            self.status = status
            self.broadcast(self.meta_text(), urgent=True)
            self.publish_frame()

    # --- the loop ---------------------------------------------------------------------------

    async def follow(self) -> None:
        """Read the followed run's files every poll_seconds, beside the simulation loop."""
        while True:
            await self.poll_run()
            await asyncio.sleep(self.poll_seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        next_frame = loop.time()
        while True:
            now = loop.time()
            if self.playing or self._step_once:
                if now >= next_frame or self._step_once:
                    self._step_once = False
                    self.sim.step()
                    self.publish_frame()
                    # keep the cadence, but never try to catch up after a stall
                    next_frame = max(next_frame + 1.0 / self.fps, now)
            wait_until = next_frame if self.playing else now + 1.0
            self._wake.clear()
            timeout = max(wait_until - loop.time(), 0.0)
            if timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass

    # --- one page ---------------------------------------------------------------------------

    async def endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        client = Client(ws)
        client.push(self.meta_text(), urgent=True)
        if self.curve:
            client.push(encode({"type": "curve", "points": self.curve, "reset": True}), urgent=True)
        client.push(encode(self.sim.frame()))
        self.clients.add(client)
        pump = asyncio.create_task(client.pump())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:  # commands are JSON text; anything else is ignored
                    msg = json.loads(message.get("text") or "")
                except ValueError:
                    continue
                self.control(msg)
        finally:
            self.clients.discard(client)
            pump.cancel()


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        print("townlet-watch: the simulation loop stopped:", file=sys.stderr)
        traceback.print_exception(task.exception(), file=sys.stderr)


def create_app(hub: Hub) -> Starlette:
    @asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(hub.run())]
        if hub.follower is not None:
            tasks.append(asyncio.create_task(hub.follow()))
        for task in tasks:
            task.add_done_callback(_report_crash)
        yield
        for task in tasks:
            task.cancel()

    return Starlette(
        routes=[WebSocketRoute("/ws", hub.endpoint), Mount("/", StaticFiles(directory=STATIC, html=True))],
        lifespan=lifespan,
    )
