"""The evaluation's account of how lives went: INTERACTs per affordance, meters on the last
step and what ended each life, pinned on hand-built steps and on real episodes."""

from __future__ import annotations

import pytest
import torch

from townlet_agents.episodes import run_episodes
from townlet_agents.life_record import GAVE_UP_WAITS, LifeRecord, affordance_codes, cheapest_rescue
from townlet_env import AFFORDANCES, METERS, OraclePolicy, TownletVectorEnv, load_pack
from townlet_env.layout import ObsLayout
from townlet_env.schema import INTERACT, NUM_AFFORDANCES, WAIT

BED, SHOWER, PARK = (AFFORDANCES.index(a) for a in ("Bed", "Shower", "Park"))
NONE = NUM_AFFORDANCES


def _obs(layout, here: list[int], meters: list[list[float]] | None = None) -> torch.Tensor:
    """Observations of len(here) towns standing on those codes, with those meters (else 0.5)."""
    n = len(here)
    obs = torch.zeros(n, layout.size)
    part = layout["affordance"]
    if layout.one_hot:
        obs[torch.arange(n), part.start + torch.tensor(here)] = 1.0
    else:
        obs[:, part.start] = torch.tensor(here, dtype=torch.float32)
    obs[:, layout["meters"].slice] = torch.tensor(meters) if meters is not None else 0.5
    return obs


@pytest.mark.parametrize("one_hot", [False, True])
def test_affordance_codes_decode_both_encodings(one_hot):
    layout = ObsLayout.build(cells=25, one_hot=one_hot)
    here = [BED, NONE, PARK, SHOWER]
    assert affordance_codes(layout, _obs(layout, here)).tolist() == here


def test_counts_presses_on_affordances_and_the_first_ending_of_each_town():
    """Three towns over three steps, each number counted by hand:
    town 0 presses the Bed twice, then dies with energy at 0;
    town 1 presses INTERACT on the floor (not an affordance), waits, then dies of health;
    town 2 presses the Shower, reaches the step limit, then presses again in its second
    life (not counted: only first lives are)."""
    layout = ObsLayout.build(cells=25)
    rec = LifeRecord(layout, 3, "cpu")
    live = torch.ones(3, dtype=torch.bool)
    no = torch.zeros(3, dtype=torch.bool)
    rec.acted(_obs(layout, [BED, NONE, SHOWER]), torch.tensor([INTERACT, INTERACT, INTERACT]), live)
    rec.ended(_obs(layout, [BED, NONE, SHOWER]), no, no, no)

    truncated = torch.tensor([False, False, True])
    end_meters = [[0.5] * 8, [0.5] * 8, [0.25] * 8]
    rec.acted(_obs(layout, [BED, NONE, SHOWER]), torch.tensor([INTERACT, WAIT, WAIT]), live)
    rec.ended(_obs(layout, [BED, NONE, SHOWER], end_meters), no, truncated, truncated)

    live = torch.tensor([True, True, False])
    dead_energy = [0.0 if m == "energy" else 0.3 for m in METERS]
    dead_health = [0.0 if m == "health" else 0.7 for m in METERS]
    terminated = torch.tensor([True, True, False])
    rec.acted(_obs(layout, [NONE, NONE, SHOWER]), torch.tensor([WAIT, WAIT, INTERACT]), live)
    rec.ended(_obs(layout, [NONE, NONE, SHOWER], [dead_energy, dead_health, [0.9] * 8]),
              terminated, no, terminated & live)

    out = rec.summary()
    assert out["interacts_per_life"]["Bed"] == round(2 / 3, 3)
    assert out["interacts_per_life"]["Shower"] == round(1 / 3, 3)
    assert sum(out["interacts_per_life"].values()) == pytest.approx(1.0, abs=1e-3)
    assert list(out["interacts_per_life"]) == list(AFFORDANCES)
    # Town 2's meters are those of its truncated step (0.25), not of its second life (0.9).
    assert out["meters_at_end"]["energy"] == round((0.0 + 0.7 + 0.25) / 3, 4)
    assert out["meters_at_end"]["health"] == round((0.3 + 0.0 + 0.25) / 3, 4)
    assert out["ended_by"] == {"step_limit": round(1 / 3, 4), "energy": round(1 / 3, 4),
                               "health": round(1 / 3, 4), "both": 0.0}


def test_a_death_with_both_lethal_meters_at_zero_counts_once():
    layout = ObsLayout.build(cells=25)
    rec = LifeRecord(layout, 1, "cpu")
    yes = torch.ones(1, dtype=torch.bool)
    meters = [[0.0 if m in ("energy", "health") else 0.5 for m in METERS]]
    rec.ended(_obs(layout, [NONE], meters), yes, torch.zeros(1, dtype=torch.bool), yes)
    assert rec.summary()["ended_by"] == {"step_limit": 0.0, "energy": 0.0, "health": 0.0, "both": 1.0}


def _oracle_record(mode: str):
    env = TownletVectorEnv(4, "L0_minimal", torch_output=True, autoreset_mode=mode)
    rec = LifeRecord(env.obs_layout, 4, "cpu")
    survival, _ = run_episodes(env, OraclePolicy(env), seed=3, record=rec)
    return survival.tolist(), rec.summary()


def test_real_episodes_end_the_same_way_under_either_autoreset():
    """The oracle on L0 (a Bed and no income): every life ends before the step limit with a
    lethal meter at 0, having pressed INTERACT on the Bed only. A same-step autoreset hands
    the last observation over in info["final_obs"]; both modes give the same record."""
    survival, out = _oracle_record("NextStep")
    assert out["ended_by"]["step_limit"] == 0.0 and sum(out["ended_by"].values()) == pytest.approx(1.0)
    assert out["interacts_per_life"]["Bed"] > 0
    assert all(v == 0 for k, v in out["interacts_per_life"].items() if k != "Bed")
    assert all(0.0 <= v <= 1.0 for v in out["meters_at_end"].values())
    assert out["meters_at_end"]["money"] == 0.0  # no income: the money is spent on sleep
    assert _oracle_record("SameStep") == (survival, out)


def test_cheapest_rescue_reads_the_pack():
    """By hand from SPEC section 5. Instant (L2): energy is raised by Bed $5, LuxuryBed $11,
    FastFood $10 and Recreation $6, so $5; health by Bed $5, LuxuryBed, HomeMeal $3, Doctor,
    Hospital, so $3. Ticked (L3): one tick of Bed $1 raises energy; health is raised per tick
    only by Doctor ($4) and Hospital ($5), so $4. L0 deploys the Bed alone: $5 for energy and
    (its +.02 health) for health."""
    assert cheapest_rescue(load_pack("L2_partial_observability")) == pytest.approx({"energy": 0.05, "health": 0.03})
    assert cheapest_rescue(load_pack("L3_temporal_mechanics")) == pytest.approx({"energy": 0.01, "health": 0.04})
    assert cheapest_rescue(load_pack("L0_minimal")) == pytest.approx({"energy": 0.05, "health": 0.05})


def test_deaths_are_accounted_apart_from_survivors():
    """Four towns, one step each after WAIT streaks built by hand:
    town 0 dies of energy with $4 (below the $5 that restores energy: broke) after 21 WAITs;
    town 1 dies of energy with $60, having moved on its last step (neither broke nor gave up);
    town 2 dies of health with $2 after 19 WAITs (broke, not given up: one WAIT short);
    town 3 reaches the step limit with every meter at 0.9 (not a death: left out)."""
    layout = ObsLayout.build(cells=25)
    rec = LifeRecord(layout, 4, "cpu", rescue={"energy": 0.05, "health": 0.03})
    live = torch.ones(4, dtype=torch.bool)
    no = torch.zeros(4, dtype=torch.bool)
    for step in range(GAVE_UP_WAITS):
        waits = torch.tensor([WAIT, WAIT, WAIT if step > 1 else 0, WAIT])  # town 2: 18 WAITs here
        rec.acted(_obs(layout, [NONE] * 4), waits, live)
        rec.ended(_obs(layout, [NONE] * 4), no, no, no)
    rec.acted(_obs(layout, [NONE] * 4), torch.tensor([WAIT, 0, WAIT, WAIT]), live)

    def dead(meter, money):
        return [0.0 if m == meter else money if m == "money" else 0.5 for m in METERS]

    ended = [dead("energy", 0.04), dead("energy", 0.6), dead("health", 0.02), [0.9] * 8]
    terminated = torch.tensor([True, True, True, False])
    truncated = ~terminated
    rec.ended(_obs(layout, [NONE] * 4, ended), terminated, truncated, live)
    deaths = rec.summary()["deaths"]
    assert deaths["count"] == 3
    assert deaths["broke"] == round(2 / 3, 4) and deaths["gave_up"] == round(1 / 3, 4)
    assert deaths["meters_at_death"]["money"] == round((0.04 + 0.6 + 0.02) / 3, 4)
    assert deaths["meters_at_death"]["energy"] == round(0.5 / 3, 4)  # town 2 died of health with energy 0.5


def test_no_deaths_and_no_rescue_prices():
    layout = ObsLayout.build(cells=25)
    rec = LifeRecord(layout, 2, "cpu")
    yes = torch.ones(2, dtype=torch.bool)
    rec.ended(_obs(layout, [NONE, NONE]), torch.zeros(2, dtype=torch.bool), yes, yes)
    assert rec.summary()["deaths"] == {"count": 0}
    rec = LifeRecord(layout, 1, "cpu")  # a death without prices: no "broke" share
    one = torch.ones(1, dtype=torch.bool)
    rec.ended(_obs(layout, [NONE], [[0.0] * 8]), one, torch.zeros(1, dtype=torch.bool), one)
    assert set(rec.summary()["deaths"]) == {"count", "meters_at_death", "gave_up"}
