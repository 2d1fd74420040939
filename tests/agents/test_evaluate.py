"""Evaluation in-process: greedy episodes at full difficulty, JSON statistics, video,
and clear refusals (the CLI wrapper is covered in tests/test_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townlet_agents.checkpoint import CheckpointError
from townlet_agents.config import ConfigError, compose
from townlet_agents.evaluate import evaluate, main
from townlet_agents.trainer import Trainer
from townlet_env import AFFORDANCES, METERS

TINY = ["env.num_envs=4", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16", "agent.encoder_size=8",
        "agent.batch_size=4", "agent.learning_starts=200", "wandb.mode=disabled", "train.progress_bar=false",
        "train.total_env_steps=600", "train.log_every_env_steps=300"]


def _compose(name: str, overrides: list[str]):
    return compose(*overrides, config_name=name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    Trainer(_compose("config", ["+experiment=minimal", *TINY]), run).train()
    return run / "checkpoints" / "latest.pt"


def test_random_policy_needs_no_checkpoint():
    out = evaluate(_compose("evaluate", ["policy=random", "episodes=8", "env.level=L0_minimal"]))
    assert out["policy"] == "random" and out["episodes"] == 8 and out["level"] == "L0_minimal"
    assert out["layout_mode"] == "shared" and out["reward_mode"] == "survival"  # the pack's defaults
    assert 0 < out["min_survival"] <= out["median_survival"] <= out["max_survival"] <= out["step_limit"]
    assert set(out["ended_by"]) == {"step_limit", "energy", "health", "both"}  # townlet_agents.life_record
    assert sum(out["ended_by"].values()) == pytest.approx(1.0)
    assert set(out["meters_at_end"]) == set(METERS) and set(out["interacts_per_life"]) == set(AFFORDANCES)
    deaths = out["deaths"]  # random play on L0 dies in every town, broke or not
    assert deaths["count"] == 8 and set(deaths["meters_at_death"]) == set(METERS)
    assert 0.0 <= deaths["broke"] <= 1.0 and 0.0 <= deaths["gave_up"] <= 1.0


def test_oracle_policy_is_the_envs_baseline_and_outlives_random_play():
    oracle = evaluate(_compose("evaluate", ["policy=oracle", "episodes=4", "env.level=L0_5_dual_resource"]))
    randomly = evaluate(_compose("evaluate", ["policy=random", "episodes=4", "env.level=L0_5_dual_resource"]))
    assert oracle["policy"] == "oracle" and oracle["weights"] is None
    assert oracle["min_survival"] > randomly["max_survival"]


def test_a_bad_level_is_named_before_any_episode(tmp_path):
    with pytest.raises(ConfigError, match=r"^env\.level: unknown level 'L9'"):
        evaluate(_compose("evaluate", ["policy=random", "episodes=2", "env.level=L9"]))


def test_checkpoint_policy_uses_the_checkpoints_level_at_full_difficulty(checkpoint):
    out = evaluate(_compose("evaluate", [f"checkpoint={checkpoint}", "episodes=6"]))
    assert out["level"] == "L0_minimal" and out["episodes"] == 6
    assert out["layout_mode"] == "shared"  # resolved from the checkpoint's config, for baselines to match
    # L0 without income at multiplier 1.0: nobody reaches the 1000-step limit.
    assert out["reached_limit"] == 0.0 and out["max_survival"] < out["step_limit"]


def test_averaged_weights_act_when_the_checkpoint_has_them(checkpoint, tmp_path):
    import torch

    from townlet_agents.checkpoint import load_checkpoint, save_checkpoint

    plain = evaluate(_compose("evaluate", [f"checkpoint={checkpoint}", "episodes=6"]))
    assert plain["weights"] == "online"
    run = tmp_path / "run"
    Trainer(_compose("config", ["+experiment=minimal", *TINY, "agent.average_decay=0.5"]), run).train()
    path = run / "checkpoints" / "latest.pt"
    averaged = evaluate(_compose("evaluate", [f"checkpoint={path}", "episodes=6"]))
    assert averaged["weights"] == "averaged"
    # the same episodes again, with the averaged weights stored as the online network
    payload = load_checkpoint(path)
    assert any(not torch.equal(payload["online"][k], payload["averaged"][k]) for k in payload["online"])
    payload["online"] = payload.pop("averaged")
    save_checkpoint(tmp_path / "swapped.pt", payload)
    swapped = evaluate(_compose("evaluate", [f"checkpoint={tmp_path / 'swapped.pt'}", "episodes=6"]))
    assert swapped["weights"] == "online"
    assert {k: v for k, v in swapped.items() if k != "weights"} == {k: v for k, v in averaged.items() if k != "weights"}


def test_video_is_written(checkpoint, tmp_path):
    gif = tmp_path / "episode.gif"
    evaluate(_compose("evaluate", [f"checkpoint={checkpoint}", "episodes=2", f"video={gif}"]))
    assert gif.stat().st_size > 1000


def test_refusals_name_the_problem(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="checkpoint"):
        evaluate(_compose("evaluate", []))
    with pytest.raises(ConfigError, match="episodes"):
        evaluate(_compose("evaluate", ["policy=random", "episodes=0"]))
    with pytest.raises(CheckpointError):
        evaluate(_compose("evaluate", [f"checkpoint={checkpoint}", "episodes=2",
                                       "env.level=L2_partial_observability"]))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        evaluate(_compose("evaluate", [f"checkpoint={garbage}"]))


def test_main_prints_json_last_and_exits_2_on_user_error(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    main.__wrapped__(_compose("evaluate", ["policy=random", "episodes=3", "env.level=L0_minimal"]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["episodes"] == 3
    # How the lives went, readable: L0's random lives all die, and only its Bed can be used.
    assert lines[1].startswith("lives ended by: ") and "step limit" not in lines[1]
    assert lines[2].startswith("INTERACTs per life: ") and set(lines[2].split(": ")[1].split()[::2]) <= {"Bed", "nothing"}
    assert lines[3].startswith("3 deaths: ") and "broke" in lines[3] and "WAITs in a row" in lines[3]
    with pytest.raises(SystemExit) as e:
        main.__wrapped__(_compose("evaluate", ["policy=random", "episodes=-1"]))
    assert e.value.code == 2
    assert "episodes" in capsys.readouterr().err


def test_env_max_steps_measures_lives_past_the_levels_limit():
    """The oracle lives to L2's 500-step limit; with env.max_steps=1500 the same towns run
    three times as long, and the JSON reports the limit used."""
    base = ["policy=oracle", "episodes=4", "env.level=L2_partial_observability", "env.layout_mode=per_episode"]
    short = evaluate(_compose("evaluate", base))
    long = evaluate(_compose("evaluate", [*base, "env.max_steps=1500"]))
    assert short["step_limit"] == 500 and long["step_limit"] == 1500
    assert long["max_survival"] > 500 >= short["max_survival"]


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_env_max_steps_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        evaluate(_compose("evaluate", ["policy=random", "episodes=2", f"env.max_steps={bad}"]))


def test_evaluation_towns_come_from_the_held_out_pool(tmp_path):
    """Training draws new towns from the train pool, evaluation from the held-out one."""
    from townlet_agents.trainer import make_env

    out = evaluate(_compose("evaluate", ["policy=random", "episodes=2", "env.level=L2_partial_observability",
                                         "env.layout_mode=per_episode"]))
    assert out["layout_pool"] == "held_out"
    cfg = _compose("config", ["+experiment=pomdp_random_layout", *TINY])
    assert make_env(cfg, "cpu").pack.layout_pool == "train"
    fixed = evaluate(_compose("evaluate", ["policy=random", "episodes=2", "env.level=L2_partial_observability"]))
    assert fixed["layout_pool"] == "shared"


def test_a_landmarks_checkpoint_is_evaluated_and_watched_with_its_landmarks(tmp_path):
    """`env.landmarks` changes the observation: evaluation and the viewer rebuild the env
    the network was trained on from the checkpoint alone."""
    from townlet_agents.checkpoint import load_checkpoint
    from townlet_agents.viewer.sim import EnvChoice, NetworkPolicy, Simulation, make_towns

    run = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith("env.num_envs")]
    Trainer(_compose("config", ["+experiment=pomdp_random_layout", "env.landmarks=true", "env.num_envs=4", *tiny]),
            run).train()
    ckpt = run / "checkpoints" / "latest.pt"
    out = evaluate(_compose("evaluate", [f"checkpoint={ckpt}", "episodes=3", "env.max_steps=30"]))
    assert out["level"] == "L2_partial_observability" and out["episodes"] == 3
    payload = load_checkpoint(ckpt)
    env = make_towns(EnvChoice().with_defaults(payload["config"]["env"]), 2, "cpu")
    assert "landmarks" in env.obs_layout.names()
    sim = Simulation(env, NetworkPolicy(payload, env, ckpt.name), seed=0)
    sim.step()
    assert sim.frame()["towns"]
