"""The server without a browser: WebSocket messages, controls, several pages at once, and
following a run's files (newest checkpoint, metrics.jsonl) as the trainer writes them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time

import pytest
import torch
from starlette.testclient import TestClient

from townlet_agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from townlet_agents.viewer import follow
from townlet_agents.viewer.follow import CURVE_METRIC, RunFollower
from townlet_agents.viewer.server import Client, Hub, create_app
from townlet_agents.viewer.sim import EnvChoice, OracleAdapter, Simulation, WatchError, make_towns
from townlet_agents.watch import build, parse_args


def oracle_hub(towns: int = 4, fps: float = 60) -> Hub:
    env = make_towns(EnvChoice("L3_temporal_mechanics"), towns, torch.device("cpu"))
    return Hub(Simulation(env, OracleAdapter(env)), fps=fps)


def next_of(ws, kind: str, limit: int = 200) -> dict:
    for _ in range(limit):
        msg = ws.receive_json()
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind} message")


def test_a_page_gets_meta_then_frames_that_advance():
    hub = oracle_hub()
    with TestClient(create_app(hub)) as client:
        assert "Townlet viewer" in client.get("/").text
        assert "new WebSocket" in client.get("/viewer.js").text and client.get("/viewer.css").status_code == 200
        with client.websocket_connect("/ws") as ws:
            meta = ws.receive_json()
            assert meta["type"] == "meta" and meta["playing"] and meta["fps"] == 60 and meta["follow"] is None
            ticks = [next_of(ws, "frame")["tick"] for _ in range(5)]
            assert ticks == sorted(ticks) and ticks[-1] > ticks[0]


def test_pause_stops_the_steps_and_step_advances_exactly_one():
    hub = oracle_hub()
    with TestClient(create_app(hub)) as client, client.websocket_connect("/ws") as ws:
        next_of(ws, "frame")
        ws.send_json({"cmd": "pause"})
        assert next_of(ws, "control")["playing"] is False
        paused_at = hub.sim.tick
        time.sleep(0.3)
        assert hub.sim.tick == paused_at
        ws.send_json({"cmd": "step"})
        while (frame := next_of(ws, "frame"))["tick"] <= paused_at:
            pass
        assert frame["tick"] == paused_at + 1
        time.sleep(0.2)
        assert hub.sim.tick == paused_at + 1
        ws.send_json({"cmd": "play"})
        assert next_of(ws, "control")["playing"] is True
        while next_of(ws, "frame")["tick"] < paused_at + 3:
            pass


def test_speed_is_clamped_and_reset_restarts_the_chosen_town():
    hub = oracle_hub()
    with TestClient(create_app(hub)) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"cmd": "speed", "fps": 1000})
        assert next_of(ws, "control")["fps"] == 60
        ws.send_json({"cmd": "speed", "fps": 0})
        assert next_of(ws, "control")["fps"] == 1
        ws.send_json({"cmd": "pause"})
        next_of(ws, "control")
        hub.sim.step()
        ws.send_json({"cmd": "reset", "town": 2})
        frame = next_of(ws, "frame")
        while frame["towns"]["episode"][2] != 1:
            frame = next_of(ws, "frame")
        assert frame["towns"]["steps"][2] == 0 and frame["towns"]["steps"][0] > 0


def test_malformed_commands_are_ignored():
    hub = oracle_hub()
    with TestClient(create_app(hub)) as client, client.websocket_connect("/ws") as ws:
        for bad in ("not json", json.dumps([1]), json.dumps({"cmd": "fly"}), json.dumps({"cmd": "reset", "town": 99}),
                    json.dumps({"cmd": "speed", "fps": "fast"})):
            ws.send_text(bad)
        ws.send_bytes(b"\x00binary")
        ws.send_json({"cmd": "pause"})
        control = next_of(ws, "control")  # the first control message answers the valid command
        assert control["playing"] is False and control["fps"] == 60


def test_many_pages_share_one_simulation_loop():
    hub = oracle_hub()
    with TestClient(create_app(hub)) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b, \
                client.websocket_connect("/ws") as c:
            for ws in (a, b, c):
                next_of(ws, "frame")
            assert len(hub.clients) == 3
            start = hub.sim.tick
            # every page sees the same frames of the one simulation
            seen = [{next_of(ws, "frame")["tick"] for _ in range(10)} for ws in (a, b, c)]
            assert all(max(s) > start for s in seen)
        deadline = time.monotonic() + 5
        while hub.clients and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not hub.clients


def test_a_page_that_does_not_read_keeps_only_the_newest_frame():
    client = Client(ws=None)
    for i in range(100):
        client.push(f"frame {i}")
    client.push("meta", urgent=True)
    assert client.frame == "frame 99" and client.urgent == ["meta"]


def test_a_crash_of_the_loop_is_reported(capsys):
    from townlet_agents.viewer.server import _report_crash

    async def boom():
        raise RuntimeError("kaput")

    async def main():
        task = asyncio.ensure_future(boom())
        await asyncio.gather(task, return_exceptions=True)
        _report_crash(task)

    asyncio.run(main())
    assert "simulation loop stopped" in capsys.readouterr().err


# --- following a run ---------------------------------------------------------------------------

def test_a_follower_needs_a_run_folder(tmp_path):
    with pytest.raises(WatchError, match="is not a folder"):
        RunFollower(tmp_path / "missing")
    with pytest.raises(WatchError, match="neither checkpoints/ nor metrics.jsonl"):
        RunFollower(tmp_path)


def test_the_newest_checkpoint_is_loaded_once_and_newer_ones_are_found(run_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    follower = RunFollower(run)
    assert follower.newest().name == "step_000000001600.pt"
    path, payload = follower.poll_checkpoint()
    assert path.name == "step_000000001600.pt" and payload["counters"]["global_step"] == 1600
    assert follower.poll_checkpoint() is None  # unchanged
    shutil.copy(path, run / "checkpoints" / "step_000000002000.pt")
    assert follower.poll_checkpoint()[0].name == "step_000000002000.pt"
    (run / "checkpoints" / "step_000000002400.pt").write_bytes(b"garbage")
    assert follower.poll_checkpoint() is None and "step_000000002400.pt" in follower.error
    assert follower.poll_checkpoint() is None  # a bad file is not read again and again
    gone = run / "checkpoints" / "step_000000002800.pt"
    gone.write_bytes(b"")

    def pruned_while_reading(path, map_location="cpu"):
        gone.unlink()
        raise CheckpointError(f"{path}: no such checkpoint file")

    monkeypatch.setattr(follow, "load_checkpoint", pruned_while_reading)
    assert follower.poll_checkpoint() is None and "2800" not in follower.error  # pruned: not an error
    monkeypatch.undo()
    for p in (run / "checkpoints").glob("step_*"):
        p.unlink()
    assert follower.newest().name == "latest.pt"
    (run / "checkpoints" / "latest.pt").unlink()
    assert follower.newest() is None and follower.poll_checkpoint() is None


def test_the_curve_is_read_incrementally_even_mid_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    follower = RunFollower(tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write(json.dumps({"global_step": 100, CURVE_METRIC: 12.5}) + "\n")
        f.write(json.dumps({"global_step": 150, "event": "curriculum_stage_change"}) + "\n")
        f.write("not json\n")
        f.write(json.dumps({"global_step": 200, CURVE_METRIC: 20.0})[:10])
    assert follower.poll_curve() == ([[100, 12.5]], False)
    with open(metrics, "a") as f:
        f.write(json.dumps({"global_step": 200, CURVE_METRIC: 20.0})[10:] + "\n")
    assert follower.poll_curve() == ([[200, 20.0]], False)
    assert follower.poll_curve() == ([], False)
    metrics.write_text(json.dumps({"global_step": 50, CURVE_METRIC: 3.0}) + "\n")  # a new run in the folder
    assert follower.poll_curve() == ([[50, 3.0]], True)
    metrics.unlink()
    assert follower.poll_curve() == ([], False)


def test_a_followed_run_swaps_in_newer_checkpoints_and_streams_its_curve(run_dir, curve_steps, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    hub = build(parse_args([f"run={run}", "towns=4", "poll_seconds=0.1"]))
    first = hub.sim
    assert "step_000000001600.pt" in first.policy.label and first.q is not None
    asyncio.run(hub.poll_run())
    assert [p[0] for p in hub.curve] == curve_steps  # the rows that hold the metric
    weights = run / "checkpoints" / "step_000000001600.pt"
    newer = run / "checkpoints" / "step_000000002000.pt"
    shutil.copy(weights, newer)
    os.utime(newer)
    asyncio.run(hub.poll_run())
    assert hub.sim is first and "step_000000002000.pt" in hub.sim.policy.label  # same towns, new policy
    assert hub.status == "following step_000000002000.pt"
    (run / "checkpoints" / "step_000000002400.pt").write_bytes(b"garbage")
    asyncio.run(hub.poll_run())
    assert "cannot read checkpoint" in hub.status and "step_000000002000.pt" in hub.sim.policy.label


def test_an_explicit_level_the_checkpoint_does_not_fit_keeps_the_previous_policy(run_dir, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    hub = build(parse_args([f"run={run}", "towns=4", "env.level=L1_full_observability"]))
    assert hub.sim.policy.label.startswith("random (waiting") and hub.sim.meta()["level"] == "L1_full_observability"
    shutil.copy(run_dir / "checkpoints" / "latest.pt", run / "checkpoints" / "latest.pt")
    waiting = hub.sim
    asyncio.run(hub.poll_run())
    assert hub.sim is waiting and "kept the previous policy" in hub.status
    # a checkpoint asking for other towns (its own layout seed) that still does not fit
    payload = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    payload["config"]["env"]["layout_seed"] = 5
    save_checkpoint(run / "checkpoints" / "step_000000000001.pt", payload)
    asyncio.run(hub.poll_run())
    assert hub.sim is waiting and hub.sim.meta()["level"] == "L1_full_observability"
    assert "different observation layout" in hub.status


def test_a_run_without_checkpoints_waits_then_takes_the_first_one(run_dir, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    hub = build(parse_args([f"run={run}", "towns=4"]))
    waiting = hub.sim
    assert waiting.q is None and waiting.policy.label.startswith("random (waiting")
    shutil.copy(run_dir / "checkpoints" / "latest.pt", run / "checkpoints" / "latest.pt")
    asyncio.run(hub.poll_run())
    assert hub.sim is waiting and hub.sim.q is not None and hub.status == "following latest.pt"


def test_a_checkpoint_of_another_level_rebuilds_the_towns(run_dir, tmp_path):
    from townlet_agents.config import compose
    from townlet_agents.trainer import Trainer

    run = tmp_path / "run"
    Trainer(compose("+experiment=minimal", "env.num_envs=2", "agent.hidden_size=8", "agent.encoder_size=8",
                    "agent.learning_starts=100", "agent.batch_size=2", "wandb.mode=disabled",
                    "train.progress_bar=false", "train.total_env_steps=200", "train.log_every_env_steps=100"),
            run).train()
    hub = build(parse_args([f"run={run}", "towns=4"]))
    assert hub.sim.meta()["level"] == "L0_minimal"
    shutil.copy(run_dir / "checkpoints" / "latest.pt", run / "checkpoints" / "step_000000009999.pt")
    before = hub.sim
    asyncio.run(hub.poll_run())
    assert hub.sim is not before and hub.sim.meta()["level"] == "L3_temporal_mechanics"
    assert hub.sim.env.num_envs == 4


def test_hub_with_follower_streams_meta_and_curve_to_pages(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    hub = build(parse_args([f"run={run}", "towns=4", "fps=60", "poll_seconds=0.05"]))
    with TestClient(create_app(hub)) as client:
        with client.websocket_connect("/ws") as ws:
            meta = next_of(ws, "meta")
            assert meta["follow"] == str(run) and meta["q"] is True
            deadline = time.monotonic() + 10
            while not hub.curve and time.monotonic() < deadline:
                time.sleep(0.05)
        with client.websocket_connect("/ws") as ws:  # a late page gets the whole curve at once
            assert next_of(ws, "curve") == {"type": "curve", "points": hub.curve, "reset": True}
