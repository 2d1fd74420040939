"""Fixtures of the viewer tests: a tiny real training run (its folder and checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

# Sized so that some episodes finish (the run logs charts/episodic_length, the curve) and
# more than one periodic checkpoint exists. Online weights only: the tests compare the
# viewer's Q-values with the online network's (averaged weights have a test of their own).
TINY_RUN = ["+experiment=temporal", "agent.average_decay=0.0", "env.num_envs=8", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16",
            "agent.encoder_size=8", "agent.batch_size=4", "agent.learning_starts=400", "wandb.mode=disabled",
            "train.progress_bar=false", "train.total_env_steps=1600", "train.log_every_env_steps=200",
            "checkpoint.every_env_steps=400", "checkpoint.keep=2"]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    from townlet_agents.config import compose
    from townlet_agents.trainer import Trainer

    run = tmp_path_factory.mktemp("run")
    Trainer(compose(*TINY_RUN), run).train()
    return run


@pytest.fixture(scope="session")
def checkpoint(run_dir) -> Path:
    return run_dir / "checkpoints" / "latest.pt"


@pytest.fixture(scope="session")
def curve_steps(run_dir) -> list[int]:
    """The env steps of the run's rows that carry the viewer's curve metric (some do)."""
    import json

    from townlet_agents.viewer.follow import CURVE_METRIC

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["global_step"] for r in rows if isinstance(r.get(CURVE_METRIC), (int, float))]
    assert steps, "the tiny run finished no episode: make TINY_RUN longer"
    return steps
