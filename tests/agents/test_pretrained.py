"""Pretrained agents shipped in the package: each loads as `checkpoint=pretrained:NAME`,
stays small, and still scores what its NAME.json (written by scripts/make_pretrained.py,
quoted in the docs) says on the same held-out towns."""

from __future__ import annotations

import json

import pytest

from townlet_agents.checkpoint import PRETRAINED_DIR, CheckpointError, resolve_checkpoint
from townlet_agents.config import compose
from townlet_agents.evaluate import evaluate

SHIPPED = sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def test_at_least_one_pretrained_agent_ships_with_its_record():
    assert SHIPPED
    for name in SHIPPED:
        assert (PRETRAINED_DIR / f"{name}.json").is_file(), name


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_agent_loads_and_scores_what_its_record_says(name):
    record = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())
    assert (PRETRAINED_DIR / f"{name}.pt").stat().st_size < 1_000_000
    out = evaluate(compose(f"checkpoint=pretrained:{name}", f"episodes={record['episodes']}",
                           f"seed={record['seed']}", "device=cpu", config_name="evaluate"))
    assert (out["level"], out["layout_mode"], out["weights"]) == (record["level"], record["layout_mode"], "averaged")
    assert "world_changes" not in out or not out["world_changes"]  # trained on today's world
    # Greedy evaluation is deterministic; the tolerance covers float differences between CPUs.
    assert out["mean_survival"] == pytest.approx(record["mean_survival"], rel=0.02)


def test_unknown_pretrained_name_lists_what_ships():
    with pytest.raises(CheckpointError, match="no pretrained checkpoint named 'nope'.*available: "):
        resolve_checkpoint("pretrained:nope")


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_weights_are_half_precision_and_a_resumed_run_trains_in_float32(name, tmp_path, monkeypatch):
    import torch

    from townlet_agents.checkpoint import load_checkpoint
    from townlet_agents.trainer import Trainer

    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = resolve_checkpoint(f"pretrained:{name}")
    payload = load_checkpoint(path)
    assert all(v.dtype == torch.float16 for v in payload["averaged"].values() if v.is_floating_point())
    steps = payload["counters"]["global_step"]
    experiment = json.loads((PRETRAINED_DIR / f"{name}.json").read_text()).get("experiment", name)
    t = Trainer(compose(f"+experiment={experiment}", f"resume={path}", "env.num_envs=4",
                        f"train.total_env_steps={steps + 8}", "train.final_eval_episodes=0",
                        "train.summary_episodes=0", "train.progress_bar=false", "wandb.mode=disabled"), tmp_path)
    t.train()
    for key, value in t.learner.online.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value.half(), payload["averaged"][key])
