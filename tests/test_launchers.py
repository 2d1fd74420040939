"""Sweeps on the engines users grow into, run for real (issue 13): the same 2-job multirun
through hydra-submitit-launcher's local executor (the code path SLURM jobs take) and
through hydra-ray-launcher on a local Ray cluster. Each job must get its own run folder,
checkpoint, metrics and wandb run. Skipped where the plugin is not installed
(`pip install "townlet[sweeps]"`; CI installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["seed=0,1", "+experiment=minimal", "env.num_envs=4", "train.total_env_steps=1000",
        "agent.learning_starts=500", "agent.hidden_size=16", "train.progress_bar=false",
        "train.summary_episodes=0"]


def sweep(tmp_path: Path, *launcher: str) -> Path:
    out = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([sys.executable, "-m", "townlet_agents.train", "-m", *launcher, *TINY,
                           f"hydra.sweep.dir={out}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]
    return out


def assert_one_complete_run_per_job(out: Path) -> None:
    jobs = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    seeds = []
    for job in jobs:
        run = out / job
        saved = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
        assert saved["counters"]["global_step"] == 1000
        seeds.append(saved["config"]["seed"])
        assert (run / "metrics.jsonl").read_text().strip()
        assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one wandb run per job
    assert seeds == [0, 1]


def test_submitit_local_executor_runs_the_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = sweep(tmp_path, "hydra/launcher=townlet_submitit_local")
    assert_one_complete_run_per_job(out)
    assert (out / ".submitit").is_dir()  # went through submitit, not the basic launcher


def test_ray_launcher_runs_the_sweep_on_a_local_cluster(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    # townlet_ray reserves a GPU per job for clusters; this machine's local Ray has CPUs only
    out = sweep(tmp_path, "hydra/launcher=townlet_ray", "hydra.launcher.ray.remote.num_gpus=0",
                "hydra.launcher.ray.remote.num_cpus=1")
    assert_one_complete_run_per_job(out)
