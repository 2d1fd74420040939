"""Affordances (docs/world.md, "Affordances" and "Multi-tick interactions"): every one of
the 14, instant (L2) and ticked (L3).

Expected numbers come from the docs/world.md tables transcribed in conftest (INSTANT, TICKED) and
are compared with what the env does, on the single env (numpy) and the vector env (torch).
Starting meters are 0.5 (energy 0.2 for the beds), so no meter clamps and no cascade
fires unless a test says so; `settle` (conftest) is docs/world.md "The step", steps 2-5, in float64.

Every INTERACT press costs the action's own energy (INTERACT_COST, .001 as WAIT), paid or
not: a press that cannot be paid gives no effect, takes no price and makes no progress, but
the press itself is charged like standing still (docs/world.md, "Actions" and "Action mask").
"""

from __future__ import annotations

import numpy as np
import pytest

from env_testkit import (
    INSTANT, INTERACT, INTERACT_COST, L2, L3, LEFT, M, RIGHT, TICKED, TOL, WAIT, World, as_vector, meters,
    settle, vec, write_pack,
)
from townlet_env import AFFORDANCES


def start_meters(name: str) -> dict[str, float]:
    """All meters 0.5 ($50), but energy 0.2 for the beds so their gains do not clamp."""
    return meters(0.5, energy=0.2) if name in ("Bed", "LuxuryBed") else meters(0.5)


def instant_expected(name: str, start: dict[str, float]) -> np.ndarray:
    """Instant: the press's energy, effects added, price taken, clamp; then steps 2-5 of
    "The step"."""
    price, effects = INSTANT[name]
    after_action = as_vector(start) - vec(**INTERACT_COST) + vec(**effects) - vec(money=price / 100.0)
    return settle(np.clip(after_action, 0.0, 1.0))


def tick_expected(name: str, m: np.ndarray, bonus: bool) -> np.ndarray:
    """One paid tick: the press's energy, per-tick effects (costs included), minus the tick
    price, plus the bonus (gains only) on completion."""
    t = TICKED[name]
    delta = vec(**t.per_tick) - vec(**INTERACT_COST) - vec(money=t.price / 100.0) + (vec(**t.bonus) if bonus else 0.0)
    return settle(np.clip(m + delta, 0.0, 1.0))


def unpaid_expected(m: np.ndarray) -> np.ndarray:
    """A press that cannot be paid: only the press's own energy, then steps 2-5 of "The step"."""
    return settle(np.clip(np.asarray(m, dtype=np.float64) - vec(**INTERACT_COST), 0.0, 1.0))


def progress_obs(w: World, obs) -> float:
    """The interaction-progress entry of the observation (time part, third value)."""
    o = np.asarray(obs).reshape(w.n, -1)
    return float(o[0, w.params.layout["time"].start + 2])


# --- instant mode (L2: temporal mechanics off) ---------------------------------------------

def test_instant_bed_worked_example():
    """Bed, $5 -> energy +.50, health +.02, worked by hand (multiplier 1, press .001)."""
    w = World(L2)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2))
    r = w.step(INTERACT)
    # action: energy .2-.001 (the press)+.5 = .699, health .5+.02 = .52, money .5-.05 = .45
    # depletion: energy .699-.005 = .694, hygiene .5-.003, satiation .5-.004, mood .5-.001,
    #            social .5-.006, fitness .5-.002 = .498
    # modulation: health .52 - .001*(.5 + 2.5*(1-.498)) = .52 - .001755
    expected = [0.694, 0.497, 0.496, 0.45, 0.499, 0.494, 0.518245, 0.498]
    np.testing.assert_allclose(w.meters()[0], expected, atol=TOL)
    assert not r.masked[0] and not r.terminated[0] and r.reward[0] == 1.0


@pytest.mark.parametrize("name", AFFORDANCES)
def test_instant_interaction(name, backend):
    w = World(L2, backend)
    cell = w.place(name)
    start = start_meters(name)
    w.set_meters(**start)
    assert w.mask()[0, INTERACT]
    r = w.step(INTERACT)
    np.testing.assert_allclose(w.meters()[0], instant_expected(name, start), atol=TOL)
    assert not r.masked[0]
    assert w.field("cell")[0] == cell
    assert w.field("progress")[0] == 0  # a one-tick interaction: nothing in progress after it
    assert w.field("hour")[0] == 0      # no clock without temporal mechanics


def test_instant_all_fourteen_in_one_vector_step():
    """Town i stands on affordance i; one batched INTERACT step serves all 14 correctly."""
    w = World(L2, "torch", n=14)
    for i, name in enumerate(AFFORDANCES):
        w.place(name, town=i)
        w.set_meters(town=i, **start_meters(name))
    r = w.step(*[INTERACT] * 14)
    got = w.meters()
    for i, name in enumerate(AFFORDANCES):
        np.testing.assert_allclose(got[i], instant_expected(name, start_meters(name)), atol=TOL,
                                   err_msg=name)
    assert not r.masked.any()


@pytest.mark.parametrize("name", [a for a in AFFORDANCES if INSTANT[a][0] > 0])
def test_instant_unaffordable_press_does_nothing(name, backend):
    """$1 short: INTERACT is not masked, gives no effect, takes no money; the press itself
    still costs its .001 energy, as a WAIT would."""
    w = World(L2, backend)
    w.place(name)
    start = start_meters(name)
    start["money"] = (INSTANT[name][0] - 1.0) / 100.0
    w.set_meters(**start)
    assert w.mask()[0, INTERACT], "INTERACT must never be masked for lack of money"
    r = w.step(INTERACT)
    np.testing.assert_allclose(w.meters()[0], unpaid_expected(as_vector(start)), atol=TOL)
    assert not r.masked[0]
    assert w.field("progress")[0] == 0


@pytest.mark.parametrize("name", ["Job", "Labor", "Park"])
def test_free_affordances_work_when_broke(name, backend):
    w = World(L2, backend)
    w.place(name)
    start = meters(0.5, money=0.0)
    w.set_meters(**start)
    w.step(INTERACT)
    np.testing.assert_allclose(w.meters()[0], instant_expected(name, start), atol=TOL)


def test_affordability_boundary(backend):
    """Affordable iff money + 1e-6 >= price: exactly $5 pays for the Bed, $4.99 does not;
    both presses cost their .001 energy."""
    w = World(L2, backend)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2, money=0.05))
    w.step(INTERACT)
    m = w.meters()[0]
    assert abs(m[M["money"]]) < TOL
    assert abs(m[M["energy"]] - (0.2 - 0.001 + 0.5 - 0.005)) < TOL  # .694

    w = World(L2, backend)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2, money=0.0499))
    w.step(INTERACT)
    m = w.meters()[0]
    assert abs(m[M["money"]] - 0.0499) < TOL
    assert abs(m[M["energy"]] - (0.2 - 0.001 - 0.005)) < TOL  # .194: the press, not the Bed


def test_instant_gains_clamp_at_one(backend):
    """Bed at energy .9: .9 - .001 + .5 clamps to 1 before depletion (-> .995); Job at $90:
    money 1."""
    w = World(L2, backend)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.9))
    w.step(INTERACT)
    assert abs(w.meters()[0, M["energy"]] - 0.995) < TOL

    w = World(L2, backend)
    w.place("Job")
    w.set_meters(**meters(0.5, money=0.9))
    w.step(INTERACT)
    assert abs(w.meters()[0, M["money"]] - 1.0) < TOL


def test_interact_cost_is_charged_on_every_press(tmp_path, backend):
    """actions.interact (energy .001 in the reference tuning, as WAIT; .01 here so it stands
    out) is charged on every press, affordable or not: every pack number is used."""
    pack = write_pack(tmp_path, {}, "[actions]\ninteract = { energy = 0.01 }\n")
    w = World(pack, backend)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2))
    w.step(INTERACT)
    assert abs(w.meters()[0, M["energy"]] - (0.2 - 0.01 + 0.5 - 0.005)) < TOL

    w = World(pack, backend)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2, money=0.0))
    w.step(INTERACT)  # unaffordable: no gain, but the press itself costs .01 energy
    assert abs(w.meters()[0, M["energy"]] - (0.2 - 0.01 - 0.005)) < TOL


# --- ticked mode (L3: temporal mechanics on) ----------------------------------------------

@pytest.mark.parametrize("name", AFFORDANCES)
def test_ticked_full_interaction(name, backend):
    """`ticks` presses from the opening hour: per-tick gains and price on each, the bonus on
    the last, progress 1..ticks-1 then 0; a further press starts a new interaction."""
    t = TICKED[name]
    w = World(L3, backend)
    w.place(name)
    w.set(hour=t.hours[0] % 24)
    m = as_vector(start_meters(name))
    w.set_meters(**start_meters(name))
    for k in range(1, t.ticks + 1):
        done = k == t.ticks
        r = w.step(INTERACT)
        m = tick_expected(name, m, bonus=done)
        np.testing.assert_allclose(w.meters()[0], m, atol=TOL, err_msg=f"{name} tick {k}")
        assert not r.masked[0]
        expect_progress = 0 if done else k
        assert w.field("progress")[0] == expect_progress
        assert abs(progress_obs(w, r.obs) - expect_progress / t.ticks) < TOL
    r = w.step(INTERACT)  # a new interaction: tick 1 again, no bonus
    m = tick_expected(name, m, bonus=False)
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    assert w.field("progress")[0] == 1


def test_ticked_first_tick_all_fourteen_in_one_vector_step():
    w = World(L3, "torch", n=14)
    for i, name in enumerate(AFFORDANCES):
        w.place(name, town=i)
        w.set(town=i, hour=TICKED[name].hours[0] % 24)
        w.set_meters(town=i, **start_meters(name))
    w.step(*[INTERACT] * 14)
    got = w.meters()
    for i, name in enumerate(AFFORDANCES):
        np.testing.assert_allclose(got[i], tick_expected(name, as_vector(start_meters(name)), False),
                                   atol=TOL, err_msg=name)
    np.testing.assert_array_equal(w.field("progress"), 1)


def test_bed_ticked_worked_example(backend):
    """Bed: 5 ticks of $1 and energy +.075, bonus energy +.125 and health +.02."""
    w = World(L3, backend)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2, fitness=1.0))
    for _ in range(5):
        w.step(INTERACT)
    m = w.meters()[0]
    # energy: .2 + 5 * (.075 - .001 press - .005 depletion) + .125 = .2 + .345 + .125 = .670
    # money: .5 - 5 * .01 = .45
    # health: .5 + .02 - 5 * .001 * (.5 + 2.5 * (1 - fitness)) with fitness .998 ... .990
    health = 0.5 + 0.02 - sum(0.001 * (0.5 + 2.5 * (0.002 * k)) for k in range(1, 6))
    assert abs(m[M["energy"]] - 0.670) < TOL
    assert abs(m[M["money"]] - 0.45) < TOL
    assert abs(m[M["health"]] - health) < TOL


@pytest.mark.parametrize("leave", ["WAIT", "move"])
def test_leaving_early_keeps_tick_gains_and_forfeits_bonus(leave, backend):
    """Bed: 2 ticks, leave, then 3 more presses are ticks 1..3 of a new interaction (no
    bonus); only the 5th consecutive press completes it."""
    w = World(L3, backend)
    bed = w.place("Bed")
    m = as_vector(meters(0.5, energy=0.2))
    w.set_meters(**meters(0.5, energy=0.2))
    for k in (1, 2):
        w.step(INTERACT)
        m = tick_expected("Bed", m, bonus=False)
        assert w.field("progress")[0] == k
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)  # both ticks' gains were kept
    if leave == "WAIT":
        w.step(WAIT)
        m = settle(np.clip(m - vec(energy=0.001), 0, 1))
    else:
        away = LEFT if bed % w.g > 0 else RIGHT
        r = w.step(away)
        assert not r.masked[0] and w.field("cell")[0] != bed
        m = settle(np.clip(m - vec(energy=0.005, hygiene=0.003, satiation=0.004), 0, 1))
        w.place("Bed")  # walk back (by hand, so the two paths cost the same in the test)
    assert w.field("progress")[0] == 0
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    for k in (1, 2, 3, 4):
        w.step(INTERACT)
        m = tick_expected("Bed", m, bonus=False)
        assert w.field("progress")[0] == k
    w.step(INTERACT)
    m = tick_expected("Bed", m, bonus=True)
    assert w.field("progress")[0] == 0
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)


def test_ticked_unaffordable_press_keeps_progress(backend):
    """$2 pays two Bed ticks; the third press does nothing (no effect, no price, progress
    stays 2) but costs the press's .001 energy; with money again, the next press continues
    at tick 3."""
    w = World(L3, backend)
    w.place("Bed")
    m = as_vector(meters(0.5, energy=0.2, money=0.02))
    w.set_meters(**meters(0.5, energy=0.2, money=0.02))
    for _ in range(2):
        w.step(INTERACT)
        m = tick_expected("Bed", m, bonus=False)
    assert abs(w.meters()[0, M["money"]]) < TOL
    assert w.mask()[0, INTERACT]
    r = w.step(INTERACT)
    m = unpaid_expected(m)  # the press's energy, then depletion
    assert not r.masked[0]
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    assert w.field("progress")[0] == 2
    w.set_meters(money=0.5)
    m[M["money"]] = 0.5
    w.step(INTERACT)
    m = tick_expected("Bed", m, bonus=False)
    np.testing.assert_allclose(w.meters()[0], m, atol=TOL)
    assert w.field("progress")[0] == 3


def test_ticked_unaffordable_first_press_starts_nothing(backend):
    w = World(L3, backend)
    w.place("Hospital")
    start = meters(0.5, money=0.04)  # a Hospital tick costs $5
    w.set_meters(**start)
    w.step(INTERACT)  # no tick, no progress; the press costs its .001 energy
    np.testing.assert_allclose(w.meters()[0], unpaid_expected(as_vector(start)), atol=TOL)
    assert w.field("progress")[0] == 0


def test_vector_towns_interact_independently():
    """Two towns on the Bed: one pays and progresses, the broke one only pays the press's
    .001 energy (torch output mode: tensors out)."""
    w = World(L3, "torch", n=2, torch_output=True)
    w.place("Bed")
    w.set_meters(**meters(0.5, energy=0.2))
    w.set_meters(town=1, money=0.0)
    w.step(INTERACT, INTERACT)
    got = w.meters()
    np.testing.assert_allclose(got[0], tick_expected("Bed", as_vector(meters(0.5, energy=0.2)), False), atol=TOL)
    np.testing.assert_allclose(got[1], unpaid_expected(as_vector(meters(0.5, energy=0.2, money=0.0))), atol=TOL)
    np.testing.assert_array_equal(w.field("progress"), [1, 0])
