"""The viewer's simulation: what a frame and the meta message hold, how towns step, die,
reset, and how a checkpoint's network acts (one step ahead, state carried per town)."""

from __future__ import annotations

import json

import pytest
import torch

from townlet_agents.checkpoint import CheckpointError, load_checkpoint
from townlet_agents.viewer.sim import (
    MAX_SHOWN,
    EnvChoice,
    NetworkPolicy,
    OracleAdapter,
    RandomPolicy,
    Simulation,
    WatchError,
    encode,
    make_towns,
)
from townlet_agents.checkpoint import CheckpointError, resolve_checkpoint
from townlet_env import ACTIONS, AFFORDANCES, METERS

CPU = torch.device("cpu")


def oracle_sim(towns: int = 4, level: str = "L3_temporal_mechanics") -> Simulation:
    env = make_towns(EnvChoice(level), towns, CPU)
    return Simulation(env, OracleAdapter(env), seed=3)


def network_sim(checkpoint, towns: int = 4) -> Simulation:
    payload = load_checkpoint(checkpoint)
    env = make_towns(EnvChoice().with_defaults(payload["config"]["env"]), towns, CPU)
    return Simulation(env, NetworkPolicy(payload, env, checkpoint.name), seed=3)


def test_meta_reads_the_vocabulary_and_hours_from_the_env():
    meta = oracle_sim().meta({"extra": 1})
    assert meta["type"] == "meta" and meta["extra"] == 1
    assert [a["name"] for a in meta["affordances"]] == list(AFFORDANCES)
    assert [m["name"] for m in meta["meters"]] == list(METERS) and meta["actions"] == list(ACTIONS)
    bar = meta["affordances"][AFFORDANCES.index("Bar")]
    assert bar["hours"] == "1111" + "0" * 14 + "111111"  # 18:00-04:00 (SPEC 7)
    assert bar["ticks"] == 2 and meta["affordances"][AFFORDANCES.index("Job")]["ticks"] == 4
    assert all(len(a["hours"]) == 24 and a["colour"].startswith("#") for a in meta["affordances"])
    bands = {m["name"]: m["critical"] for m in meta["meters"]}
    assert bands["money"] is None and bands["energy"] == pytest.approx(0.30)
    assert {m["name"] for m in meta["meters"] if m["lethal"]} == {"energy", "health"}
    assert meta["grid"] == 8 and meta["window"] == 2 and meta["temporal"] and meta["max_steps"] == 500
    assert meta["q"] is False and meta["policy"] == "oracle"
    json.loads(encode(meta))


def test_without_temporal_mechanics_everything_is_always_open():
    meta = oracle_sim(level="L1_full_observability").meta()
    assert not meta["temporal"] and meta["window"] == 0
    assert all(a["hours"] == "1" * 24 and a["ticks"] == 1 for a in meta["affordances"])


def test_a_frame_holds_every_shown_town_in_compact_columns():
    sim = oracle_sim(towns=5)
    frame = sim.frame()
    towns = frame["towns"]
    assert frame["type"] == "frame" and frame["tick"] == 0 and frame["mean_survival"] is None
    assert set(towns) == {"grid", "cell", "hour", "steps", "meters", "progress", "current", "action",
                          "next", "mask", "episode", "last", "cause"}  # no "q": the oracle has none
    assert all(len(column) == 5 for column in towns.values())
    grid = towns["grid"][0]
    assert len(grid) == 64 and sorted(c for c in grid if c != ".") == sorted("abcdefghijklmn")
    state = sim.env.state
    assert towns["cell"] == state.cell.tolist()
    assert towns["meters"][0] == [round(v * 1000) for v in state.meters[0].tolist()]
    assert all(len(m) == 6 and set(m) <= {"0", "1"} for m in towns["mask"]) and all(m[5] == "1" for m in towns["mask"])
    assert towns["action"] == [-1] * 5 and towns["last"] == [-1] * 5
    # 16 towns of L3 in a few kB: fine at 30 frames per second
    assert len(encode(oracle_sim(towns=16).frame())) < 6000


def test_steps_advance_the_towns_and_show_the_action_that_led_here():
    sim = oracle_sim()
    planned = sim.action.clone()
    sim.step()
    frame = sim.frame()
    assert frame["tick"] == 1 and frame["towns"]["steps"] == [1] * 4
    assert frame["towns"]["action"] == planned.tolist()
    assert frame["towns"]["next"] == sim.action.tolist()


@pytest.mark.parametrize("meter, cause", [("energy", "energy"), ("health", "health")])
def test_a_death_is_recorded_with_its_cause_and_the_town_starts_again(meter, cause):
    sim = oracle_sim()
    for _ in range(3):
        sim.step()
    sim.env.state.meters[1, METERS.index(meter)] = 0.0001
    sim.step()
    frame = sim.frame()
    towns = frame["towns"]
    assert towns["last"][1] == 4
    assert sim.meta()["causes"][towns["cause"][1]] == cause
    assert towns["steps"][1] == 0 and towns["episode"][1] == 1  # a new episode, shown at once
    assert towns["last"][0] == -1 and frame["finished"] == 1 and frame["mean_survival"] == 4.0


def test_reaching_the_step_limit_is_a_time_limit():
    sim = oracle_sim()
    sim.env.state.steps[2] = sim.env.params.max_steps - 1
    sim.step()
    assert sim.meta()["causes"][sim.frame()["towns"]["cause"][2]] == "time limit"


def test_reset_town_restarts_one_town_only():
    sim = oracle_sim()
    for _ in range(5):
        sim.step()
    sim.reset_town(2)
    towns = sim.frame()["towns"]
    assert towns["steps"] == [5, 5, 0, 5] and towns["episode"][2] == 1 and towns["action"][2] == -1
    with pytest.raises(ValueError, match="town must be in 0..3"):
        sim.reset_town(4)


def test_frames_show_at_most_max_shown_towns():
    sim = oracle_sim(towns=MAX_SHOWN + 3)
    assert sim.meta()["shown"] == MAX_SHOWN and len(sim.frame()["towns"]["grid"]) == MAX_SHOWN


def test_random_policy_plays_only_allowed_actions():
    env = make_towns(EnvChoice("L0_minimal"), 32, CPU)
    sim = Simulation(env, RandomPolicy(env, 0))
    for _ in range(20):
        assert bool(sim.mask.gather(1, sim.action[:, None]).all())
        sim.step()
    assert sim.meta()["policy"] == "random"


def test_network_policy_shows_q_values_of_the_state_on_screen(checkpoint):
    sim = network_sim(checkpoint)
    net = sim.policy.net
    state = net.initial_state(4, CPU)
    for _ in range(6):  # the same unroll by hand: the viewer steps the LSTM once per env step
        with torch.no_grad():
            q, state = net.step(sim.obs, state)
        assert torch.allclose(sim.q, q, atol=1e-6)
        greedy = sim.q.masked_fill(~sim.mask, float("-inf")).argmax(-1)
        assert torch.equal(sim.action, greedy)
        frame = sim.frame()
        assert frame["towns"]["q"] == [[round(v, 4) for v in row] for row in sim.q.double().tolist()]
        sim.step()
    assert sim.meta()["q"] is True and "online weights, 1,600 env steps" in sim.meta()["policy"]


def test_network_state_is_forgotten_when_a_town_restarts(checkpoint):
    sim = network_sim(checkpoint)
    for _ in range(3):
        sim.step()
    sim.reset_town(1)
    h, c = sim.policy.carry
    assert h[1].abs().sum() == 0 and c[1].abs().sum() == 0 and h[0].abs().sum() > 0
    fresh = sim.policy.net.step(sim.obs[1:2], sim.policy.net.initial_state(1, CPU))[0]
    assert torch.allclose(sim.q[1:2], fresh)


def test_a_checkpoint_of_another_layout_is_refused(checkpoint):
    payload = load_checkpoint(checkpoint)
    env = make_towns(EnvChoice("L1_full_observability"), 2, CPU)
    with pytest.raises(CheckpointError, match="different observation layout"):
        NetworkPolicy(payload, env, "x.pt")
    env = make_towns(EnvChoice("L3_temporal_mechanics"), 2, CPU)
    payload["online"] = {k: v[..., :1] for k, v in payload["online"].items()}
    with pytest.raises(CheckpointError, match="network weights do not fit"):
        NetworkPolicy(payload, env, "x.pt")


def test_averaged_weights_act_when_present(checkpoint):
    payload = load_checkpoint(checkpoint)
    payload["averaged"] = payload["online"]
    env = make_towns(EnvChoice("L3_temporal_mechanics"), 2, CPU)
    assert NetworkPolicy(payload, env, "x.pt").label.startswith("x.pt (averaged weights")


def test_unknown_levels_and_pretrained_names_are_one_line_errors(tmp_path):
    with pytest.raises(WatchError, match="env: unknown level 'L9'"):
        make_towns(EnvChoice("L9"), 2, CPU)
    with pytest.raises(CheckpointError, match="no pretrained checkpoint named 'nope'"):
        resolve_checkpoint("pretrained:nope")
    assert resolve_checkpoint(str(tmp_path / "a.pt")) == tmp_path / "a.pt"


def test_pretrained_names_resolve_to_checkpoints_shipped_in_the_package(tmp_path, monkeypatch):
    import townlet_agents.checkpoint as checkpoint

    (tmp_path / "pomdp.pt").write_bytes(b"")
    monkeypatch.setattr(checkpoint, "PRETRAINED_DIR", tmp_path)
    assert resolve_checkpoint("pretrained:pomdp") == tmp_path / "pomdp.pt"
    with pytest.raises(CheckpointError, match=r"available: pomdp\)"):
        resolve_checkpoint("pretrained:temporal")
