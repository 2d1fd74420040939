"""Meters (docs/world.md, "Meters" and "The step"): action cost, depletion x multiplier, fitness modulation, the
three ordered cascade groups, clamp, termination and truncation.

Every expected number is worked by hand in float64 in the test from the tables of
docs/world.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from env_testkit import (
    L2, L3, M, TOL, UP, WAIT, World, as_vector, meters, write_pack,
)
from townlet_env import METERS


def _interior(w: World) -> int:
    """Put the agent on an empty cell away from the border (every move allowed)."""
    return w.place(w.empty_cell(interior=True))


# --- one full step, worked by hand ----------------------------------------------------------

@pytest.mark.parametrize("level", [L2, L3])
def test_worked_example_of_one_full_step(level, backend):
    """UP from an empty cell at multiplier 0.5 with four meters below the 0.30 threshold."""
    w = World(level, backend)
    _interior(w)
    w.set_difficulty([0.5])
    w.set_meters(energy=0.6, hygiene=0.2, satiation=0.25, money=0.3, mood=0.28, social=0.1,
                 health=0.7, fitness=0.4)
    r = w.step(UP)

    # 1. the action: a move costs energy .005, hygiene .003, satiation .004
    energy, hygiene, satiation, money = 0.6 - 0.005, 0.2 - 0.003, 0.25 - 0.004, 0.3
    mood, social, health, fitness = 0.28, 0.1, 0.7, 0.4
    # 2. base depletion x 0.5
    energy -= 0.005 * 0.5      # .5925
    hygiene -= 0.003 * 0.5     # .1955
    satiation -= 0.004 * 0.5   # .244
    mood -= 0.001 * 0.5        # .2795
    social -= 0.006 * 0.5      # .097
    fitness -= 0.002 * 0.5     # .399
    # 3. fitness modulation (unscaled), with the fitness after depletion
    health -= 0.001 * (0.5 + 2.5 * (1 - fitness))  # .7 - .0020025
    # 4a. primary -> pivotal, reading satiation .244 and mood .2795
    sat_gap, mood_gap = (0.3 - satiation) / 0.3, (0.3 - mood) / 0.3
    health -= 0.004 * sat_gap
    energy -= 0.005 * sat_gap + 0.005 * mood_gap
    # 4b. secondary -> primary, reading hygiene .1955 and social .097
    hyg_gap, soc_gap = (0.3 - hygiene) / 0.3, (0.3 - social) / 0.3
    satiation -= 0.002 * hyg_gap
    fitness -= 0.002 * hyg_gap
    mood -= 0.003 * hyg_gap + 0.004 * soc_gap
    # 4c. secondary -> pivotal (weak)
    health -= 0.0005 * hyg_gap
    energy -= 0.0005 * hyg_gap + 0.0008 * soc_gap
    expected = [energy, hygiene, satiation, money, mood, social, health, fitness]

    # The same numbers written out, so a reader can check the arithmetic above.
    np.testing.assert_allclose(
        expected, [0.5905095, 0.1955, 0.2433033333, 0.3, 0.2757483333, 0.097, 0.6970766667,
                   0.3983033333], atol=1e-9)
    np.testing.assert_allclose(w.meters()[0], expected, atol=TOL)
    assert not r.masked[0] and not r.terminated[0] and not r.truncated[0]
    assert w.field("cell")[0] == w.empty_cell(interior=True) - w.g  # moved up one row


# --- depletion ------------------------------------------------------------------------------

def test_wait_depletes_every_meter_by_its_base_rate(backend):
    """From full meters, WAIT (energy .001) then depletion at multiplier 1."""
    w = World(L2, backend)
    _interior(w)
    w.set_meters(**meters(1.0, money=0.5))
    w.step(WAIT)
    # health: modulation only, .001 * (.5 + 2.5 * (1 - .998)) = .000505
    expected = [1 - 0.001 - 0.005, 1 - 0.003, 1 - 0.004, 0.5, 1 - 0.001, 1 - 0.006,
                1 - 0.000505, 1 - 0.002]
    np.testing.assert_allclose(w.meters()[0], expected, atol=TOL)


@pytest.mark.parametrize("mult", [0.0, 0.2, 0.5, 2.0])
def test_depletion_scales_with_the_multiplier(mult, backend):
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([mult])
    w.set_meters(**meters(0.6))
    w.step(WAIT)
    m = w.meters()[0]
    assert abs(m[M["energy"]] - (0.6 - 0.001 - 0.005 * mult)) < TOL  # WAIT's cost is not scaled
    assert abs(m[M["hygiene"]] - (0.6 - 0.003 * mult)) < TOL
    assert abs(m[M["satiation"]] - (0.6 - 0.004 * mult)) < TOL
    assert abs(m[M["money"]] - 0.6) < TOL
    assert abs(m[M["mood"]] - (0.6 - 0.001 * mult)) < TOL
    assert abs(m[M["social"]] - (0.6 - 0.006 * mult)) < TOL
    assert abs(m[M["fitness"]] - (0.6 - 0.002 * mult)) < TOL


def test_each_town_depletes_at_its_own_multiplier():
    """Vector env: multipliers [0.2, 1.0, 0.0] apply to their own town only."""
    w = World(L2, "torch", n=3)
    w.set_difficulty([0.2, 1.0, 0.0])
    _interior(w)
    w.set_meters(**meters(0.6))
    w.step(WAIT, WAIT, WAIT)
    social = w.meters()[:, M["social"]]
    np.testing.assert_allclose(social, [0.6 - 0.0012, 0.6 - 0.006, 0.6], atol=TOL)


def test_multiplier_survives_reset():
    w = World(L2, "torch", n=2)
    w.set_difficulty([0.2, 1.0])
    w.env.reset(seed=5)
    np.testing.assert_allclose(w.field("multiplier"), [0.2, 1.0], atol=1e-7)


def test_action_costs_come_from_the_pack(tmp_path, backend):
    """Move and wait costs are pack values, hygiene and satiation included."""
    pack = write_pack(tmp_path, {}, """
        [actions]
        move = { energy = 0.02, hygiene = 0.03, satiation = 0.04 }
        wait = { energy = 0.01 }
    """)
    w = World(pack, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.6))
    w.step(UP)
    m = w.meters()[0]
    np.testing.assert_allclose(m[[M["energy"], M["hygiene"], M["satiation"]]], [0.58, 0.57, 0.56], atol=TOL)
    w.step(WAIT)
    assert abs(w.meters()[0, M["energy"]] - 0.57) < TOL


# --- fitness modulation -----------------------------------------------------------------------

@pytest.mark.parametrize("fitness", [1.0, 0.6, 0.2, 0.0])
def test_fitness_modulation_of_health(fitness, backend):
    """At multiplier 0 only modulation moves health: .001 * (.5 + 2.5 * (1 - fitness))."""
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.6, fitness=fitness))
    w.step(WAIT)
    assert abs(w.meters()[0, M["health"]] - (0.6 - 0.001 * (0.5 + 2.5 * (1 - fitness)))) < TOL


def test_modulation_reads_fitness_after_depletion_and_is_not_scaled(backend):
    """Multiplier 10: fitness .5 -> .48 first, so health -= .001 * (.5 + 2.5 * .52) = .0018
    (with the fitness before depletion it would be .00175)."""
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([10.0])
    w.set_meters(**meters(0.6, fitness=0.5))
    w.step(WAIT)
    m = w.meters()[0]
    assert abs(m[M["fitness"]] - 0.48) < TOL
    assert abs(m[M["health"]] - (0.6 - 0.0018)) < TOL


# --- cascades ---------------------------------------------------------------------------------

def test_no_cascade_at_or_above_the_threshold(backend):
    """Sources exactly at .30 after depletion do not cascade (strictly below only)."""
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.3, energy=0.6, health=0.6, fitness=1.0))
    w.step(WAIT)
    m = w.meters()[0]
    assert abs(m[M["energy"]] - 0.599) < TOL
    assert abs(m[M["health"]] - 0.5995) < TOL


@pytest.mark.parametrize("source,strengths", [
    ("satiation", {"health": 0.004, "energy": 0.005}),
    ("mood", {"energy": 0.005}),
    ("hygiene", {"satiation": 0.002, "fitness": 0.002, "mood": 0.003, "health": 0.0005, "energy": 0.0005}),
    ("social", {"mood": 0.004, "energy": 0.0008}),
])
def test_each_cascade_source_at_zero_drains_its_targets(source, strengths, backend):
    """Source 0 (gap = 1): each target loses exactly its strength (multiplier 0, fitness 1,
    other meters .6 so nothing else cascades)."""
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.6, fitness=1.0, **{source: 0.0}))
    w.step(WAIT)
    m = w.meters()[0]
    expected = as_vector(meters(0.6, fitness=1.0, **{source: 0.0}))
    expected[M["energy"]] -= 0.001            # WAIT
    expected[M["health"]] -= 0.0005           # modulation at fitness 1
    for target, s in strengths.items():
        expected[M[target]] -= s
    np.testing.assert_allclose(m, expected, atol=TOL)


def test_cascade_groups_apply_in_order(backend):
    """Group 2 pushes mood from .30 to .293 (hygiene 0 and social 0: -.003 - .004); group 1
    ran before it and read mood .30, so energy loses nothing to mood -> energy.
    (Applied the other way round, energy would lose a further .005 * .007 / .3 = .000117.)"""
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.6, mood=0.3, hygiene=0.0, social=0.0, fitness=1.0))
    w.step(WAIT)
    m = w.meters()[0]
    assert abs(m[M["mood"]] - 0.293) < TOL
    # energy: .6 - .001 (WAIT) - .0005 (hygiene) - .0008 (social); no mood term
    assert abs(m[M["energy"]] - 0.5977) < TOL


def test_each_group_reads_the_meters_left_by_the_previous_group(tmp_path, backend):
    """With the reference tuning no group's source is an earlier group's target, so this
    pack makes one: group 1 mood -> social, group 2 social -> energy. Mood 0 drains social
    from .30 to .27 in group 1; group 2 must read .27: energy -= .03 * (.3 - .27) / .3."""
    pack = write_pack(tmp_path, {}, """
        [cascades]
        threshold = 0.30

        [[cascades.groups]]
        name = "first"
        edges = [{ source = "mood", target = "social", strength = 0.03 }]

        [[cascades.groups]]
        name = "second"
        edges = [{ source = "social", target = "energy", strength = 0.03 }]
    """)
    w = World(pack, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.6, mood=0.0, social=0.3, fitness=1.0))
    w.step(WAIT)
    m = w.meters()[0]
    assert abs(m[M["social"]] - 0.27) < TOL
    assert abs(m[M["energy"]] - (0.6 - 0.001 - 0.003)) < TOL


def test_edges_of_one_group_read_the_same_snapshot(tmp_path, backend):
    """A pack whose single group has mood -> social and social -> energy: social starts at
    .30, so the second edge must not see the first edge's drain."""
    pack = write_pack(tmp_path, {}, """
        [cascades]
        threshold = 0.30

        [[cascades.groups]]
        name = "one"
        edges = [
          { source = "mood", target = "social", strength = 0.03 },
          { source = "social", target = "energy", strength = 0.03 },
        ]
    """)
    w = World(pack, backend)
    _interior(w)
    w.set_difficulty([0.0])
    w.set_meters(**meters(0.6, mood=0.0, social=0.3, fitness=1.0))
    w.step(WAIT)
    m = w.meters()[0]
    assert abs(m[M["social"]] - 0.27) < TOL
    assert abs(m[M["energy"]] - 0.599) < TOL  # WAIT only; social read as .30


def test_cascades_are_not_scaled_by_the_multiplier(backend):
    """Multiplier 0.2 scales satiation's depletion (.1 -> .0992) but not the cascade
    strengths: health loses .004 * (.3 - .0992) / .3 on top of modulation."""
    w = World(L2, backend)
    _interior(w)
    w.set_difficulty([0.2])
    w.set_meters(**meters(0.6, satiation=0.1, fitness=1.0))
    w.step(WAIT)
    m = w.meters()[0]
    fit = 1.0 - 0.002 * 0.2
    sat = 0.1 - 0.004 * 0.2
    assert abs(m[M["satiation"]] - sat) < TOL
    assert abs(m[M["health"]] - (0.6 - 0.001 * (0.5 + 2.5 * (1 - fit)) - 0.004 * (0.3 - sat) / 0.3)) < TOL
    # energy: WAIT, depletion x .2, satiation -> energy
    assert abs(m[M["energy"]] - (0.6 - 0.001 - 0.001 - 0.005 * (0.3 - sat) / 0.3)) < TOL


# --- clamp --------------------------------------------------------------------------------------

def test_meters_clamp_at_zero(backend):
    """A move from hygiene .001, satiation .002: the costs would go negative; clamp to 0."""
    w = World(L2, backend)
    _interior(w)
    w.set_meters(**meters(0.6, hygiene=0.001, satiation=0.002, money=0.0))
    w.step(UP)
    m = w.meters()[0]
    assert m[M["hygiene"]] == 0.0 and m[M["satiation"]] == 0.0 and m[M["money"]] == 0.0
    assert (m >= 0).all() and (m <= 1).all()


def test_meters_stay_in_unit_interval_under_random_play():
    w = World(L3, "torch", n=16, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        mask = w.mask()
        acts = [int(rng.choice(np.flatnonzero(row))) for row in mask]
        w.step(*acts)
        m = w.meters()
        assert (m >= 0).all() and (m <= 1).all()


# --- termination and truncation -----------------------------------------------------------------

def test_energy_reaching_zero_terminates(backend):
    w = World(L2, backend)
    _interior(w)
    w.set_meters(**meters(0.6, energy=0.004))  # -.001 (WAIT) -.005 (depletion) -> 0
    r = w.step(WAIT)
    assert w.meters()[0, M["energy"]] == 0.0
    assert r.terminated[0] and not r.truncated[0]
    assert r.reward[0] == 0.0


def test_health_reaching_zero_terminates(backend):
    w = World(L2, backend)
    _interior(w)
    w.set_meters(**meters(0.6, health=0.0004, fitness=1.0))  # modulation takes >= .0005
    r = w.step(WAIT)
    assert w.meters()[0, M["health"]] == 0.0
    assert r.terminated[0] and not r.truncated[0]


def test_low_but_positive_meters_do_not_terminate(backend):
    w = World(L2, backend)
    _interior(w)
    w.set_meters(**meters(0.6, energy=0.007, health=0.001, fitness=1.0))
    r = w.step(WAIT)
    assert not r.terminated[0] and not r.truncated[0]
    m = w.meters()[0]
    # energy .007 - .001 - .005; health .001 - .001 * (.5 + 2.5 * (1 - .998))
    assert abs(m[M["energy"]] - 0.001) < TOL and abs(m[M["health"]] - 0.000495) < TOL


@pytest.mark.parametrize("level,limit", [(L2, 500), (L3, 500), ("L0_minimal", 1000)])
def test_truncation_at_the_step_limit(level, limit, backend):
    w = World(level, backend)
    w.set(steps=limit - 2)
    r = w.step(WAIT)
    assert not r.terminated[0] and not r.truncated[0]
    r = w.step(WAIT)
    assert r.truncated[0] and not r.terminated[0]
    assert r.reward[0] == 1.0  # alive at the limit
    assert int(np.asarray(r.info["episode_step"]).reshape(-1)[0]) == limit


def test_death_on_the_last_step_is_termination_not_truncation(backend):
    w = World(L2, backend)
    w.set(steps=499)
    w.set_meters(energy=0.004)
    r = w.step(WAIT)
    assert r.terminated[0] and not r.truncated[0]


def test_vector_towns_end_independently():
    """Town 0 dies, town 1 hits the limit, town 2 goes on, all in one step."""
    w = World(L2, "torch", n=3)
    w.set_meters(town=0, energy=0.004)
    w.set(town=1, steps=499)
    r = w.step(WAIT, WAIT, WAIT)
    np.testing.assert_array_equal(r.terminated, [True, False, False])
    np.testing.assert_array_equal(r.truncated, [False, True, False])
    np.testing.assert_array_equal(r.reward, [0.0, 1.0, 1.0])


def test_meter_order_is_the_spec_order():
    assert METERS == ("energy", "hygiene", "satiation", "money", "mood", "social", "health", "fitness")
