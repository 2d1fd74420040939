"""Exploration: epsilon schedule and ladder, masked epsilon-greedy, running stats, RND, annealing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from townlet_agents.exploration import (
    RND,
    EpsilonSchedule,
    HeldExploration,
    IntrinsicAnnealer,
    RunningMeanStd,
    masked_epsilon_greedy,
)

NUM_ACTIONS = 6


# ------------------------------------------------------------------ EpsilonSchedule
def test_linear_decay_hits_hand_values_and_stays_at_end():
    sched = EpsilonSchedule(start=1.0, end=0.1, decay_steps=100)
    assert sched.values(0, 3, "cpu").tolist() == pytest.approx([1.0] * 3)
    assert sched.values(50, 3, "cpu").tolist() == pytest.approx([0.55] * 3)
    assert sched.values(100, 3, "cpu").tolist() == pytest.approx([0.1] * 3)
    assert sched.values(10_000, 3, "cpu").tolist() == pytest.approx([0.1] * 3)


def test_ladder_follows_apex_formula():
    # base 0.4 at step 0; agent i of 3 gets 0.4 ** (1 + 7 * i / 2)
    sched = EpsilonSchedule(start=0.4, end=0.01, decay_steps=10, ladder=True, ladder_alpha=7.0)
    eps = sched.values(0, 3, "cpu")
    assert eps.tolist() == pytest.approx([0.4, 0.4**4.5, 0.4**8.0], rel=1e-5)
    assert eps.dtype == torch.float32 and eps.shape == (3,)
    # One agent: the ladder is just the base value.
    assert sched.values(0, 1, "cpu").tolist() == pytest.approx([0.4])


def test_schedule_rejects_bad_numbers():
    with pytest.raises(ValueError, match="start"):
        EpsilonSchedule(start=1.5, end=0.1, decay_steps=10)
    with pytest.raises(ValueError, match="decay_steps"):
        EpsilonSchedule(start=1.0, end=0.1, decay_steps=-1)


# ------------------------------------------------------------ masked_epsilon_greedy
@st.composite
def q_mask_eps(draw):
    n = draw(st.integers(1, 16))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, NUM_ACTIONS, generator=g) * 10
    mask = torch.rand(n, NUM_ACTIONS, generator=g) < draw(st.floats(0.05, 0.95))
    forced = torch.randint(0, NUM_ACTIONS, (n,), generator=g)
    mask[torch.arange(n), forced] = True  # at least one allowed action per row
    eps = torch.rand(n, generator=g)
    return q, mask, eps, seed


@settings(max_examples=200, deadline=None)
@given(q_mask_eps())
def test_never_picks_a_masked_action(sample):
    q, mask, eps, seed = sample
    actions = masked_epsilon_greedy(q, mask, eps, generator=torch.Generator().manual_seed(seed))
    assert actions.dtype == torch.long and actions.shape == (q.shape[0],)
    assert mask.gather(1, actions[:, None]).all()


def test_greedy_picks_best_allowed_even_when_best_overall_is_masked():
    q = torch.tensor([[1.0, 5.0, 3.0, 0.0, -1.0, 2.0], [9.0, 8.0, 7.0, 6.0, 5.0, 10.0]])
    mask = torch.tensor([[True, False, True, True, True, True], [False, True, True, False, True, False]])
    actions = masked_epsilon_greedy(q, mask, torch.zeros(2))
    assert actions.tolist() == [2, 1]


def test_full_exploration_is_uniform_over_allowed_actions():
    n = 6000
    q = torch.zeros(n, NUM_ACTIONS)
    q[:, 1] = 100.0  # the greedy choice, but masked
    mask = torch.tensor([True, False, True, True, False, False]).expand(n, NUM_ACTIONS)
    actions = masked_epsilon_greedy(q, mask, torch.ones(n), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(actions, minlength=NUM_ACTIONS).float()
    assert counts[[1, 4, 5]].sum() == 0
    expected = n / 3
    chi2 = ((counts[[0, 2, 3]] - expected) ** 2 / expected).sum()
    assert chi2 < 13.8  # 99.9% quantile of chi-square with 2 degrees of freedom


def test_epsilon_is_per_agent():
    n = 4000
    q = torch.zeros(2 * n, NUM_ACTIONS)
    q[:, 3] = 1.0
    mask = torch.ones(2 * n, NUM_ACTIONS, dtype=torch.bool)
    eps = torch.cat([torch.zeros(n), torch.ones(n)])
    actions = masked_epsilon_greedy(q, mask, eps, generator=torch.Generator().manual_seed(1))
    assert (actions[:n] == 3).all()  # greedy agents
    explored = (actions[n:] != 3).float().mean().item()
    assert explored == pytest.approx(5 / 6, abs=0.03)  # random agents hit the greedy action 1/6 of the time


# ------------------------------------------------------------------ HeldExploration (ez-greedy)


def test_hold_durations_follow_the_truncated_zeta_law():
    # mu = 2, max_hold = 3: P(n) = n^-2 / (1 + 1/4 + 1/9) = 36/49, 9/49, 4/49.
    hold = HeldExploration(2.0, 1, max_hold=3)
    assert hold.cdf.tolist() == pytest.approx([36 / 49, 45 / 49, 1.0])
    n = 49_000
    hold = HeldExploration(2.0, n, max_hold=3)
    q = torch.zeros(n, NUM_ACTIONS)
    q[:, 5] = 1.0
    mask = torch.ones(n, NUM_ACTIONS, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    hold.choose(q, mask, torch.ones(n), generator=g)  # every agent starts a hold
    counts = torch.bincount(hold.left + 1, minlength=4)[1:].float()
    expected = torch.tensor([36_000.0, 9_000.0, 4_000.0])
    assert ((counts - expected) ** 2 / expected).sum() < 13.8  # chi-square, 2 dof, 99.9%


def test_a_hold_repeats_its_action_then_gives_back_to_greedy():
    hold = HeldExploration(2.0, 1, max_hold=100)
    q = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    mask = torch.ones(1, NUM_ACTIONS, dtype=torch.bool)
    hold.action = torch.tensor([2])
    hold.left = torch.tensor([3])  # three more steps of action 2
    taken = [hold.choose(q, mask, torch.zeros(1)).item() for _ in range(5)]
    assert taken == [2, 2, 2, 5, 5]
    assert hold.left.item() == 0


def test_a_hold_ends_at_a_wall_and_at_the_end_of_an_episode():
    hold = HeldExploration(2.0, 2, max_hold=100)
    q = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]] * 2)
    hold.action = torch.tensor([0, 0])
    hold.left = torch.tensor([10, 10])
    mask = torch.ones(2, NUM_ACTIONS, dtype=torch.bool)
    mask[0, 0] = False  # agent 0 reached a wall: its held move is no longer allowed
    assert hold.choose(q, mask, torch.zeros(2)).tolist() == [5, 0]
    assert hold.left.tolist() == [0, 9]
    hold.end_episodes(torch.tensor([False, True]))
    assert hold.left.tolist() == [0, 0]
    assert hold.choose(q, torch.ones(2, NUM_ACTIONS, dtype=torch.bool), torch.zeros(2)).tolist() == [5, 5]


@settings(max_examples=100, deadline=None)
@given(q_mask_eps())
def test_held_exploration_never_picks_a_masked_action(sample):
    q, mask, eps, seed = sample
    hold = HeldExploration(1.5, q.shape[0], max_hold=8)
    g = torch.Generator().manual_seed(seed)
    for step in range(6):  # holds carry over steps whose masks differ
        m = mask.roll(step, dims=1)
        actions = hold.choose(q, m, eps, generator=g)
        assert m.gather(1, actions[:, None]).all()
        assert (hold.left >= 0).all() and (hold.left < 8).all()


def test_held_exploration_state_round_trips_and_checks_its_size():
    hold = HeldExploration(2.0, 4)
    hold.left, hold.action = torch.tensor([0, 3, 1, 0]), torch.tensor([1, 2, 3, 4])
    other = HeldExploration(2.0, 4)
    other.load_state_dict(hold.state_dict())
    assert other.left.tolist() == [0, 3, 1, 0] and other.action.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="4 agents, this run has 5"):
        HeldExploration(2.0, 5).load_state_dict(hold.state_dict())
    with pytest.raises(ValueError, match="mu must be > 1"):
        HeldExploration(1.0, 4)
    with pytest.raises(ValueError, match="max_hold"):
        HeldExploration(2.0, 4, max_hold=0)


# ------------------------------------------------------------------ RunningMeanStd
def test_running_mean_std_batched_equals_whole_data():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(300, 4, generator=g) * torch.tensor([1.0, 2.0, 5.0, 0.1]) + torch.tensor([0.0, 3.0, -2.0, 10.0])
    rms = RunningMeanStd((4,), epsilon=0.0 + 1e-12)
    for chunk in data.split([1, 10, 89, 200]):
        rms.update(chunk)
    torch.testing.assert_close(rms.mean, data.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rms.var, data.var(0, unbiased=False), rtol=1e-4, atol=1e-5)
    assert rms.count == pytest.approx(300)

    other = RunningMeanStd((4,))
    other.load_state_dict(rms.state_dict())
    torch.testing.assert_close(other.mean, rms.mean)
    torch.testing.assert_close(other.var, rms.var)


def test_running_mean_std_hand_numbers():
    rms = RunningMeanStd((), epsilon=1e-12)
    rms.update(torch.tensor([1.0, 3.0]))
    rms.update(torch.tensor([5.0]))
    assert rms.mean.item() == pytest.approx(3.0)
    assert rms.var.item() == pytest.approx(8.0 / 3.0)  # ((1-3)^2 + 0 + (5-3)^2) / 3


# ------------------------------------------------------------------------------ RND
def _rnd(seed=0, dim=8):
    torch.manual_seed(seed)
    return RND(obs_dim=dim, hidden=32, out=16, lr=1e-2)


def test_rnd_reward_is_raw_error_over_running_std_of_errors():
    rnd = _rnd()
    obs = torch.randn(64, 8, generator=torch.Generator().manual_seed(3))
    reward = rnd.intrinsic_reward(obs)
    assert reward.shape == (64,) and torch.isfinite(reward).all() and (reward >= 0).all()
    # Stats now include this batch: the bonus is the raw error divided by the running std.
    with torch.no_grad():
        raw = rnd.prediction_error(obs)
    torch.testing.assert_close(reward, raw / rnd.reward_rms.std)
    # After one batch the error statistics are those of the batch itself (tiny prior count).
    assert rnd.reward_rms.var.item() == pytest.approx(raw.var(unbiased=False).item(), rel=2e-2)
    assert abs(rnd.reward_rms.std.item() - 1.0) > 1e-3  # the division actually rescales


def test_rnd_observation_normalisation_is_clipped():
    rnd = _rnd()
    rnd.obs_rms.update(torch.randn(1000, 8, generator=torch.Generator().manual_seed(0)))
    far = torch.full((2, 8), 1e6)
    norm = rnd.normalise_obs(far)
    assert norm.max().item() == pytest.approx(5.0)
    assert rnd.normalise_obs(-far).min().item() == pytest.approx(-5.0)


def test_rnd_training_makes_seen_states_less_novel_than_unseen():
    rnd = _rnd(seed=1)
    g = torch.Generator().manual_seed(2)
    seen = torch.randn(32, 8, generator=g)
    unseen = torch.randn(32, 8, generator=g) + 3.0
    rnd.intrinsic_reward(torch.cat([seen, unseen]))  # observation statistics cover both
    first = rnd.update(seen)
    for _ in range(200):
        last = rnd.update(seen)
    assert first.requires_grad is False and last.item() < 0.2 * first.item()
    r_seen = rnd.intrinsic_reward(seen, update_stats=False)
    r_unseen = rnd.intrinsic_reward(unseen, update_stats=False)
    assert r_seen.mean().item() < 0.5 * r_unseen.mean().item()


def test_rnd_target_is_fixed_and_state_round_trips():
    rnd = _rnd()
    before = [p.clone() for p in rnd.target.parameters()]
    obs = torch.randn(16, 8, generator=torch.Generator().manual_seed(4))
    rnd.intrinsic_reward(obs)
    rnd.update(obs)
    for p, q in zip(before, rnd.target.parameters()):
        assert torch.equal(p, q)
    clone = _rnd(seed=99)
    clone.load_state_dict(rnd.state_dict())
    torch.testing.assert_close(
        clone.intrinsic_reward(obs, update_stats=False), rnd.intrinsic_reward(obs, update_stats=False)
    )


# --------------------------------------------------------------- IntrinsicAnnealer
def _annealer(**kw):
    args = dict(initial_weight=1.0, window=4, variance_threshold=10.0, survival_floor=50.0, decay=0.5)
    args.update(kw)
    return IntrinsicAnnealer(**args)


def test_high_variance_does_not_anneal():
    ann = _annealer()
    ann.observe(torch.tensor([10, 200, 10, 200]))  # mean 105, variance 9025
    assert ann.weight == 1.0


def test_low_variance_but_short_survival_does_not_anneal():
    ann = _annealer()
    ann.observe(torch.tensor([20, 21, 20, 21]))  # variance 0.25, mean 20.5 < 50
    assert ann.weight == 1.0


def test_low_variance_long_survival_anneals_once_then_needs_a_fresh_window():
    ann = _annealer()
    ann.observe(torch.tensor([100, 101, 100]))  # window not full yet
    assert ann.weight == 1.0
    ann.observe(torch.tensor([101]))  # full: variance 0.25, mean 100.5 -> anneal
    assert ann.weight == pytest.approx(0.5)
    ann.observe(torch.tensor([100, 100, 100]))  # window was cleared: 3 of 4
    assert ann.weight == pytest.approx(0.5)
    ann.observe(torch.tensor([100]))
    assert ann.weight == pytest.approx(0.25)


def test_only_done_entries_are_recorded_and_window_keeps_latest():
    ann = _annealer()
    # Agents 1 and 3 are still alive: their (short) step counts must not enter the window.
    ann.observe(torch.tensor([100, 3, 101, 2]), done=torch.tensor([True, False, True, False]))
    ann.observe(torch.tensor([100, 1, 101, 5]), done=torch.tensor([True, False, True, False]))
    assert ann.weight == pytest.approx(0.5)
    # More episodes than the window in one call: only the last 4 count (all long, stable).
    ann2 = _annealer()
    ann2.observe(torch.tensor([1, 500, 3, 100, 100, 100, 100]))
    assert ann2.weight == pytest.approx(0.5)


def test_no_finished_episodes_is_a_no_op():
    ann = _annealer()
    ann.observe(torch.tensor([100, 100]), done=torch.tensor([False, False]))
    ann.observe(torch.tensor([], dtype=torch.long))
    assert ann.state_dict()["count"].item() == 0 and ann.weight == 1.0


def test_weight_never_below_minimum_and_state_round_trips():
    ann = _annealer(min_weight=0.3)
    for _ in range(3):
        ann.observe(torch.full((4,), 100))
    assert ann.weight == pytest.approx(0.3)
    assert ann.weight_tensor.dtype == torch.float32
    ann.observe(torch.tensor([100, 100]))
    other = _annealer(min_weight=0.3)
    other.load_state_dict(ann.state_dict())
    assert other.weight == pytest.approx(0.3)
    other.observe(torch.tensor([100, 100]))  # completes the window restored from the state
    ann.observe(torch.tensor([100, 100]))
    assert other.weight == ann.weight == pytest.approx(0.3)
    assert torch.equal(other.state_dict()["count"], ann.state_dict()["count"])
    assert math.isclose(other.state_dict()["count"].item(), 0)


def test_hot_paths_never_read_tensors_back_to_the_host():
    # On the "meta" device tensors have no data: any .item()/.tolist()/Python `if` on a
    # tensor value raises, so running the acting/learning paths there proves they are sync-free.
    dev = "meta"
    n = 8
    eps = EpsilonSchedule(1.0, 0.1, 10, ladder=True).values(3, n, dev)
    q = torch.empty(n, NUM_ACTIONS, device=dev)
    mask = torch.empty(n, NUM_ACTIONS, dtype=torch.bool, device=dev)
    assert masked_epsilon_greedy(q, mask, eps).shape == (n,)
    hold = HeldExploration(2.0, n, device=dev)
    assert hold.choose(q, mask, eps).shape == (n,)
    hold.end_episodes(torch.empty(n, dtype=torch.bool, device=dev))
    rms = RunningMeanStd((3,), device=dev)
    rms.update(torch.empty(5, 3, device=dev))
    ann = IntrinsicAnnealer(1.0, window=4, device=dev)
    ann.observe(torch.empty(n, device=dev), torch.empty(n, dtype=torch.bool, device=dev))
    rnd = RND(obs_dim=10, hidden=16, out=8, device=dev)
    assert rnd.intrinsic_reward(torch.empty(n, 10, device=dev)).shape == (n,)
    assert rnd.update(torch.empty(n, 10, device=dev)).device.type == "meta"
