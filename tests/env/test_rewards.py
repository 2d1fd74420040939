"""Reward modes (docs/world.md, "Rewards"), per agent.

survival: 1 per step alive, 0 on the death step.
interoception: alive * (1 + 0.5 (health - 0.5) + 0.5 (energy - 0.5)) on the post-step meters.
baseline_relative: 0 except on the step the episode ends (terminated or truncated), where
it is steps - R_i with R_i = 1 / (0.005 m_i + 0.001), the agent's own multiplier m_i
(energy depletion x m_i + the cheapest idle energy cost, min(move .005, WAIT .001)).
"""

from __future__ import annotations

import numpy as np
import pytest

from env_testkit import INTERACT, L2, L3, M, TOL, WAIT, World, meters

R_02 = 1.0 / (0.005 * 0.2 + 0.001)  # 500
R_05 = 1.0 / (0.005 * 0.5 + 0.001)  # 285.714...
R_10 = 1.0 / (0.005 * 1.0 + 0.001)  # 166.666...


def test_reference_baselines():
    assert abs(R_02 - 500.0) < 1e-9 and abs(R_10 - 166.6666667) < 1e-6


# --- survival ------------------------------------------------------------------------------------

def test_survival_is_the_default_of_the_shipped_levels(backend):
    w = World(L2, backend)
    assert w.params.reward_mode == "survival"


def test_survival_pays_one_per_step_alive_and_zero_on_death(backend):
    w = World(L2, backend, reward_mode="survival")
    for _ in range(3):
        r = w.step(WAIT)
        assert r.reward[0] == 1.0
    w.set_meters(energy=0.004)
    r = w.step(WAIT)
    assert r.terminated[0] and r.reward[0] == 0.0


def test_survival_pays_one_on_the_truncation_step(backend):
    w = World(L3, backend, reward_mode="survival")
    w.set(steps=499)
    r = w.step(WAIT)
    assert r.truncated[0] and r.reward[0] == 1.0


# --- interoception -------------------------------------------------------------------------------

def test_interoception_worked_example(backend):
    """energy .8 -> .794 (WAIT .001 + depletion .005), health .6 -> .5995 (modulation at
    fitness .998 is .000505): r = 1 + .5 (.599495 - .5) + .5 (.794 - .5) = 1.1967475."""
    w = World(L2, backend, reward_mode="interoception")
    w.place(w.empty_cell())
    w.set_meters(**meters(0.6, energy=0.8, health=0.6, fitness=1.0))
    r = w.step(WAIT)
    health, energy = 0.6 - 0.001 * (0.5 + 2.5 * 0.002), 0.8 - 0.006
    assert abs(r.reward[0] - (1 + 0.5 * (health - 0.5) + 0.5 * (energy - 0.5))) < TOL
    assert abs(r.reward[0] - 1.1967475) < TOL


def test_interoception_stays_positive_in_crisis_and_is_zero_on_death(backend):
    """Additive, so near-zero meters still pay about .5 (a product would vanish in a crisis); death pays 0."""
    w = World(L2, backend, reward_mode="interoception")
    w.place(w.empty_cell())
    w.set_meters(**meters(0.6, energy=0.016, health=0.01, fitness=1.0))
    r = w.step(WAIT)
    health, energy = 0.01 - 0.000505, 0.01
    assert abs(r.reward[0] - (1 + 0.5 * (health - 0.5) + 0.5 * (energy - 0.5))) < TOL
    assert r.reward[0] > 0.5
    w.set_meters(energy=0.004)
    r = w.step(WAIT)
    assert r.terminated[0] and r.reward[0] == 0.0


def test_interoception_per_town():
    w = World(L2, "torch", n=2, reward_mode="interoception")
    w.place(w.empty_cell())
    w.set_meters(**meters(0.6, fitness=1.0))
    w.set_meters(town=0, energy=1.0, health=1.0)
    w.set_meters(town=1, energy=0.3, health=0.2)
    r = w.step(WAIT, WAIT)
    e = np.array([1.0, 0.3]) - 0.006
    h = np.array([1.0, 0.2]) - 0.000505
    np.testing.assert_allclose(r.reward, 1 + 0.5 * (h - 0.5) + 0.5 * (e - 0.5), atol=TOL)


# --- baseline_relative ---------------------------------------------------------------------------

def test_baseline_relative_is_zero_before_the_end(backend):
    w = World(L2, backend, reward_mode="baseline_relative")
    for _ in range(5):
        r = w.step(WAIT)
        assert r.reward[0] == 0.0 and not r.terminated[0]


@pytest.mark.parametrize("mult,R", [(0.2, R_02), (0.5, R_05), (1.0, R_10)])
def test_baseline_relative_on_death_single_env(mult, R):
    """Dies on its 10th step: reward 10 - R(m)."""
    w = World(L2, "numpy", reward_mode="baseline_relative")
    w.set_difficulty([mult])
    w.set(steps=9)
    w.set_meters(energy=0.001)
    r = w.step(WAIT)
    assert r.terminated[0]
    assert abs(r.reward[0] - (10.0 - R)) < 1e-3


def test_per_agent_baselines_on_death_vector_env():
    """Multipliers [0.2, 1.0] set on the vector env; both die on their 10th step:
    rewards 10 - 500 = -490 and 10 - 166.67 = -156.67."""
    w = World(L2, "torch", n=2, reward_mode="baseline_relative")
    w.set_difficulty([0.2, 1.0])
    w.set(steps=9)
    w.set_meters(energy=0.001)
    r = w.step(WAIT, WAIT)
    np.testing.assert_array_equal(r.terminated, [True, True])
    np.testing.assert_allclose(r.reward, [10.0 - 500.0, 10.0 - 166.6666667], atol=1e-3)


def test_per_agent_baselines_on_truncation_vector_env():
    """Both reach the 500-step limit alive: 500 - 500 = 0 and 500 - 166.67 = 333.33."""
    w = World(L2, "torch", n=2, reward_mode="baseline_relative")
    w.set_difficulty([0.2, 1.0])
    w.set(steps=499)
    r = w.step(WAIT, WAIT)
    np.testing.assert_array_equal(r.truncated, [True, True])
    np.testing.assert_allclose(r.reward, [0.0, 500.0 - 166.6666667], atol=1e-3)


def test_per_agent_baselines_set_before_reset_and_mixed_endings():
    """set_difficulty before the first reset is kept; town 0 (m .2) dies at step 10,
    town 1 (m 1.0) lives on (0), town 2 (m .5) is truncated at 500."""
    from townlet_env import TownletVectorEnv

    env = TownletVectorEnv(3, L2, reward_mode="baseline_relative")
    env.set_difficulty(np.array([0.2, 1.0, 0.5], dtype=np.float32))
    env.reset(seed=0)
    env.state.steps[:] = 9
    env.state.steps[2] = 499
    env.state.meters[0, M["energy"]] = 0.001
    env._observe()
    _, reward, term, trunc, _ = env.step(np.full(3, WAIT))
    np.testing.assert_array_equal(term, [True, False, False])
    np.testing.assert_array_equal(trunc, [False, False, True])
    np.testing.assert_allclose(reward, [10.0 - 500.0, 0.0, 500.0 - R_05], atol=1e-3)


def test_reward_is_zero_on_the_autoreset_step():
    """NEXT_STEP autoreset: the step after a town's end resets it and pays 0."""
    w = World(L2, "torch", n=2, reward_mode="survival")
    w.set_meters(town=0, energy=0.004)
    r = w.step(WAIT, WAIT)
    np.testing.assert_array_equal(r.terminated, [True, False])
    np.testing.assert_array_equal(r.reward, [0.0, 1.0])
    r = w.env.step(np.array([INTERACT, WAIT]))
    _, reward, term, trunc, _ = r
    np.testing.assert_array_equal(reward, [0.0, 1.0])
    np.testing.assert_array_equal(term, [False, False])
    assert w.field("steps")[0] == 0 and abs(w.meters()[0, M["energy"]] - 1.0) < TOL


def test_interoception_weights_are_the_packs(tmp_path):
    """The shape of the interoception reward is pack data ([rewards.interoception])."""
    from townlet_env import TownletEnv
    from townlet_env.pack import pack_path

    level = pack_path("L2_partial_observability").read_text()
    flat = tmp_path / "flat.toml"
    flat.write_text(level + "\n[rewards.interoception]\nbase = 3.0\nhealth = 0.0\nenergy = 0.0\n")
    env = TownletEnv(str(flat), reward_mode="interoception")
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(WAIT)
    assert not terminated and reward == 3.0


def test_vector_env_reports_the_idle_survival_of_each_multiplier():
    """R(m) = 1 / (0.005 m + 0.001), the baseline a curriculum compares survival with."""
    from townlet_env import TownletVectorEnv

    env = TownletVectorEnv(1, L2)
    got = env.idle_survival([0.2, 0.5, 1.0]).tolist()
    assert got == pytest.approx([R_02, R_05, R_10])
