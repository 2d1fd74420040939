"""Curriculum: per-agent stages, one clean update per finished episode, a survival rate
that is read before anything resets it."""

from __future__ import annotations

import pytest
import torch

from townlet_agents.curriculum import Curriculum, StageChange

MAX_STEPS = 100


def _curriculum(num_agents=1, **kw):
    args = dict(num_agents=num_agents, max_steps=MAX_STEPS, window=50, min_episodes=20)
    args.update(kw)
    return Curriculum(**args)


def _finish(cur, lengths, done=None, entropy=None):
    lengths = torch.as_tensor(lengths)
    done = torch.ones_like(lengths, dtype=torch.bool) if done is None else torch.as_tensor(done)
    return cur.record_episodes(done, lengths, entropy=entropy)


def test_competent_agent_advances_after_min_episodes_and_reaches_the_last_stage():
    cur = _curriculum()
    for _ in range(19):
        assert _finish(cur, [MAX_STEPS]) == []
    assert cur.stage.tolist() == [0]
    assert cur.survival_rate().item() == pytest.approx(1.0)  # not zeroed by the update that fed it
    events = _finish(cur, [MAX_STEPS])
    assert events == [
        StageChange(
            agent=0, from_stage=0, to_stage=1, reason="advance", survival_rate=1.0,
            learning_progress=0.0, entropy=None, episodes_at_stage=20, progress_noise=0.0,
        )
    ]
    assert cur.stage.tolist() == [1] and cur.episodes_at_stage.tolist() == [0]
    assert cur.multipliers().tolist() == pytest.approx([0.5])
    stages = []
    for _ in range(200):
        _finish(cur, [MAX_STEPS])
        stages.append(cur.stage.item())
    assert stages[19] == 2 and stages[39] == 3 and stages[59] == 4  # one stage per 20 episodes
    assert stages[-1] == 4  # never past the last stage
    assert cur.multipliers().tolist() == pytest.approx([1.0])


def test_failing_agent_stays_at_stage_zero_and_retreats_from_higher_stages():
    cur = _curriculum()
    for _ in range(100):
        assert _finish(cur, [5]) == []  # survives 5% of the limit
    assert cur.stage.tolist() == [0]
    assert cur.survival_rate().item() == pytest.approx(0.05)

    cur = _curriculum()
    cur.stage[:] = 2
    for _ in range(19):
        _finish(cur, [5])
    events = _finish(cur, [5])
    assert [(e.from_stage, e.to_stage, e.reason) for e in events] == [(2, 1, "retreat")]
    assert events[0].survival_rate == pytest.approx(0.05)
    assert cur.multipliers().tolist() == pytest.approx([0.5])


def test_agents_are_independent_with_their_own_multipliers():
    cur = _curriculum(num_agents=3)
    for _ in range(20):
        # agent 0 competent, agent 1 failing, agent 2 never finishes an episode
        events = _finish(cur, [MAX_STEPS, 5, 3], done=[True, True, False])
    assert [(e.agent, e.to_stage) for e in events] == [(0, 1)]
    assert cur.stage.tolist() == [1, 0, 0]
    assert cur.multipliers().tolist() == pytest.approx([0.5, 0.2, 0.2])  # each agent its own
    assert cur.episodes_at_stage.tolist() == [0, 20, 0]
    # Agent 2 was never done, so its (mid-episode) lengths never entered its window.
    assert cur.filled.tolist() == [0, 20, 0]
    assert cur.survival_rate().tolist() == pytest.approx([0.0, 0.05, 0.0])


def test_survival_rate_and_progress_hand_numbers():
    cur = _curriculum(window=4, min_episodes=10)
    for length in (40, 40, 80, 80):
        _finish(cur, [length])
    assert cur.survival_rate().item() == pytest.approx(0.6)
    assert cur.learning_progress().item() == pytest.approx(0.4)  # (0.8 + 0.8)/2 - (0.4 + 0.4)/2
    _finish(cur, [100])  # window slides: 0.4, 0.8, 0.8, 1.0
    assert cur.survival_rate().item() == pytest.approx(0.75)
    assert cur.learning_progress().item() == pytest.approx(0.9 - 0.6)
    # Odd count: the oldest entry is left out of the progress halves.
    cur = _curriculum(window=4, min_episodes=10)
    for length in (10, 40, 80):
        _finish(cur, [length])
    assert cur.survival_rate().item() == pytest.approx(130 / 300)
    assert cur.learning_progress().item() == pytest.approx(0.8 - 0.4)


def test_negative_progress_retreats_even_with_good_survival():
    cur = _curriculum(window=4, min_episodes=4)
    cur.stage[:] = 2
    for length in (90, 90, 70):
        assert _finish(cur, [length]) == []
    (event,) = _finish(cur, [70])  # survival 0.8 >= 0.7 but progress -0.2 < -0.1
    assert (event.reason, event.to_stage) == ("retreat", 1)
    assert event.survival_rate == pytest.approx(0.8)
    assert event.learning_progress == pytest.approx(-0.2)


def test_progress_noise_is_the_standard_error_of_the_half_means_difference():
    cur = _curriculum(window=6, min_episodes=100)
    for length in (20, 40, 60, 50, 70, 90):
        _finish(cur, [length])
    # older 0.2 0.4 0.6 (mean 0.4, s^2 0.04), newer 0.5 0.7 0.9 (mean 0.7, s^2 0.04)
    assert cur.learning_progress().item() == pytest.approx(0.3)
    assert cur.progress_noise().item() == pytest.approx(((0.04 + 0.04) / 3) ** 0.5)
    cur = _curriculum(window=4, min_episodes=100)
    _finish(cur, [50])
    _finish(cur, [90])  # one entry a half: no variance to estimate
    assert cur.progress_noise().item() == 0.0


def test_a_fall_within_noise_does_not_retreat_but_a_fall_beyond_it_does():
    # Survival that swings from town to town: the newer half is 0.15 lower, but the
    # difference's standard error is 0.34, so the agent stays (the plain -0.1 rule would
    # have retreated).
    cur = _curriculum(window=4, min_episodes=4)
    cur.stage[:] = 2
    for length in (100, 70, 40):
        assert _finish(cur, [length]) == []
    assert _finish(cur, [100]) == []  # older 1.0 0.7, newer 0.4 1.0: progress -0.15, noise 0.34
    assert cur.stage.tolist() == [2]
    assert cur.learning_progress().item() == pytest.approx(-0.15)
    assert cur.progress_noise().item() == pytest.approx(((0.045 + 0.18) / 2) ** 0.5)
    # The same drop with steady episodes is beyond noise: retreat, with the numbers.
    cur = _curriculum(window=4, min_episodes=4)
    cur.stage[:] = 2
    for length in (85, 85, 70):
        _finish(cur, [length])
    (event,) = _finish(cur, [70])
    assert (event.reason, event.to_stage) == ("retreat", 1)
    assert event.learning_progress == pytest.approx(-0.15) and event.progress_noise == 0.0


def test_high_entropy_blocks_advance_when_the_entropy_gate_is_set():
    cur = _curriculum(window=4, min_episodes=4, entropy_threshold=0.5)
    for _ in range(10):
        assert _finish(cur, [MAX_STEPS], entropy=torch.tensor([0.9])) == []
    assert cur.stage.tolist() == [0]
    (event,) = _finish(cur, [MAX_STEPS], entropy=torch.tensor([0.1]))
    assert event.reason == "advance" and event.entropy == pytest.approx(0.1)
    assert event.as_dict() == {
        "agent": 0, "from_stage": 0, "to_stage": 1, "reason": "advance", "survival_rate": 1.0,
        "learning_progress": 0.0, "entropy": pytest.approx(0.1), "episodes_at_stage": 11,
        "idle_baseline": None, "progress_noise": 0.0,
    }


def test_window_and_count_reset_on_change():
    cur = _curriculum(window=4, min_episodes=4)
    for _ in range(4):
        _finish(cur, [MAX_STEPS])
    assert cur.stage.tolist() == [1]
    assert cur.filled.tolist() == [0] and cur.survival_rate().tolist() == [0.0]
    # Evidence from stage 0 must not carry: three poor episodes at stage 1 are not enough
    # to decide, the fourth is.
    for _ in range(3):
        assert _finish(cur, [10]) == []
    (event,) = _finish(cur, [10])
    assert (event.reason, event.to_stage, event.episodes_at_stage) == ("retreat", 0, 4)


def test_tensor_variant_reports_changes_without_events():
    cur = _curriculum(num_agents=2, window=4, min_episodes=4)
    for _ in range(3):
        upd = cur.record_episodes_tensor(torch.tensor([True, True]), torch.tensor([100, 100]))
        assert upd.change.tolist() == [0, 0]
    upd = cur.record_episodes_tensor(torch.tensor([True, False]), torch.tensor([100, 100]))
    assert upd.change.tolist() == [1, 0]
    assert upd.from_stage.tolist() == [0, 0] and upd.episodes_at_stage.tolist() == [4, 3]
    assert upd.survival_rate.tolist() == pytest.approx([1.0, 1.0])
    assert cur.stage.tolist() == [1, 0]


def test_state_round_trip_continues_identically():
    cur = _curriculum(num_agents=2, window=6, min_episodes=5)
    g = torch.Generator().manual_seed(0)
    for _ in range(13):
        cur.record_episodes(torch.rand(2, generator=g) < 0.7, torch.randint(60, 101, (2,), generator=g))
    state = cur.state_dict()
    assert all(isinstance(v, (torch.Tensor, int, float)) for v in state.values())
    other = _curriculum(num_agents=2, window=6, min_episodes=5)
    other.load_state_dict(state)
    for _ in range(30):
        done, lengths = torch.rand(2, generator=g) < 0.7, torch.randint(0, 101, (2,), generator=g)
        assert cur.record_episodes(done, lengths) == other.record_episodes(done, lengths)
        assert torch.equal(cur.stage, other.stage)
    with pytest.raises(ValueError, match="agents, window"):
        _curriculum(num_agents=3, window=6).load_state_dict(state)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="retreat_survival"):
        _curriculum(advance_survival=0.2, retreat_survival=0.5)
    with pytest.raises(ValueError, match="multipliers"):
        _curriculum(multipliers=())


def test_tensor_variant_never_reads_tensors_back_to_the_host():
    # "meta" tensors have no data, so any host read (.item(), nonzero, Python `if`) would raise.
    cur = _curriculum(num_agents=8, device="meta")
    upd = cur.record_episodes_tensor(
        torch.empty(8, dtype=torch.bool, device="meta"),
        torch.empty(8, device="meta"),
        entropy=torch.empty(8, device="meta"),
        returns=torch.empty(8, device="meta"),
    )
    assert upd.change.shape == (8,) and cur.multipliers().shape == (8,)


def test_idle_baseline_blocks_advancing_on_survival_an_idler_reaches():
    """Stage 0's idle baseline is the whole step limit (an agent that only WAITs lives it
    out at multiplier 0.2 on L2): 0.9 survival there is not enough; at stage 1 (idle
    baseline 0.57) the same record advances."""
    cur = Curriculum(1, 500, multipliers=(0.2, 0.5, 1.0), window=4, min_episodes=4,
                     idle_baselines=(1.0, 0.57, 0.33))
    done, length = torch.tensor([True]), torch.tensor([450])
    for _ in range(6):
        assert cur.record_episodes(done, length) == []
    for _ in range(4):
        events = cur.record_episodes(done, torch.tensor([500]))
    assert [(e.from_stage, e.to_stage, e.idle_baseline) for e in events] == [(0, 1, 1.0)]
    for _ in range(3):
        assert cur.record_episodes(done, length) == []
    [event] = cur.record_episodes(done, length)
    assert (event.from_stage, event.to_stage, event.reason) == (1, 2, "advance")
    assert event.idle_baseline == pytest.approx(0.57)


def test_entropy_gate_is_off_unless_set():
    """Near-uniform softmax(Q) entropy (1.7 nats) never blocks the default curriculum."""
    cur = Curriculum(1, 100, multipliers=(0.5, 1.0), window=2, min_episodes=2)
    high = torch.tensor([1.7])
    cur.record_episodes(torch.tensor([True]), torch.tensor([100]), entropy=high)
    [event] = cur.record_episodes(torch.tensor([True]), torch.tensor([100]), entropy=high)
    assert event.reason == "advance" and event.idle_baseline is None
    gated = Curriculum(1, 100, multipliers=(0.5, 1.0), window=2, min_episodes=2, entropy_threshold=1.5)
    for _ in range(3):
        assert gated.record_episodes(torch.tensor([True]), torch.tensor([100]), entropy=high) == []


def test_one_idle_baseline_per_stage():
    with pytest.raises(ValueError, match="one idle baseline per stage"):
        Curriculum(1, 100, multipliers=(0.5, 1.0), idle_baselines=(1.0,))
