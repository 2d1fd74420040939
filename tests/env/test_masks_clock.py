"""Action masks and the clock (docs/world.md, "Action mask" and "Clock").

Walls mask moves; INTERACT is allowed only on a deployed affordance that is open at the
current observation's hour (the hour before the step), never masked for lack of money; a
masked action executes as WAIT (WAIT's cost, no movement) and info["action_masked"] is
True. Opening hours are checked at every hour, with the Bar's wrap past midnight at the
edges that matter (0, 4, 17, 18, 23).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from env_testkit import (
    DOWN, INTERACT, L0, L2, L3, LEFT, M, RIGHT, TICKED, TOL, UP, WAIT, World, as_vector, meters,
    settle, vec,
)
from townlet_env import AFFORDANCES


def wait_expected(start: dict[str, float]) -> np.ndarray:
    """What a step of WAIT does: energy .001, then depletion etc. (multiplier 1)."""
    return settle(np.clip(as_vector(start) - vec(energy=0.001), 0.0, 1.0))


# --- walls ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("level,xy,moves", [
    # moves allowed: (UP, DOWN, LEFT, RIGHT); y = 0 is the top row
    (L2, (0, 0), (False, True, False, True)),
    (L2, (7, 0), (False, True, True, False)),
    (L2, (0, 7), (True, False, False, True)),
    (L2, (7, 7), (True, False, True, False)),
    (L2, (3, 0), (False, True, True, True)),
    (L2, (0, 4), (True, True, False, True)),
    (L2, (7, 2), (True, True, True, False)),
    (L2, (5, 7), (True, False, True, True)),
    (L2, (4, 4), (True, True, True, True)),
    (L0, (1, 1), (True, True, True, True)),
    (L0, (2, 2), (True, False, True, False)),
])
def test_walls_mask_moves(level, xy, moves, backend):
    w = World(level, backend)
    w.place(xy)
    mask = w.mask()[0]
    assert tuple(bool(v) for v in mask[[UP, DOWN, LEFT, RIGHT]]) == moves
    assert mask[WAIT]


@pytest.mark.parametrize("xy,action", [((0, 0), UP), ((0, 0), LEFT), ((7, 7), DOWN), ((7, 7), RIGHT)])
def test_wall_move_executes_as_wait_and_is_flagged(xy, action, backend):
    w = World(L2, backend)
    cell = w.place(xy)
    start = meters(0.6)
    w.set_meters(**start)
    r = w.step(action)
    assert r.masked[0]
    assert w.field("cell")[0] == cell
    np.testing.assert_allclose(w.meters()[0], wait_expected(start), atol=TOL)  # WAIT's cost, not a move's


@pytest.mark.parametrize("action,dx,dy", [(UP, 0, -1), (DOWN, 0, 1), (LEFT, -1, 0), (RIGHT, 1, 0)])
def test_allowed_move_moves_one_cell_and_is_not_flagged(action, dx, dy, backend):
    w = World(L2, backend)
    w.place((4, 4))
    r = w.step(action)
    assert not r.masked[0]
    assert w.field("cell")[0] == w.cell(4 + dx, 4 + dy)


def test_masked_flag_is_per_town():
    w = World(L2, "torch", n=3)
    w.place((0, 0))
    w.place(w.empty_cell(), town=2)
    r = w.step(UP, DOWN, INTERACT)  # wall, fine, INTERACT on an empty cell
    np.testing.assert_array_equal(r.masked, [True, False, True])
    assert w.field("cell")[0] == 0 and w.field("cell")[1] == w.cell(0, 1)


# --- INTERACT on and off an affordance -------------------------------------------------------------

def test_interact_on_an_empty_cell_is_masked_and_executes_as_wait(backend):
    w = World(L2, backend)
    cell = w.place(w.empty_cell())
    start = meters(0.6)
    w.set_meters(**start)
    assert not w.mask()[0, INTERACT]
    r = w.step(INTERACT)
    assert r.masked[0]
    assert w.field("cell")[0] == cell
    np.testing.assert_allclose(w.meters()[0], wait_expected(start), atol=TOL)


@pytest.mark.parametrize("level", [L2, L3])
def test_interact_allowed_on_every_affordance_even_when_broke(level):
    """Town i on affordance i with $0, at an hour where it is open: INTERACT allowed."""
    w = World(level, "torch", n=14)
    for i, name in enumerate(AFFORDANCES):
        w.place(name, town=i)
        w.set(town=i, hour=TICKED[name].hours[0] % 24 if level == L3 else 0)
    w.set_meters(money=0.0)
    assert w.mask()[:, INTERACT].all()
    assert w.mask()[:, WAIT].all()


def test_single_env_interact_never_masked_on_money(backend):
    for level in (L2, L3):
        w = World(level, backend)
        w.place("LuxuryBed")
        w.set_meters(money=0.0)
        assert w.mask()[0, INTERACT]
        r = w.step(INTERACT)
        assert not r.masked[0]


def test_without_temporal_mechanics_every_affordance_is_always_open():
    """L2: no clock; Doctor (8-18) and Bar (18-28) open even at hour 0, hour stays 0."""
    w = World(L2, "torch", n=2)
    w.place("Doctor", town=0)
    w.place("Bar", town=1)
    assert w.mask()[:, INTERACT].all()
    for _ in range(3):
        r = w.step(WAIT, WAIT)
    np.testing.assert_array_equal(w.field("hour"), [0, 0])
    t = w.params.layout["time"]
    np.testing.assert_array_equal(np.asarray(r.obs)[:, t.slice], 0.0)


def test_info_mask_matches_action_masks(backend):
    w = World(L3, backend)
    w.place((0, 0))
    obs, info = w.refresh()
    np.testing.assert_array_equal(np.asarray(info["action_mask"]).reshape(-1, 6), w.mask())
    r = w.step(RIGHT)
    np.testing.assert_array_equal(np.asarray(r.info["action_mask"]).reshape(-1, 6), w.mask())


# --- opening hours --------------------------------------------------------------------------------

def spec_open(name: str, h: int) -> bool:
    o, c = TICKED[name].hours
    return o <= h < c or h + 24 < c


def test_opening_hours_of_every_affordance_at_every_hour():
    """336 towns: town 24 i + h stands on affordance i at hour h."""
    w = World(L3, "torch", n=14 * 24)
    for i, name in enumerate(AFFORDANCES):
        for h in range(24):
            w.place(name, town=24 * i + h)
            w.set(town=24 * i + h, hour=h)
    got = w.mask()[:, INTERACT].reshape(14, 24)
    for i, name in enumerate(AFFORDANCES):
        expected = [spec_open(name, h) for h in range(24)]
        assert got[i].tolist() == expected, name


@pytest.mark.parametrize("name,hour,is_open", [
    # the Bar, 18-28: open 18:00 to 04:00
    ("Bar", 0, True), ("Bar", 3, True), ("Bar", 4, False), ("Bar", 17, False),
    ("Bar", 18, True), ("Bar", 23, True),
    ("Doctor", 7, False), ("Doctor", 8, True), ("Doctor", 17, True), ("Doctor", 18, False),
    ("Job", 0, False), ("Job", 8, True), ("Job", 17, True), ("Job", 18, False),
    ("Recreation", 21, True), ("Recreation", 22, False),
    ("Gym", 5, False), ("Gym", 6, True), ("Gym", 21, True), ("Gym", 22, False),
    ("Park", 4, False), ("Park", 6, True), ("Park", 23, False),
    ("Bed", 0, True), ("Bed", 23, True), ("Hospital", 4, True),
])
def test_opening_hour_edges(name, hour, is_open, backend):
    w = World(L3, backend)
    w.place(name)
    w.set(hour=hour)
    assert bool(w.mask()[0, INTERACT]) == is_open


def test_interact_on_a_closed_affordance_executes_as_wait(backend):
    """Doctor at 18:00 is closed: INTERACT is masked, costs WAIT's energy, charges nothing."""
    w = World(L3, backend)
    w.place("Doctor")
    w.set(hour=18)
    start = meters(0.6)
    w.set_meters(**start)
    r = w.step(INTERACT)
    assert r.masked[0]
    np.testing.assert_allclose(w.meters()[0], wait_expected(start), atol=TOL)
    assert w.field("progress")[0] == 0
    assert w.field("hour")[0] == 19


def test_mask_uses_the_hour_before_the_step(backend):
    """Doctor at 17:00 is open: the press is paid (health +.09375, -$4, energy .001 for the
    press) although the clock then reads 18:00; the Doctor has closed, so its progress is
    reset to 0."""
    w = World(L3, backend)
    w.place("Doctor")
    w.set(hour=17)
    start = meters(0.6)
    w.set_meters(**start)
    r = w.step(INTERACT)
    assert not r.masked[0]
    expected = settle(as_vector(start) + vec(energy=-0.001, health=0.09375, money=-0.04))
    np.testing.assert_allclose(w.meters()[0], expected, atol=TOL)
    assert w.field("hour")[0] == 18
    assert w.field("progress")[0] == 0
    assert not w.mask()[0, INTERACT]


def test_closing_mid_interaction_resets_progress_and_forfeits_the_bonus(backend):
    """Job (4 ticks) started at 16:00: ticks at 16 and 17 are paid ($5.625 each, for a toll
    of energy .0375 and health .0075 each, plus the press's .001 energy), then it closes; at
    18:00 progress is 0 and no bonus was ever given."""
    w = World(L3, backend)
    w.place("Job")
    w.set(hour=16)
    w.set_meters(**meters(0.6))
    m = as_vector(meters(0.6))
    tick = vec(money=0.05625, energy=-0.0375 - 0.001, health=-0.0075)
    w.step(INTERACT)
    m = settle(m + tick)
    assert w.field("progress")[0] == 1
    w.step(INTERACT)
    m = settle(m + tick)
    assert w.field("progress")[0] == 0 and w.field("hour")[0] == 18
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    assert abs(w.meters()[0, M["money"]] - (0.6 + 2 * 0.05625)) < TOL  # .7125, no bonus $5.625
    # energy .6 - 2 * (.0375 + .001 + .005 depletion) = .513; the bonus holds no cost to skip
    assert abs(w.meters()[0, M["energy"]] - 0.513) < TOL


def test_bar_interaction_continues_past_midnight(backend):
    """Bar (2 ticks, $7.50) pressed at 23:00 and 00:00: open both times, so the second
    press completes it and gives the bonus (gains only: the costs came with each tick)."""
    w = World(L3, backend)
    w.place("Bar")
    w.set(hour=23)
    start = meters(0.5)
    w.set_meters(**start)
    # per tick: the gains, the toll (energy .10 + the press's .001, hygiene .075, health .025)
    # and the price
    per = vec(social=0.1875, mood=0.09375, satiation=0.1125, energy=-0.10 - 0.001, hygiene=-0.075,
              health=-0.025, money=-0.075)
    bonus = vec(social=0.125, mood=0.0625, satiation=0.075)
    w.step(INTERACT)
    m = settle(as_vector(start) + per)
    assert w.field("hour")[0] == 0 and w.field("progress")[0] == 1
    assert w.mask()[0, INTERACT]
    w.step(INTERACT)
    m = settle(m + per + bonus)
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    assert w.field("progress")[0] == 0 and w.field("hour")[0] == 1


def test_bar_closes_at_four(backend):
    """Pressed at 03:00 the tick is paid; at 04:00 the Bar is closed: progress 0, masked."""
    w = World(L3, backend)
    w.place("Bar")
    w.set(hour=3)
    w.set_meters(**meters(0.5))
    r = w.step(INTERACT)
    assert not r.masked[0]
    assert abs(w.meters()[0, M["social"]] - (0.5 + 0.1875 - 0.006)) < TOL
    assert w.field("hour")[0] == 4 and w.field("progress")[0] == 0
    assert not w.mask()[0, INTERACT]
    r = w.step(INTERACT)
    assert r.masked[0]


# --- the clock ----------------------------------------------------------------------------------

def test_clock_advances_one_hour_per_step_and_wraps(backend):
    w = World(L3, backend)
    assert w.field("hour")[0] == 0  # reset to hour 0 (random_start_hour is off)
    for h in range(1, 30):
        r = w.step(WAIT)
        assert w.field("hour")[0] == h % 24
        t = w.params.layout["time"].start
        o = np.asarray(r.obs).reshape(w.n, -1)[0]
        assert abs(o[t] - math.sin(2 * math.pi * (h % 24) / 24)) < TOL
        assert abs(o[t + 1] - math.cos(2 * math.pi * (h % 24) / 24)) < TOL


def test_each_town_keeps_its_own_clock():
    w = World(L3, "torch", n=3)
    w.set(town=0, hour=0)
    w.set(town=1, hour=17)
    w.set(town=2, hour=23)
    w.step(WAIT, WAIT, WAIT)
    np.testing.assert_array_equal(w.field("hour"), [1, 18, 0])
