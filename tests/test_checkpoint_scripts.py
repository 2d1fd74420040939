"""The scripts that replay a run's checkpoints on held-out towns: `probe_long_lives.py` and
`snapshot_eval.py` name the weights that acted and read the same lives as `evaluate` when
they add nothing of their own."""

from __future__ import annotations

import pytest

from townlet_agents.config import compose
from townlet_agents.evaluate import evaluate
from townlet_agents.trainer import Trainer

TINY = ["+experiment=minimal", "env.num_envs=4", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16",
        "agent.encoder_size=8", "agent.batch_size=4", "agent.learning_starts=200", "wandb.mode=disabled",
        "train.progress_bar=false", "train.total_env_steps=600", "train.log_every_env_steps=300"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    Trainer(compose(*TINY, "agent.average_decay=0.99", "checkpoint.every_env_steps=300"), run).train()
    return run


@pytest.fixture(scope="module")
def checkpoint(run):
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


def test_snapshot_eval_scores_both_weights_of_every_checkpoint(load_script, run, checkpoint, capsys):
    snapshots = load_script("snapshot_eval")
    scores = snapshots.main([str(run), "--episodes", "6"])
    steps = sorted((run / "checkpoints").glob("step_*.pt"))
    assert len(steps) >= 2 and all(len(column) == len(steps) for column in scores.values())
    assert "averaged:" in capsys.readouterr().out
    averaged = evaluate(compose(f"checkpoint={steps[-1]}", "episodes=6", config_name="evaluate"))
    online = load_script("probe_long_lives").main([str(steps[-1]), "--steps", "500", "--towns", "6",
                                                   "--weights", "online"])
    assert scores["averaged"][-1] == pytest.approx(averaged["mean_survival"], abs=0.05)
    assert scores["online"][-1] == pytest.approx(online["mean_survival"], abs=0.05)


def test_snapshot_eval_refuses_a_run_without_checkpoints(load_script, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoints"):
        load_script("snapshot_eval").main([str(tmp_path)])
