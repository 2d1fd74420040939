"""The fair world (docs/world.md, "Affordances"): costs of a ticked interaction are never deferred.

An earlier table put the costs of FastFood, Bar, Job, Labor, Gym and Park in the completion
bonus, so leaving one tick early kept 60% of a Job's pay at no energy or health cost. Now
every negative effect is charged per tick in equal parts and the bonus holds gains only:
after k of n ticks an agent has paid exactly k/n of every toll of the full interaction.

Pinned three ways:
  - on the loaded shipped packs (every level): no bonus has a negative entry, the toll paid
    after k ticks is k/n of the full interaction's (per_tick * n + bonus), and a full
    interaction's toll equals the instant one's;
  - through the env: k ticks then WAIT, against hand computation (Job at k = 3 worked
    out in literals), and for every affordance and every k < n against a twin town that
    WAITs instead (exhaustively, and as a hypothesis property over start meters and the
    difficulty multiplier);
  - the pack loader refuses a ticked bonus with a negative entry, naming the file and key,
    unless that ticked table sets `deferred_costs = true` (a boolean).
And INTERACT's energy cost equals WAIT's (docs/world.md, "Actions"), so a press that cannot be paid is
exactly a WAIT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from env_testkit import (
    INTERACT, INTERACT_COST, L3, M, PACKS_DIR, TICKED, TOL, WAIT, WAIT_COST, World, as_vector, meters, settle,
    vec, write_pack,
)
from townlet_env import AFFORDANCES, LEVELS, METERS, PackError, load_pack

#: Every (affordance, k) with 1 <= k < ticks: leaving after k ticks.
EARLY_EXITS = [(name, k) for name in AFFORDANCES for k in range(1, TICKED[name].ticks)]


def full_toll(per_tick: dict, bonus: dict, ticks: int) -> dict[str, float]:
    """Meters that a full interaction costs (negative total), and by how much."""
    total = {m: per_tick.get(m, 0.0) * ticks + bonus.get(m, 0.0) for m in METERS}
    return {m: v for m, v in total.items() if v < 0}


# --- the loaded shipped packs ------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_shipped_bonus_holds_gains_only(level):
    for a in load_pack(level).affordances:
        assert all(v >= 0 for v in a.bonus.values()), f"{level} {a.name} bonus {a.bonus}"


@pytest.mark.parametrize("level", LEVELS)
def test_shipped_toll_after_k_ticks_is_k_over_n_of_the_full_toll(level):
    """For every ticked affordance, every k < ticks and every meter the full interaction
    costs: k ticks have charged k/ticks of it. (The price is per tick, so it is charged
    the same way.)"""
    seen = set()
    for a in load_pack(level).affordances:
        toll = full_toll(a.per_tick, a.bonus, a.ticks)
        if toll:
            seen.add(a.name)
        for k in range(1, a.ticks):
            for m, total in toll.items():
                paid = k * a.per_tick.get(m, 0.0)
                assert paid == pytest.approx(k / a.ticks * total, abs=1e-12), (level, a.name, k, m)
    # the six the old table got wrong are among those with a toll at all
    assert {"FastFood", "Bar", "Job", "Labor", "Gym", "Park"} <= seen


@pytest.mark.parametrize("level", LEVELS)
def test_shipped_full_ticked_toll_equals_the_instant_toll(level):
    """Splitting an interaction into ticks moves no cost: a full ticked interaction costs
    what the instant one does on every meter (Gym's .02667 x 3 = .08001 vs .08: 1e-4)."""
    for a in load_pack(level).affordances:
        toll = full_toll(a.per_tick, a.bonus, a.ticks)
        instant = {m: v for m, v in a.effects.items() if v < 0}
        assert toll.keys() == instant.keys(), a.name
        for m in toll:
            assert toll[m] == pytest.approx(instant[m], abs=1e-4), (a.name, m)


@pytest.mark.parametrize("level", LEVELS)
def test_shipped_interact_energy_equals_wait(level):
    """INTERACT's default energy cost is WAIT's, .001: standing at a counter is never
    cheaper than standing still."""
    pack = load_pack(level)
    assert pack.interact_cost == pack.wait_cost == {"energy": 0.001}
    assert INTERACT_COST == WAIT_COST  # and the tables transcribed in conftest agree


# --- through the env --------------------------------------------------------------------------

def test_job_left_after_three_ticks_worked_example(backend):
    """Job (4 ticks, free), 3 ticks from 8:00 then WAIT, all meters .6, multiplier 1.

    Each tick: money +.05625, energy -.0375, health -.0075, and the press's energy .001.
    The WAIT costs .001 energy and forfeits the bonus (money +.05625, social +.02).
      energy  .6 - 3 (.0375 + .001) - .001 - 4 x .005 depletion = .4635
              (the 3 x .0375 = .1125 toll is paid; the old table charged none of it: .576)
      money   .6 + 3 x .05625 = .76875
      health  .6 - 3 x .0075 - modulation .001 (.5 + 2.5 (1 - f)) with f = .598, .596, .594,
              .592 after depletion: .001505 + .00151 + .001515 + .00152 = .00605 -> .57145
      hygiene .6 - 4 x .003 = .588, satiation .6 - 4 x .004 = .584, mood .6 - 4 x .001 = .596,
      social .6 - 4 x .006 = .576, fitness .6 - 4 x .002 = .592
    """
    w = World(L3, backend)
    w.place("Job")
    w.set(hour=8)
    w.set_meters(**meters(0.6))
    for k in (1, 2, 3):
        w.step(INTERACT)
        assert w.field("progress")[0] == k
    r = w.step(WAIT)
    assert not r.masked[0] and w.field("progress")[0] == 0
    expected = dict(energy=0.4635, hygiene=0.588, satiation=0.584, money=0.76875, mood=0.596,
                    social=0.576, health=0.57145, fitness=0.592)
    np.testing.assert_allclose(w.meters()[0], as_vector(expected), atol=TOL)


def start_for(name: str) -> dict[str, float]:
    """All meters .5 ($50), energy .2 for the beds so their gains never clamp."""
    return meters(0.5, energy=0.2) if name in ("Bed", "LuxuryBed") else meters(0.5)


@pytest.mark.parametrize("name,k", EARLY_EXITS)
def test_leaving_after_k_ticks_matches_hand_computation(name, k, backend):
    """k paid ticks (press energy, per-tick effects with their costs, price; no bonus), then
    WAIT (.001 energy), each followed by steps 2-5 of "The step" (`settle`)."""
    t = TICKED[name]
    w = World(L3, backend)
    w.place(name)
    w.set(hour=t.hours[0] % 24)
    w.set_meters(**start_for(name))
    m = as_vector(start_for(name))
    tick = vec(**t.per_tick) - vec(**INTERACT_COST) - vec(money=t.price / 100.0)
    for _ in range(k):
        w.step(INTERACT)
        m = settle(np.clip(m + tick, 0.0, 1.0))
    w.step(WAIT)
    m = settle(np.clip(m - vec(**WAIT_COST), 0.0, 1.0))
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    assert w.field("progress")[0] == 0


def twin_difference(name: str, k: int, start: dict[str, float], multiplier: float = 1.0) -> np.ndarray:
    """Meters of a town that presses k times then WAITs, minus those of a twin town that
    WAITs k + 1 times from the same state (vector env, two towns)."""
    w = World(L3, "torch", n=2)
    w.place(name)
    w.set(hour=TICKED[name].hours[0] % 24)
    w.set_meters(**start)
    w.set_difficulty([multiplier, multiplier])
    for _ in range(k):
        w.step(INTERACT, WAIT)
    w.step(WAIT, WAIT)
    assert list(w.field("progress")) == [0, 0]
    got = w.meters()
    return got[0] - got[1]


def expected_twin_difference(name: str, k: int) -> np.ndarray:
    """By hand: the press costs what the WAIT does, depletion is the same in both towns, so
    the towns differ by k per-tick effects and k prices and by nothing from the bonus; on
    health also by the fitness modulation, .001 x 2.5 x the fitness gap after each step
    (min(t, k) x per-tick fitness after step t)."""
    t = TICKED[name]
    d = k * vec(**t.per_tick) - k * vec(money=t.price / 100.0)
    fitness = t.per_tick.get("fitness", 0.0)
    d[M["health"]] += sum(0.001 * 2.5 * min(s, k) * fitness for s in range(1, k + 2))
    return d


def assert_proportional_toll(name: str, k: int, diff: np.ndarray) -> None:
    """Every meter the full interaction costs: k ticks paid k/ticks of it (vs the twin)."""
    t = TICKED[name]
    for m, total in full_toll(t.per_tick, t.bonus, t.ticks).items():
        if m == "health":  # checked with its modulation term in the full-vector comparison
            continue
        assert diff[M[m]] == pytest.approx(k / t.ticks * total, abs=TOL), (name, k, m)


@pytest.mark.parametrize("name,k", EARLY_EXITS)
def test_leaving_early_pays_the_proportional_toll(name, k):
    diff = twin_difference(name, k, start_for(name))
    np.testing.assert_allclose(diff, expected_twin_difference(name, k), atol=TOL)
    assert_proportional_toll(name, k, diff)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(exit_=st.sampled_from(EARLY_EXITS),
       level=st.floats(0.45, 0.6), energy=st.floats(0.2, 0.4), money=st.floats(0.3, 0.6),
       multiplier=st.floats(0.0, 1.0))
def test_property_no_gain_without_its_proportional_toll(exit_, level, energy, money, multiplier):
    """Whatever the start (meters kept clear of clamps and cascades) and the difficulty,
    leaving after k < ticks ticks differs from waiting by exactly k/ticks of every toll."""
    name, k = exit_
    start = meters(level, energy=energy, money=money)
    diff = twin_difference(name, k, start, multiplier)
    np.testing.assert_allclose(diff, expected_twin_difference(name, k), atol=2e-6)
    assert_proportional_toll(name, k, diff)


@pytest.mark.parametrize("level", LEVELS)
def test_unpaid_press_is_exactly_a_wait(level):
    """Broke on the Bed (deployed and open on every level): the press is not paid and,
    INTERACT costing WAIT's energy, leaves the town exactly where a WAIT would."""
    w = World(level, "torch", n=2)
    w.place("Bed")
    w.set_meters(**meters(0.5, money=0.0))
    r = w.step(INTERACT, WAIT)
    assert not r.masked.any()
    got = w.meters()
    np.testing.assert_array_equal(got[0], got[1])
    assert abs(got[0, M["energy"]] - (0.5 - 0.001 - 0.005)) < TOL


# --- the pack check ---------------------------------------------------------------------------

#: The old (unfair) Job table: the toll in the completion bonus. A level's meter map merges
#: over the base's key by key, so the base's per-tick costs are zeroed explicitly.
DEFERRED_JOB = """
[affordances.Job.ticked]
per_tick = {{ money = 0.05625, energy = 0.0, health = 0.0 }}
bonus = {{ money = 0.05625, energy = -0.15, social = 0.02, health = -0.03 }}
{extra}"""


def test_negative_bonus_is_refused_naming_file_and_key(tmp_path):
    path = write_pack(tmp_path, {}, DEFERRED_JOB.format(extra=""))
    with pytest.raises(PackError) as e:
        load_pack(path)
    msg = str(e.value)
    assert path in msg, msg
    assert "'affordances.Job.ticked.bonus.energy'" in msg, msg  # the first cost in the table
    assert "deferred_costs" in msg, msg  # and the message says how to opt in


def test_any_negative_bonus_meter_is_named(tmp_path):
    path = write_pack(tmp_path, {}, "[affordances.Gym.ticked]\nbonus = { fitness = 0.075, hygiene = -0.01 }\n")
    with pytest.raises(PackError, match=r"'affordances\.Gym\.ticked\.bonus\.hygiene'"):
        load_pack(path)


def test_negative_bonus_in_a_base_file_is_refused_naming_the_base(tmp_path):
    """The check runs on each file on its own: a level over a base holding a deferred cost
    names the base file."""
    old = "bonus = { money = 0.05625, social = 0.02 }"  # Job's ticked bonus
    town = (PACKS_DIR / "town.toml").read_text()
    assert town.count(old) == 1
    base = tmp_path / "my_town.toml"
    base.write_text(town.replace(old, "bonus = { money = 0.05625, social = 0.02, health = -0.03 }"))
    level = Path(write_pack(tmp_path, {}))
    lines = level.read_text().splitlines(keepends=True)
    assert lines[0].startswith("base = ")
    level.write_text('base = "my_town.toml"\n' + "".join(lines[1:]))
    with pytest.raises(PackError) as e:
        load_pack(str(level))
    msg = str(e.value)
    assert str(base) in msg and "'affordances.Job.ticked.bonus.health'" in msg, msg


def test_deferred_costs_true_loads_and_defers(tmp_path):
    """With `deferred_costs = true` the old table loads as written, and the env honours it:
    leaving the Job after 3 ticks pays no energy toll (energy .6 - 3 x .001 press - .001
    WAIT - 4 x .005 = .576), which is why a pack must ask for it on purpose."""
    path = write_pack(tmp_path, {"temporal_mechanics": True}, DEFERRED_JOB.format(extra="deferred_costs = true\n"))
    job = load_pack(path).affordances[AFFORDANCES.index("Job")]
    assert job.bonus == {"money": 0.05625, "energy": -0.15, "social": 0.02, "health": -0.03}
    assert job.per_tick == {"money": 0.05625, "energy": 0.0, "health": 0.0}
    w = World(path)
    w.place("Job")
    w.set(hour=8)
    w.set_meters(**meters(0.6))
    for _ in range(3):
        w.step(INTERACT)
    w.step(WAIT)
    assert abs(w.meters()[0, M["energy"]] - 0.576) < TOL
    assert abs(w.meters()[0, M["money"]] - (0.6 + 3 * 0.05625)) < TOL


@pytest.mark.parametrize("value", ['"yes"', "1", "0", '"true"'])
def test_deferred_costs_must_be_a_boolean(tmp_path, value):
    path = write_pack(tmp_path, {}, DEFERRED_JOB.format(extra=f"deferred_costs = {value}\n"))
    with pytest.raises(PackError) as e:
        load_pack(path)
    msg = str(e.value)
    assert path in msg and "'affordances.Job.ticked.deferred_costs'" in msg, msg
    assert "expected true or false" in msg, msg


def test_deferred_costs_false_is_the_default(tmp_path):
    path = write_pack(tmp_path, {}, DEFERRED_JOB.format(extra="deferred_costs = false\n"))
    with pytest.raises(PackError, match=r"'affordances\.Job\.ticked\.bonus\.energy'"):
        load_pack(path)
