"""Reliability through the real command line: SIGTERM/SIGINT to a training process, a
second signal, resume=auto, two trainers on one folder and a kill -9, a diverging run and
a real full disk (a tiny tmpfs; skipped where mounting is not permitted)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from test_cli import REPO, TINY, assert_ok, assert_user_error, metrics, train
from test_cli import run as run_module

LONG = [*TINY, "train.total_env_steps=100000000"]


def start(*args: str, wandb: str = "disabled") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE=wandb, WANDB_SILENT="true", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "townlet_agents.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.time() > end:
            raise AssertionError("timed out")
        time.sleep(0.1)


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("step_*.pt"))


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["counters"]["global_step"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_cleanly_and_resume_auto_continues(tmp_path, sig):
    run = tmp_path / "run"
    proc = start(*LONG, f"hydra.run.dir={run}", "resume=auto", wandb="offline")
    wait_for(lambda: has_checkpoint(run), proc=proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "Traceback" not in out, err
    assert f"{name} received: finishing this iteration" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {name} at env step ") and "resume=auto" in last, err
    step = int(last.split("env step ")[1].split(":")[0])
    assert step_of(run / "checkpoints" / "latest.pt") == step  # a checkpoint at the stop, not the last interval
    assert metrics(run)[-1]["global_step"] == step  # the last row flushed
    assert list((run / "wandb").glob("offline-run-*/*.wandb"))  # the wandb run was finished and written
    assert not list((run / "checkpoints").glob(".*.tmp"))

    resumed = start(*TINY, f"train.total_env_steps={step + 1000}", f"hydra.run.dir={run}", "resume=auto")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"resume=auto: continuing from {run / 'checkpoints'}" in out
    steps = [r["global_step"] for r in metrics(run)]
    assert steps[steps.index(step) + 1] > step and steps[-1] == step + 1000  # continued, not restarted
    assert step_of(run / "checkpoints" / "latest.pt") == step + 1000


def test_a_second_signal_exits_at_once_leaving_loadable_checkpoints(tmp_path):
    run = tmp_path / "run"
    # A big replay in the checkpoint makes the stop's checkpoint write take a while.
    proc = start(*LONG, f"hydra.run.dir={run}", "checkpoint.save_replay=true", "agent.replay_capacity=20000",
                 wandb="offline")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    wait_for(lambda: has_checkpoint(run), proc=proc)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any("SIGTERM received" in line for line in lines), timeout=30)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM again: exiting now without a checkpoint" in err and "Traceback" not in err, err
    for path in (run / "checkpoints").glob("*.pt"):  # nothing partial under a final name
        assert step_of(path) > 0


def test_two_trainers_on_one_folder_and_a_stale_lock_after_kill_9(tmp_path):
    run = tmp_path / "run"
    first = start(*LONG, f"hydra.run.dir={run}")
    try:
        wait_for(lambda: has_checkpoint(run), proc=first)
        second = train(*TINY, f"hydra.run.dir={run}", "resume=auto")
        assert_user_error(second, "another trainer is using this run folder", f"pid {first.pid} on ")
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    finally:
        first.kill()  # SIGKILL: the lock file still names it, the kernel lock is gone
        first.wait()
    newest = max(step_of(p) for p in (run / "checkpoints").glob("step_*.pt"))
    third = train(*TINY, f"hydra.run.dir={run}", "resume=auto", f"train.total_env_steps={newest + 1000}")
    assert_ok(third)
    assert f"recovered the lock left by a trainer that is no longer running (pid {first.pid} on " in third.stderr
    assert step_of(run / "checkpoints" / "latest.pt") == newest + 1000


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    """A reward scale of 1e39 is infinite in float32: the first update's loss is not
    finite. The checkpoint written before it stays the newest."""
    run = tmp_path / "run"
    proc = train(*TINY, f"hydra.run.dir={run}", "agent.reward_scale=1e39", "agent.learning_starts=1200")
    assert_user_error(proc, "training diverged: non-finite loss", "the newest checkpoint is the last good one")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["latest.pt", "step_000000001000.pt"]
    payload = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert payload["counters"]["global_step"] == 1000
    assert all(torch.isfinite(v).all() for v in payload["online"].values())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 450 KiB tmpfs: room for two checkpoints of the TINY run (184 KB each), not a third."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=450k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_stops_the_run_naming_the_file_and_keeps_the_previous_checkpoint(tiny_disk):
    run = tiny_disk / "run"
    proc = train(*TINY, f"hydra.run.dir={run}", "checkpoint.keep=5")
    assert_user_error(proc, "step_000000002000.pt: cannot write checkpoint: No space left on device")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert files == ["latest.pt", "step_000000001000.pt"], files  # no temporary or partial file
    assert step_of(run / "checkpoints" / "latest.pt") == 1000
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every row whole


# ------------------------------------------- custom packs on the command line (env.level=PATH)

def _pack_paths_on_the_cli() -> bool:
    from typing import get_type_hints

    from townlet_agents.config import EnvConfig

    return get_type_hints(EnvConfig)["level"] is str


needs_pack_paths = pytest.mark.skipif(not _pack_paths_on_the_cli(),
                                      reason="env.level=PATH needs the level to be a string in the config schema")
CORPUS = REPO / "tests" / "data" / "broken_packs"


@needs_pack_paths
@pytest.mark.parametrize("name, key", [("bad_toml", "line 5"), ("unknown_meter", "meters.stamina"),
                                       ("negative_tick_price", "affordances.Bar.ticked.price"),
                                       ("base_cycle_a", "bases form a cycle"), ("missing_base", "not found")])
def test_a_broken_pack_file_on_the_command_line_is_one_line(tmp_path, name, key):
    """A few of the corpus through real subprocesses (all of it runs in process in
    tests/agents/test_cli_packs.py)."""
    proc = train(*TINY, f"env.level={CORPUS / name}.toml", f"hydra.run.dir={tmp_path}")
    assert_user_error(proc, f"{CORPUS}/", key)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@needs_pack_paths
def test_a_changed_pack_is_refused_by_evaluate_and_resume_unless_allowed(tmp_path):
    """Train on a user's pack, then change one number in it: evaluate and resume name the
    difference and refuse; allow_world_change=true goes ahead."""
    from townlet_env import load_pack
    from townlet_env.pack import pack_path

    pack = tmp_path / "mine.toml"
    pack.write_text(pack_path("L0_minimal").read_text())
    run = tmp_path / "run"
    assert_ok(train(*TINY, f"env.level={pack}", f"hydra.run.dir={run}"))
    latest = run / "checkpoints" / "latest.pt"
    before = load_pack(str(pack)).depletion["energy"]
    pack.write_text(pack.read_text() + f"\n[meters.energy]\ninitial = 1.0\ndepletion = {before * 2}\n")
    named = f"depletion.energy: {before!r} -> {before * 2!r}"

    proc = run_module("townlet_agents.evaluate", f"checkpoint={latest}", "episodes=2", f"hydra.run.dir={tmp_path}")
    assert_user_error(proc, "trained on a different world", named, "allow_world_change=true")
    proc = run_module("townlet_agents.evaluate", f"checkpoint={latest}", "episodes=2", "allow_world_change=true",
                      f"hydra.run.dir={tmp_path}")
    assert_ok(proc)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["world_changes"] == [named]

    resumed = tmp_path / "resumed"
    proc = train(*TINY, f"env.level={pack}", f"resume={latest}", "train.total_env_steps=4000",
                 f"hydra.run.dir={resumed}")
    assert_user_error(proc, "trained on a different world", named)
    assert_ok(train(*TINY, f"env.level={pack}", f"resume={latest}", "train.total_env_steps=4000",
                    "allow_world_change=true", f"hydra.run.dir={resumed}"))
