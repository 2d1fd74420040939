"""The command-line tools as a user runs them: train -> checkpoint -> resume -> evaluate,
user mistakes reported without a traceback, and a Hydra multirun sweep.

Each test starts real subprocesses (a few seconds each); budgets are tiny.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["+experiment=minimal", "env.num_envs=4", "train.total_env_steps=3000", "agent.learning_starts=500",
        "agent.hidden_size=16", "train.progress_bar=false", "train.log_every_env_steps=1000",
        "checkpoint.every_env_steps=1000", "checkpoint.keep=2",
        "train.summary_episodes=0"]  # the closing summary: tests/agents/test_summary.py, tests/test_wheel.py


def run(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def train(*args: str) -> subprocess.CompletedProcess:
    return run("townlet_agents.train", *args)


def evaluate(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run("townlet_agents.evaluate", f"hydra.run.dir={run_dir}", *args)


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "event" not in r]


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, \
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"


def assert_user_error(proc: subprocess.CompletedProcess, *named: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    for text in named:
        assert text in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("first")
    assert_ok(train(*TINY, f"hydra.run.dir={run_dir}"))
    return run_dir


def test_train_writes_checkpoints_metrics_and_an_offline_wandb_run(trained):
    checkpoints = sorted(p.name for p in (trained / "checkpoints").glob("*.pt"))
    # keep=2 periodic checkpoints (the oldest pruned) plus latest.pt
    assert checkpoints == ["latest.pt", "step_000000002000.pt", "step_000000003000.pt"]
    assert [r["global_step"] for r in metrics(trained)] == [1000, 2000, 3000]
    assert all("charts/SPS" in r for r in metrics(trained))
    assert list((trained / "wandb").glob("offline-run-*"))
    saved = torch.load(trained / "checkpoints" / "latest.pt", weights_only=True)
    assert saved["version"] == 3 and saved["counters"]["global_step"] == 3000


def test_resume_continues_from_the_checkpoint_then_evaluates(trained, tmp_path):
    resumed = tmp_path / "resumed"
    latest = trained / "checkpoints" / "latest.pt"
    before = torch.load(latest, weights_only=True)["counters"]
    assert_ok(train(*TINY, "train.total_env_steps=5000", f"resume={latest}", f"hydra.run.dir={resumed}"))
    assert [r["global_step"] for r in metrics(resumed)] == [4000, 5000]  # not 1000, 2000: it continued
    after = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=True)["counters"]
    assert after["global_step"] == 5000
    assert after["updates"] > before["updates"] and after["episodes"] >= before["episodes"]

    proc = evaluate(tmp_path / "eval", f"checkpoint={resumed / 'checkpoints' / 'latest.pt'}", "episodes=5")
    assert_ok(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 5 and result["level"] == "L0_minimal"
    assert 0 < result["median_survival"] <= result["step_limit"]
    assert result["mean_survival"] > 0


def test_evaluate_a_random_policy_without_a_checkpoint(tmp_path):
    proc = evaluate(tmp_path, "policy=random", "episodes=3", "env.level=L0_minimal")
    assert_ok(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["policy"] == "random" and result["episodes"] == 3
    assert {"mean_survival", "median_survival"} <= result.keys()


def test_a_misspelt_key_exits_with_its_name_and_no_traceback(tmp_path):
    assert_user_error(train("+experiment=minimal", "agent.lrr=1", f"hydra.run.dir={tmp_path}"), "agent.lrr")
    assert_user_error(train(*TINY, "+agent.foo=1", f"hydra.run.dir={tmp_path}"), "agent.foo")


def test_a_garbage_checkpoint_is_refused_without_a_traceback(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    assert_user_error(train(*TINY, f"resume={garbage}", f"hydra.run.dir={tmp_path / 'run'}"), str(garbage))
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing written over a bad resume
    assert_user_error(evaluate(tmp_path / "eval", f"checkpoint={garbage}"), str(garbage))


def test_multirun_sweep_gives_one_complete_run_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "seed=0,1", *TINY, "train.total_env_steps=1000", f"hydra.sweep.dir={sweep}")
    assert_ok(proc)
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    for job in jobs:
        assert (sweep / job / "checkpoints" / "latest.pt").is_file()
        assert metrics(sweep / job)[-1]["global_step"] == 1000
        assert list((sweep / job / "wandb").glob("offline-run-*"))
    seeds = [torch.load(sweep / j / "checkpoints" / "latest.pt", weights_only=True)["config"]["seed"] for j in jobs]
    assert seeds == [0, 1]


# ------------------------------------------------------------------ reliability (issue 4)

@pytest.mark.parametrize("override, named", [
    ("env.level=L9", "env.level"),            # unknown level: refused at composition
    ("+experiment=nope", "experiment/nope"),  # unknown experiment
    ("agent.lr=abc", "agent.lr"),             # wrong type
    ("agent.gamma=0", "agent.gamma"),         # out of range: refused before training
    ("device=bogus", "device"),               # unknown device string
])
def test_bad_values_fail_before_training_naming_the_key(tmp_path, override, named):
    assert_user_error(train(*TINY, override, f"hydra.run.dir={tmp_path}"), named)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_without_cuda_is_refused(tmp_path):
    assert_user_error(train(*TINY, "device=cuda", f"hydra.run.dir={tmp_path}"), "no CUDA device")


def test_newer_and_misfitting_checkpoints_are_refused(trained, tmp_path):
    payload = torch.load(trained / "checkpoints" / "latest.pt", weights_only=True)
    payload["version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    assert_user_error(train(*TINY, f"resume={newer}", f"hydra.run.dir={tmp_path / 'a'}"), "newer")
    assert_user_error(evaluate(tmp_path / "e", f"checkpoint={newer}"), "newer")
    latest = trained / "checkpoints" / "latest.pt"
    assert_user_error(train(*TINY, "agent.hidden_size=32", f"resume={latest}", f"hydra.run.dir={tmp_path / 'b'}"),
                      "does not fit")


def test_kill_9_then_resume_continues_the_run(tmp_path):
    """SIGKILL at an arbitrary moment: the newest checkpoint still loads, and resuming it
    continues counters, curriculum and epsilon from there."""
    import signal
    import time

    from townlet_agents.checkpoint import load_checkpoint

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="disabled", PYTHONPATH=str(REPO))
    run_dir = tmp_path / "killed"
    args = [*TINY, "train.total_env_steps=100000000", "checkpoint.every_env_steps=400", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "townlet_agents.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and len(list((run_dir / "checkpoints").glob("step_*.pt"))) < 2:
        time.sleep(0.2)
    time.sleep(0.37)  # somewhere between checkpoints, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    saved = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    step = saved["counters"]["global_step"]
    assert step >= 800
    resumed_dir = tmp_path / "resumed"
    assert_ok(train(*TINY, f"train.total_env_steps={step + 1000}", f"resume={run_dir / 'checkpoints' / 'latest.pt'}",
                    f"hydra.run.dir={resumed_dir}"))
    final = load_checkpoint(resumed_dir / "checkpoints" / "latest.pt")
    assert final["counters"]["global_step"] >= step + 1000
    assert final["counters"]["updates"] > saved["counters"]["updates"]
    assert final["counters"]["episodes"] >= saved["counters"]["episodes"]
    assert metrics(resumed_dir)[0]["global_step"] > step
    # Epsilon carries on down the schedule (minimal: 1.0 -> 0.01 over 60k env steps).
    first = metrics(resumed_dir)[0]
    assert first["charts/epsilon"] == pytest.approx(1.0 - 0.99 * (first["global_step"] - 4) / 60000, abs=1e-4)


def test_a_bad_pack_file_is_one_line_naming_file_and_key(tmp_path):
    pack = tmp_path / "bad.toml"
    pack.write_text('base = "town.toml"\n[level]\ngrid_size = "big"\n')
    proc = train("+experiment=minimal", f"env.level={pack}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_user_error(proc, str(pack), "level.grid_size")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
