"""The closing summary of a training run (townlet_agents.summary)."""

from __future__ import annotations

from pathlib import Path

import pytest

from townlet_agents import summary
from townlet_agents.config import compose
from townlet_agents.trainer import Trainer

TINY = ["+experiment=minimal", "env.num_envs=4", "agent.hidden_size=16", "agent.learning_starts=200",
        "train.total_env_steps=800", "train.progress_bar=false", "wandb.mode=disabled",
        "checkpoint.every_env_steps=1000000"]


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.mark.parametrize("final_eval", [0, 6])
def test_summary_reads_the_agent_against_random_and_oracle(tmp_path, final_eval, monkeypatch):
    trainer = Trainer(compose(*TINY, "train.summary_episodes=6", f"train.final_eval_episodes={final_eval}"), tmp_path)
    trainer.train()
    calls = []
    original = trainer.final_evaluation
    monkeypatch.setattr(trainer, "final_evaluation", lambda **kw: calls.append(kw) or original(**kw))
    s = summary.summarize(trainer, minutes=0.25)
    # the trainer's own final evaluation on as many towns is reused, not run twice
    assert calls == ([] if final_eval == 6 else [{"towns": 6}])
    assert (s.level, s.env_steps, s.episodes, s.seed, s.step_limit) == ("L0_minimal", 800, 6, 12345, 1000)
    assert s.weights == "online"  # minimal acts with its online weights
    # the baselines match what the evaluate command measures on the same towns
    assert s.oracle > s.random > 0
    text = s.text()
    assert "Greedy survival over 6 held-out towns (seed 12345" in text
    assert f"checkpoint={tmp_path}/checkpoints/latest.pt" in text
    assert "scripts/plot_run.py" in text  # from a checkout the plotting script is there


def test_summary_text_names_the_watch_command_only_when_the_viewer_is_installed(monkeypatch, tmp_path):
    s = summary.Summary("L2_partial_observability", 1000, 1.0, 10, 12345, 500, 300.0, "averaged", 120.0, 500.0,
                        Path(tmp_path))
    monkeypatch.setattr(summary.importlib.util, "find_spec", lambda name: object())
    assert f"python -m townlet_agents.watch run={tmp_path}" in s.text()
    monkeypatch.setattr(summary.importlib.util, "find_spec", lambda name: None)
    assert "townlet_agents.watch" not in s.text()
    assert "this agent (averaged weights)     300.0" in s.text()
