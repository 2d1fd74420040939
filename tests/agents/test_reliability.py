"""Reliability, second round, in process: world identity, disk faults injected at each
write, the divergence guard, the run lock, resume=auto, the graceful-stop handler, GPU
stage-change events and baseline_relative at truncation. tests/test_cli_reliability.py
drives the same guarantees through real subprocesses (signals, kill -9, a full disk)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import townlet_agents.checkpoint as ckpt
import townlet_agents.metrics as metrics_mod
from townlet_agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from townlet_agents.config import compose
from townlet_agents.evaluate import evaluate
from townlet_agents.guards import DivergenceGuard
from townlet_agents.metrics import MetricsSink
from townlet_agents.resume import candidates, find_resumable
from townlet_agents.run_errors import DivergenceError, MetricsWriteError, RunLockError
from townlet_agents.run_lock import LOCK_NAME, RunLock
from townlet_agents.stage_events import StageEventLog
from townlet_agents.stopping import GracefulStop, StoppedBySignal
from townlet_agents.trainer import Trainer, layout_record
from townlet_agents.world_identity import check_world, differences, world_identity, world_summary
from townlet_env import TownletVectorEnv, load_pack

TINY = [
    "+experiment=minimal", "env.num_envs=4", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16",
    "agent.encoder_size=8", "agent.batch_size=4", "agent.learning_starts=200", "agent.replay_capacity=256",
    "wandb.mode=disabled", "train.progress_bar=false", "train.log_every_env_steps=200",
    "checkpoint.every_env_steps=200", "checkpoint.keep=5", "train.total_env_steps=600",
]


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


BED_TICKS = {a.name: a for a in load_pack("L0_minimal").affordances}["Bed"].ticks


def trainer(run_dir: Path, *overrides: str) -> Trainer:
    return Trainer(compose(*TINY, *overrides), run_dir)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def no_temp_files(run_dir: Path) -> bool:
    return not list((run_dir / "checkpoints").glob(".*"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    os.environ["WANDB_MODE"] = "disabled"
    Trainer(compose(*TINY), run_dir).train()
    return run_dir


def tampered(src: Path, dst: Path, key: str, value) -> Path:
    """A copy of a checkpoint that claims a world where `key` had `value`."""
    p = load_checkpoint(src)
    summary = {**p["world_identity"]["summary"], key: value}
    p["world_identity"] = {**p["world_identity"], "summary": summary,
                           "fingerprint": world_identity.__globals__["fingerprint"](summary)}
    return save_checkpoint(dst, {k: v for k, v in p.items() if k != "version"})


# ------------------------------------------------------------------- 3. world identity

def test_world_summary_holds_every_pack_number_and_the_layout():
    env = TownletVectorEnv(2, "L3_temporal_mechanics")
    pack = env.pack
    summary = world_summary(pack, layout_record(env.obs_layout))
    for aff in pack.affordances:  # every affordance number, keyed by name
        assert summary[f"{aff.name}.ticks"] == aff.ticks and summary[f"{aff.name}.tick_price"] == aff.tick_price
        assert summary[f"{aff.name}.hours"] == list(aff.hours)
        for meter, v in aff.per_tick.items():
            assert summary[f"{aff.name}.per_tick.{meter}"] == v
    for meter, v in pack.depletion.items():
        assert summary[f"depletion.{meter}"] == v
    assert summary["grid_size"] == pack.grid_size and summary["starting_money"] == pack.starting_money
    assert summary["observation.grid.start"] == 0
    assert not any(k in summary for k in ("name", "reward_mode", "layout_mode", "layout_seed", "layout_pool",
                                          "max_steps", "start_spread"))


def test_a_changed_number_changes_the_fingerprint_and_is_named():
    env = TownletVectorEnv(2, "L3_temporal_mechanics")
    layout = layout_record(env.obs_layout)
    jobs = {a.name: a for a in env.pack.affordances}
    changed = dataclasses.replace(env.pack, affordances=tuple(
        dataclasses.replace(a, ticks=a.ticks + 1) if a.name == "Job" else a for a in env.pack.affordances))
    a, b = world_identity(env.pack, layout), world_identity(changed, layout)
    assert a["fingerprint"] != b["fingerprint"]
    assert differences(a["summary"], b["summary"]) == [f"Job.ticks: {jobs['Job'].ticks} -> {jobs['Job'].ticks + 1}"]
    # Layout, reward mode, step limit and training's lowered starts are how a world is run
    # and measured: same fingerprint.
    assert world_identity(dataclasses.replace(env.pack, layout_seed=9, reward_mode="interoception", max_steps=5000,
                                              start_spread=0.5), layout)["fingerprint"] == a["fingerprint"]


def test_check_world_refuses_allows_and_warns(capsys):
    saved = {"fingerprint": "a", "summary": {"Job.ticks": 4, "Bar.price": 1.0}}
    current = {"fingerprint": "b", "summary": {"Job.ticks": 5, "Bar.price": 1.0, "new.key": 1}}
    with pytest.raises(CheckpointError) as e:
        check_world("ck.pt", saved, current, False, "resume")
    msg = str(e.value)
    assert "ck.pt: trained on a different world" in msg and "Job.ticks: 4 -> 5" in msg
    assert "new.key: (absent) -> 1" in msg and "2 differences" in msg and "allow_world_change=true" in msg
    assert check_world("ck.pt", saved, current, True, "resume") == ["Job.ticks: 4 -> 5", "new.key: (absent) -> 1"]
    assert "world changed since training" in capsys.readouterr().err
    assert check_world("ck.pt", None, current, False, "evaluation") == []
    assert "written before checkpoints recorded their world" in capsys.readouterr().err
    many = {"fingerprint": "c", "summary": {f"k{i}": i + 1 for i in range(12)}}
    with pytest.raises(CheckpointError, match="and 4 more"):
        check_world("ck.pt", {"fingerprint": "d", "summary": {f"k{i}": i for i in range(12)}}, many, False, "x")
    with pytest.raises(CheckpointError, match="fingerprint: "):  # same summary, different hash: still refused
        check_world("ck.pt", {"fingerprint": "e" * 64, "summary": {}}, {"fingerprint": "f" * 64, "summary": {}},
                    False, "x")


def test_checkpoints_record_the_world(trained):
    p = load_checkpoint(trained / "checkpoints" / "latest.pt")
    env = TownletVectorEnv(2, "L0_minimal")
    assert p["world_identity"] == world_identity(env.pack, layout_record(env.obs_layout))
    assert p["world_identity"]["pack"] == "L0_minimal"


def test_resume_refuses_a_changed_world_unless_allowed(trained, tmp_path, capsys):
    bad = tampered(trained / "checkpoints" / "latest.pt", tmp_path / "other_world.pt", "Bed.ticks", 7)
    t = trainer(tmp_path / "a", f"resume={bad}", "train.total_env_steps=800")
    with pytest.raises(CheckpointError, match=rf"other_world.pt: trained on a different world .*Bed.ticks: 7 -> {BED_TICKS}"):
        t.train()
    assert not (tmp_path / "a" / "checkpoints").exists()  # nothing written
    t = trainer(tmp_path / "b", f"resume={bad}", "train.total_env_steps=800", "allow_world_change=true")
    t.train()
    assert f"Bed.ticks: 7 -> {BED_TICKS}" in capsys.readouterr().err
    assert t.global_step == 800
    # the fine-tuned run's checkpoints record the world it now trains on
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")["world_identity"]["summary"]["Bed.ticks"] == BED_TICKS


def test_a_version_2_checkpoint_resumes_and_evaluates_with_a_warning(trained, tmp_path, capsys):
    p = torch.load(trained / "checkpoints" / "latest.pt", weights_only=True)
    old = {**{k: v for k, v in p.items() if k != "world_identity"}, "version": 2}
    torch.save(old, tmp_path / "v2.pt")
    t = trainer(tmp_path / "run", f"resume={tmp_path / 'v2.pt'}", "train.total_env_steps=800")
    t.train()
    assert "written before checkpoints recorded their world" in capsys.readouterr().err
    result = evaluate(compose(f"checkpoint={tmp_path / 'v2.pt'}", "episodes=2", "device=cpu",
                              config_name="evaluate"))
    assert result["world_changes"] == []
    assert "written before checkpoints recorded their world" in capsys.readouterr().err


def test_evaluate_refuses_a_changed_world_unless_allowed(trained, tmp_path, capsys):
    bad = tampered(trained / "checkpoints" / "latest.pt", tmp_path / "other.pt", "depletion.energy", 0.5)
    args = [f"checkpoint={bad}", "episodes=2", "device=cpu"]
    with pytest.raises(CheckpointError, match=r"other.pt: trained on a different world .*depletion.energy: 0.5 -> "):
        evaluate(compose(*args, config_name="evaluate"))
    result = evaluate(compose(*args, "allow_world_change=true", config_name="evaluate"))
    assert result["world_changes"][0].startswith("depletion.energy: 0.5 -> ")
    assert "world changed since training" in capsys.readouterr().err
    assert evaluate(compose(f"checkpoint={trained / 'checkpoints' / 'latest.pt'}", "episodes=2", "device=cpu",
                            config_name="evaluate"))["world_changes"] == []


# ------------------------------------------------------------------------ 2. disk faults

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("site", ["mkstemp", "torch.save", "fsync", "os.replace"])
def test_a_failed_checkpoint_write_stops_the_run_and_keeps_the_previous_one(tmp_path, monkeypatch, site):
    """Injected at each write of save_checkpoint on the trainer's second checkpoint: the
    run stops with one line naming the file and the cause; the first checkpoint stays
    complete and loadable; no temporary or partial file is left."""
    t = trainer(tmp_path)
    real = {"mkstemp": ckpt.tempfile.mkstemp, "torch.save": ckpt.torch.save, "fsync": ckpt.os.fsync,
            "os.replace": ckpt.os.replace}[site]
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if site == "fsync" and not isinstance(args[0], int):
            return real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > (2 if site != "fsync" else 4):  # after step_200 and latest.pt (fsync: file + folder each)
            if site == "torch.save":
                args[1].write(b"half a checkpoint")
            _enospc()
        return real(*args, **kwargs)

    target = {"mkstemp": (ckpt.tempfile, "mkstemp"), "torch.save": (ckpt.torch, "save"), "fsync": (ckpt.os, "fsync"),
              "os.replace": (ckpt.os, "replace")}[site]
    monkeypatch.setattr(*target, flaky)
    with pytest.raises(CheckpointError) as e:
        t.train()
    monkeypatch.undo()
    msg = str(e.value)
    assert "step_000000000400.pt: cannot write checkpoint: No space left on device" in msg, msg
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest.pt", "step_000000000200.pt"]
    assert load_checkpoint(folder / "latest.pt")["counters"]["global_step"] == 200
    assert t.global_step == 400  # stopped at the failing checkpoint, no final checkpoint tried


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_an_unwritable_checkpoint_folder_is_named_with_its_cause(tmp_path, monkeypatch, code):
    """Permissions, a read-only mount or a quota, as the OS reports them (root ignores
    permissions, so the failure is injected where the temporary file is created)."""
    path = save_checkpoint(tmp_path / "c.pt", _tiny_payload())
    monkeypatch.setattr(ckpt.tempfile, "mkstemp", lambda *a, **k: _raise(OSError(code, os.strerror(code))))
    with pytest.raises(CheckpointError, match=f"c.pt: cannot write checkpoint: {os.strerror(code)}"):
        save_checkpoint(path, _tiny_payload())
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"] and load_checkpoint(path)["world_identity"] is None


def test_an_old_checkpoint_that_cannot_be_pruned_only_warns(tmp_path, monkeypatch, capsys):
    t = trainer(tmp_path, "checkpoint.keep=1")
    real = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.startswith("step_"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    t.train()
    assert t.global_step == 600
    assert "cannot remove an old checkpoint: Permission denied" in capsys.readouterr().err


def test_torch_zip_write_failure_on_a_full_disk_is_named(tmp_path, monkeypatch):
    """torch.save loses the errno ("unexpected pos"); a folder with no space says why."""
    def zip_error(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(ckpt.torch, "save", zip_error)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: ckpt.shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(CheckpointError, match="cannot write checkpoint: No space left on device"):
        save_checkpoint(tmp_path / "c.pt", {k: v for k, v in _tiny_payload().items()})
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: ckpt.shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))
    with pytest.raises(CheckpointError, match=r"write failed \(\[enforce fail"):
        save_checkpoint(tmp_path / "c.pt", _tiny_payload())
    assert list(tmp_path.iterdir()) == []


def _tiny_payload() -> dict:
    return {"online": {}, "target": {}, "optimizer": {}, "counters": {}, "rng": {}, "exploration": {},
            "curriculum": {}, "layout": {}, "config": {}, "world_identity": None}


def test_a_failed_metrics_write_stops_the_run_with_no_partial_row(tmp_path, monkeypatch):
    t = trainer(tmp_path, "checkpoint.every_env_steps=400")
    real = os.write
    written = {"rows": 0}

    def flaky(fd, data):
        if fd == t_sink_fd.get("fd"):
            written["rows"] += 1
            if written["rows"] == 2:  # the second row: half of it lands, then the disk is full
                real(fd, bytes(data)[: len(data) // 2])
                _enospc()
        return real(fd, data)

    t_sink_fd: dict = {}
    real_init = MetricsSink.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        t_sink_fd["fd"] = self._file.fileno()

    monkeypatch.setattr(MetricsSink, "__init__", init)
    monkeypatch.setattr(metrics_mod.os, "write", flaky)
    with pytest.raises(MetricsWriteError, match=r"metrics.jsonl: cannot write metrics: No space left on device"):
        t.train()
    monkeypatch.undo()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in lines] == [200]  # the partial row was cut off
    assert not (tmp_path / "checkpoints").exists()  # no checkpoint written after the failure
    assert (tmp_path / "metrics.jsonl").read_text().endswith("\n")


def test_an_unwritable_metrics_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "metrics.jsonl").mkdir()  # a folder where the file should be: open fails even as root
    t = trainer(tmp_path)
    with pytest.raises(MetricsWriteError, match="metrics.jsonl: cannot write metrics: Is a directory"):
        t.train()


# --------------------------------------------------------------------- 4. divergence

def test_a_non_finite_loss_stops_the_run_at_that_update(tmp_path, monkeypatch):
    """CPU: checked after every update. The update at env step 400 goes NaN; the run stops
    there, and the newest checkpoint is the last good one (step 200), not a later one."""
    t = trainer(tmp_path, "train.total_env_steps=2000")
    real = t.learner.update
    bad_at = []

    def update(batch):
        out = real(batch)
        if t.global_step > 400:  # the first update after the step-400 checkpoint
            bad_at.append(t.global_step)
            with torch.no_grad():
                next(t.learner.online.parameters()).fill_(float("nan"))
            out["td_loss"] = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(t.learner, "update", update)
    with pytest.raises(DivergenceError) as e:
        t.train()
    msg = str(e.value)
    assert f"non-finite loss and parameter at env step {bad_at[0]} " in msg, msg
    assert "newest checkpoint is the last good one" in msg
    assert t.global_step == bad_at[0] and len(bad_at) == 1  # stopped at that very update
    latest = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    assert latest["counters"]["global_step"] == 400
    assert all(torch.isfinite(v).all() for v in latest["online"].values())
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == [
        "latest.pt", "step_000000000200.pt", "step_000000000400.pt"]


def test_on_a_gpu_the_guard_is_read_at_logs_and_never_lets_a_checkpoint_through(tmp_path, monkeypatch):
    """The sync-free path: the flag is read at the next log or checkpoint; the message
    names the step where it first went wrong."""
    t = trainer(tmp_path, "train.total_env_steps=2000", "train.log_every_env_steps=1000",
                "checkpoint.every_env_steps=600")
    t.guard.check_every_update = False
    real = t.learner.update
    bad_at = []

    def update(batch):
        out = real(batch)
        if t.global_step >= 400:
            bad_at.append(t.global_step)
            out["grad_norm"] = torch.tensor(float("inf"))
        return out

    monkeypatch.setattr(t.learner, "update", update)
    with pytest.raises(DivergenceError) as e:
        t.train()
    assert f"non-finite gradient at env step {bad_at[0]} " in str(e.value) and len(bad_at) > 1
    assert t.global_step == 600  # found at the checkpoint, which was not written
    assert not (tmp_path / "checkpoints").exists()


def test_guard_ignores_finite_updates():
    g = DivergenceGuard(torch.device("cpu"), check_every_update=True)
    g.observe({"td_loss": torch.tensor(1.0), "grad_norm": torch.tensor(2.0)}, [torch.ones(3)], 10, 1)
    assert not g.tripped()
    g.check_every_update = False
    g.observe({}, [torch.tensor([1.0, float("inf")])], 20, 2)
    g.observe({"td_loss": torch.tensor(float("nan"))}, [torch.ones(1)], 30, 3)  # later: the first is kept
    with pytest.raises(DivergenceError, match="non-finite parameter at env step 20 \\(update 2\\)"):
        g.check()


# ------------------------------------------------------------------------ 5. run lock

def test_a_second_lock_on_the_same_folder_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockError) as e:
            RunLock(tmp_path).acquire()
        assert f"pid {os.getpid()} on " in str(e.value) and "another trainer is using this run folder" in str(e.value)
        t = trainer(tmp_path)
        with pytest.raises(RunLockError):
            t.train()
    RunLock(tmp_path).acquire().release()  # free again once released
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path, capsys):
    code = ("import sys, time; from townlet_agents.run_lock import RunLock; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockError, match=f"pid {proc.pid} on "):
            RunLock(tmp_path).acquire()
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
    finally:
        proc.kill()
    lock = RunLock(tmp_path).acquire()
    assert f"pid {proc.pid} on " in lock.previous_holder
    assert "recovered the lock left by a trainer that is no longer running" in capsys.readouterr().err
    lock.release()


def test_a_folder_where_locks_cannot_be_made_is_named(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()  # a folder where the lock file should be
    with pytest.raises(RunLockError, match=r"\.townlet\.lock: cannot create the run lock"):
        RunLock(tmp_path).acquire()


def test_a_file_system_without_locks_runs_unguarded_with_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("townlet_agents.run_lock.fcntl.flock", lambda fd, op: _raise(OSError(errno.ENOLCK, "No locks")))
    with RunLock(tmp_path) as lock:
        assert lock._fd is None
    assert "refuses locks" in capsys.readouterr().err


def _raise(e):
    raise e


# ------------------------------------------------------------------ 1. resume=auto, stop

def test_resume_auto_skips_a_corrupt_newest_checkpoint(trained, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for p in (trained / "checkpoints").glob("*.pt"):
        (run / "checkpoints" / p.name).write_bytes(p.read_bytes())
    newest = run / "checkpoints" / "step_000000000600.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash mid-copy
    (run / "checkpoints" / "step_000000000999.pt").write_bytes(b"")  # empty
    assert [p.name for p in candidates(run)][:3] == ["step_000000000999.pt", "step_000000000600.pt",
                                                     "step_000000000400.pt"]
    path, payload = find_resumable(run)
    assert path.name == "step_000000000400.pt" and payload["counters"]["global_step"] == 400
    err = capsys.readouterr().err
    assert "skipping" in err and "step_000000000999.pt: checkpoint file is empty" in err
    assert "step_000000000600.pt: cannot read checkpoint" in err
    t = trainer(run, "resume=auto", "train.total_env_steps=800")
    t.train()
    assert [r["global_step"] for r in rows(run) if "event" not in r][-2:] == [600, 800]


def test_resume_auto_in_an_empty_folder_starts_a_new_run(tmp_path):
    assert find_resumable(tmp_path) is None
    t = trainer(tmp_path, "resume=auto")
    t.train()
    assert t.global_step == 600


def test_resume_auto_refuses_when_no_checkpoint_loads(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"resume=auto found checkpoints but none loads \(latest.pt\)"):
        trainer(tmp_path, "resume=auto").train()


def test_stale_temporary_files_are_removed_under_the_lock(tmp_path):
    (tmp_path / "checkpoints").mkdir(parents=True)
    stale = tmp_path / "checkpoints" / ".latest.pt.abc123.tmp"
    stale.write_bytes(b"half")
    trainer(tmp_path).train()
    assert not stale.exists() and no_temp_files(tmp_path)


def test_a_stop_request_finishes_the_iteration_then_checkpoints_and_logs(tmp_path):
    class Stop:
        requested = None

    stop = Stop()
    t = trainer(tmp_path, "train.total_env_steps=100000", "train.final_eval_episodes=2")
    real = t._learn

    def learn():
        real()
        if t.global_step >= 300:
            stop.requested = "SIGTERM"

    t._learn = learn
    with pytest.raises(StoppedBySignal) as e:
        t.train(stop)
    assert e.value.exit_status == 128 + signal.SIGTERM
    step = t.global_step
    assert f"stopped by SIGTERM at env step {step}" in str(e.value) and "resume=auto" in str(e.value)
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["counters"]["global_step"] == step
    logged = [r for r in rows(tmp_path) if "event" not in r]
    assert logged[-1]["global_step"] == step and not any("eval/mean_survival" in r for r in logged)


def test_graceful_stop_handler_first_flags_then_exits(monkeypatch, capsys):
    exits = []
    monkeypatch.setattr("townlet_agents.stopping.os._exit", exits.append)
    with GracefulStop() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        stop._handle(signal.SIGTERM, None)
        assert stop.requested == "SIGTERM" and exits == []
        stop._handle(signal.SIGINT, None)
        assert exits == [128 + signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is not stop._handle  # restored
    err = capsys.readouterr().err
    assert "SIGTERM received: finishing this iteration" in err and "SIGINT again: exiting now" in err


# ------------------------------------------------------------------ 8. the two defects

@pytest.mark.parametrize("mode, terminal_at_truncation", [("baseline_relative", True), ("survival", False)])
def test_truncation_is_stored_as_terminal_only_when_the_reward_settles_there(tmp_path, mode, terminal_at_truncation):
    """baseline_relative pays the episode's whole reward at its last step, truncation
    included, so nothing may be bootstrapped after it; survival pays per step and
    bootstraps at truncation (TRAPS 3)."""
    t = trainer(tmp_path, f"env.reward_mode={mode}", "train.total_env_steps=200")
    t.env.params = dataclasses.replace(t.env.params, max_steps=10)
    seen = []
    real = t.replay.add

    def add(action, reward, r_int, terminated, truncated, *rest):
        seen.append((terminated.clone(), truncated.clone()))
        return real(action, reward, r_int, terminated, truncated, *rest)

    t.replay.add = add
    t.train()
    truncations = [(term, trunc) for term, trunc in seen if trunc.any()]
    assert truncations
    for term, trunc in truncations:
        assert bool(term[trunc].all()) is terminal_at_truncation


def test_gpu_stage_events_are_kept_in_full_with_their_steps():
    """Several changes of one agent within one log interval all come back, in order, each
    at its own env step (the old path kept only each agent's latest)."""
    log = StageEventLog(capacity=10, device=torch.device("cpu"))

    class U:
        def __init__(self, change, frm):
            self.change, self.from_stage = torch.tensor(change), torch.tensor(frm)
            self.survival_rate = torch.tensor([0.9, 0.1, 0.5])
            self.learning_progress = self.progress_noise = torch.zeros(3)
            self.episodes_at_stage = torch.tensor([10, 12, 3])

    log.record(100, U([1, 0, 0], [0, 2, 1]), torch.zeros(3))
    log.record(200, U([1, -1, 0], [1, 2, 1]), torch.zeros(3))
    log.record(300, U([0, 0, 0], [2, 1, 1]), torch.zeros(3))
    events, dropped = log.drain()
    assert dropped == 0
    assert [(e["global_step"], e["agent"], e["from_stage"], e["to_stage"], e["reason"]) for e in events] == [
        (100, 0, 0, 1, "advance"), (200, 0, 1, 2, "advance"), (200, 1, 2, 1, "retreat")]
    assert log.drain() == ([], 0)


def test_gpu_stage_events_beyond_the_table_are_counted():
    log = StageEventLog(capacity=2, device=torch.device("cpu"))

    class U:
        change, from_stage = torch.ones(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
        survival_rate = learning_progress = progress_noise = torch.ones(3)
        episodes_at_stage = torch.full((3,), 10)

    log.record(5, U(), torch.zeros(3))
    events, dropped = log.drain()
    assert [e["agent"] for e in events] == [0, 1] and dropped == 1


def test_gpu_table_is_sized_so_shipped_settings_never_drop():
    cfg = compose("+experiment=pomdp")
    n, every, k = cfg.env.num_envs, cfg.train.log_every_env_steps, cfg.curriculum.min_episodes
    log = StageEventLog.for_run(n, every, k, torch.device("cpu"))
    assert log.capacity >= n + (every + n) // k


def test_dropped_gpu_events_are_reported_in_the_metrics(tmp_path):
    class Sink:
        def __init__(self):
            self.events = []

        def event(self, step, kind, data):
            self.events.append((step, kind, data))

    t = trainer(tmp_path)
    t.stage_events = StageEventLog(capacity=1, device=torch.device("cpu"))

    class U:
        change, from_stage = torch.ones(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)
        survival_rate = learning_progress = progress_noise = torch.ones(4)
        episodes_at_stage = torch.full((4,), 10)

    t.stage_events.record(7, U(), torch.zeros(4))
    sink = Sink()
    t._log_pending_changes(sink)
    assert [(s, k) for s, k, _ in sink.events] == [(7, "curriculum_stage_change"),
                                                   (0, "curriculum_stage_changes_dropped")]
    assert sink.events[1][2] == {"count": 3}


def test_a_schedulers_own_signal_stops_cleanly_then_reaches_its_handler(monkeypatch):
    """submitit installs a SIGUSR2 handler that requeues the job and exits; under
    GracefulStop that signal first stops the run cleanly, then hand_over() calls it."""
    called = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: called.append(signum))
    try:
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.requested == "SIGUSR2" and called == []  # not yet: the checkpoint comes first
        assert signal.getsignal(signal.SIGUSR2) is not stop._handle
        stop.hand_over()
        assert called == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
    with GracefulStop() as plain:  # no scheduler handler: SIGUSR2 is left alone
        assert signal.SIGUSR2 not in plain._previous
    plain.hand_over()  # nothing requested: nothing happens
    term = GracefulStop()
    term.requested = "SIGTERM"
    term.hand_over()  # SIGTERM is ours alone: no handler is called
