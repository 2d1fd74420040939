"""scripts/probe_long_lives.py: plays held-out towns with a checkpoint, names the weights
that acted, and reads the same lives as `evaluate` when it adds nothing."""

from __future__ import annotations

import pytest

from townlet_agents.config import compose
from townlet_agents.evaluate import evaluate
from townlet_agents.trainer import Trainer

TINY = ["+experiment=minimal", "env.num_envs=4", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16",
        "agent.encoder_size=8", "agent.batch_size=4", "agent.learning_starts=200", "wandb.mode=disabled",
        "train.progress_bar=false", "train.total_env_steps=600", "train.log_every_env_steps=300"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    Trainer(compose(*TINY, "agent.average_decay=0.99"), run).train()
    return str(run / "checkpoints" / "latest.pt")


def test_greedy_probe_plays_the_lives_evaluate_plays(load_script, checkpoint, capsys):
    probe = load_script("probe_long_lives")
    out = probe.main([checkpoint, "--steps", "500", "--towns", "6"])
    assert '"mean_survival"' in capsys.readouterr().out
    reference = evaluate(compose(f"checkpoint={checkpoint}", "episodes=6", config_name="evaluate"))
    assert out["weights"] == reference["weights"] == "averaged"
    assert out["mean_survival"] == pytest.approx(reference["mean_survival"], abs=0.05)
    assert set(out["alive_at"]) == {500} and 0.0 <= out["alive_at"][500] <= 1.0


def test_probe_names_the_weights_that_acted(load_script, checkpoint):
    probe = load_script("probe_long_lives")
    out = probe.main([checkpoint, "--steps", "60", "--towns", "3", "--weights", "online", "--epsilon", "0.5",
                      "--reset-every", "20"])
    assert out["weights"] == "online" and out["alive_at"] == {}
    assert 0 < out["mean_survival"] <= 60
