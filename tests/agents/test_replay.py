"""Sequence replay: padding and masks, overlap, truncation, flushing, ring and sampling.

A `Stream` drives the buffer with recognisable numbers: agent a's observation at step t
of its episode e is `[a, 100 e + t, 1]`, its recurrent state before consuming that
observation is `100 e + t` in every unit (h) and the negative (c), the action and
extrinsic reward of the step that leads to step t are `t`, the intrinsic reward `10 t`.
"""

import io

import pytest
import torch

from townlet_agents.replay import SequenceReplay

D, A, H = 3, 2, 2
F, T = False, True


class Stream:
    def __init__(self, replay: SequenceReplay):
        self.replay = replay
        self.n = replay.num_agents
        self.t = torch.zeros(self.n, dtype=torch.long)
        self.episode = torch.zeros(self.n, dtype=torch.long)
        replay.begin(self.obs(), self.mask(), self.state())

    def twin(self, replay):
        """The same stream position driving another buffer (without calling begin)."""
        other = Stream.__new__(Stream)
        other.replay, other.n = replay, self.n
        other.t, other.episode = self.t.clone(), self.episode.clone()
        return other

    def ids(self, episode=None, t=None):
        episode = self.episode if episode is None else episode
        t = self.t if t is None else t
        return (100 * episode + t).float()

    def obs(self, **kw):
        return torch.stack([torch.arange(self.n).float(), self.ids(**kw), torch.ones(self.n)], dim=1)

    def mask(self, **kw):
        # Action 1 allowed on even steps only: recognisable in storage.
        return torch.stack([torch.ones(self.n, dtype=torch.bool), self.ids(**kw) % 2 == 0], dim=1)

    def state(self):
        h = self.ids().unsqueeze(1).expand(self.n, H).clone()
        return (h, -h)

    def step(self, terminated=(), truncated=()):
        term = torch.zeros(self.n, dtype=torch.bool)
        trunc = torch.zeros(self.n, dtype=torch.bool)
        term[list(terminated)] = True
        trunc[list(truncated)] = True
        self.t += 1
        reset_kw = dict(episode=self.episode + 1, t=torch.zeros_like(self.t))
        self.replay.add(
            action=self.t.clone(),
            reward_ext=self.t.float(),
            reward_int=10 * self.t.float(),
            terminated=term,
            truncated=trunc,
            next_obs=self.obs(),
            next_action_mask=self.mask(),
            next_state=self.state(),
            reset_obs=self.obs(**reset_kw),
            reset_action_mask=self.mask(**reset_kw),
        )
        ended = term | trunc
        self.episode = torch.where(ended, self.episode + 1, self.episode)
        self.t = torch.where(ended, 0, self.t)


def make(capacity=8, num_agents=1, seq_len=8, recurrent=True):
    return SequenceReplay(capacity, num_agents, seq_len, D, A, H, "cpu", recurrent=recurrent)


def row(replay, slot):
    return {name: value[slot] for name, value in replay.storage.items()}


def bools(*flags):
    return torch.tensor(flags, dtype=torch.bool)


def test_three_step_episode_is_kept_padded_and_masked():
    replay = make()
    stream = Stream(replay)
    stream.step()
    stream.step()
    stream.step(terminated=[0])
    assert int(replay.size) == 1 and int(replay.total_emitted) == 1
    seq = row(replay, 0)
    assert torch.equal(seq["valid"], bools(T, T, T, F, F, F, F, F))
    assert torch.equal(seq["terminated"], bools(F, F, T, F, F, F, F, F))
    assert not seq["truncated"].any()
    assert seq["action"].tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    assert seq["reward_ext"].tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    assert seq["reward_int"].tolist() == [10, 20, 30, 0, 0, 0, 0, 0]
    assert seq["obs"][:4, 1].tolist() == [0, 1, 2, 3]  # index 3 = final observation
    assert seq["action_mask"][:4, 1].tolist() == [T, F, T, F]
    assert torch.equal(seq["h0"], torch.zeros(H)) and torch.equal(seq["c0"], torch.zeros(H))
    # The next window starts at the reset observation of episode 1, from a zero state.
    assert int(replay.pos[0]) == 0
    assert replay.staging["obs"][0, 0, 1].item() == 100
    assert not replay.staging["h0"].any()


@pytest.mark.parametrize("k", range(1, 9))
def test_terminal_at_step_k_is_valid_through_k(k):
    replay = make()
    stream = Stream(replay)
    for _ in range(k - 1):
        stream.step()
    stream.step(terminated=[0])
    seq = row(replay, 0)
    assert seq["valid"].tolist() == [i < k for i in range(8)]
    assert seq["terminated"].tolist() == [i == k - 1 for i in range(8)]
    assert int(replay.total_emitted) == 1
    replay.flush(stream.state())  # a full-and-terminated window restarts, it is not shifted
    assert int(replay.total_emitted) == 1


def test_overlapping_windows_of_an_ongoing_stream():
    replay = make()
    stream = Stream(replay)
    for _ in range(7):
        stream.step()
    assert int(replay.total_emitted) == 0
    stream.step()  # step 8 fills the window
    assert int(replay.total_emitted) == 1
    first = row(replay, 0)
    assert first["obs"][:, 1].tolist() == list(range(9))
    assert first["action"].tolist() == list(range(1, 9))
    assert first["valid"].all() and not first["terminated"].any()
    assert first["h0"].tolist() == [0, 0]
    assert first["episode_start"]  # begun at the stream's first step: zero state is exact

    for _ in range(4):  # steps 9..12 fill the shifted window (it started at step 4)
        stream.step()
    assert int(replay.total_emitted) == 2
    second = row(replay, 1)
    assert second["obs"][:, 1].tolist() == list(range(4, 13))
    assert second["action"].tolist() == list(range(5, 13))
    assert second["reward_int"].tolist() == [10.0 * i for i in range(5, 13)]
    assert second["action_mask"][:, 1].tolist() == [i % 2 == 0 for i in range(4, 13)]
    assert second["h0"].tolist() == [4, 4] and second["c0"].tolist() == [-4, -4]
    assert second["valid"].all()
    assert not second["episode_start"]  # begins mid-episode, at step 4

    stream.step()  # step 13; the window now holds steps 8..12 (4 already emitted)
    replay.flush(stream.state())
    assert int(replay.total_emitted) == 3
    third = row(replay, 2)
    assert third["obs"][:6, 1].tolist() == list(range(8, 14))
    assert third["valid"].tolist() == [T] * 5 + [F] * 3
    assert third["h0"].tolist() == [8, 8]
    assert not third["episode_start"]


def test_flush_after_a_full_window_does_not_repeat_the_overlap():
    replay = make()
    stream = Stream(replay)
    for _ in range(8):
        stream.step()
    replay.flush(stream.state())  # steps 4..7 staged for overlap were already emitted
    assert int(replay.total_emitted) == 1
    stream.step()
    replay.flush(stream.state())
    assert int(replay.total_emitted) == 2
    seq = row(replay, 1)
    assert seq["obs"][:2, 1].tolist() == [8, 9] and seq["h0"].tolist() == [8, 8]
    assert seq["valid"].tolist() == [T] + [F] * 7


def test_truncation_keeps_the_final_observation_for_bootstrapping():
    replay = make()
    stream = Stream(replay)
    for _ in range(4):
        stream.step()
    stream.step(truncated=[0])
    seq = row(replay, 0)
    assert seq["obs"][5].tolist() == [0, 5, 1]  # the final observation, at index pos = 5
    assert seq["truncated"].tolist() == [i == 4 for i in range(8)]
    assert not seq["terminated"].any()
    assert seq["valid"].tolist() == [i < 5 for i in range(8)]
    stream.step(terminated=[0])  # the next episode starts at the reset observation
    nxt = row(replay, 1)
    assert nxt["obs"][:2, 1].tolist() == [100, 101]


def test_agents_are_independent():
    replay = make(num_agents=2)
    reference = make(num_agents=2)
    stream, ref_stream = Stream(replay), Stream(reference)
    for step in range(1, 9):
        stream.step(terminated=[1] if step == 2 else [])
        ref_stream.step()
        for name, value in replay.staging.items():  # agent 0's window is untouched
            assert torch.equal(value[0], reference.staging[name][0]), name
        assert int(replay.pos[0]) == int(reference.pos[0])
    # Slot 0: agent 1's 2-step episode (step 2). Slot 1: agent 0's full window (step 8);
    # agent 1's second episode has only 6 steps by then, so it is still staged.
    assert int(replay.total_emitted) == 2
    ep = row(replay, 0)
    assert ep["obs"][0, 0] == 1 and ep["valid"].tolist() == [T, T] + [F] * 6
    full = row(replay, 1)
    assert full["obs"][:, 0].eq(0).all() and full["obs"][:, 1].tolist() == list(range(9))
    assert int(replay.pos[1]) == 6 and replay.staging["obs"][1, 0, 1].item() == 100


def test_flush_emits_unfinished_windows_exactly_once():
    replay = make(num_agents=3)
    stream = Stream(replay)
    stream.step()
    stream.step()
    stream.step(terminated=[2])
    assert int(replay.total_emitted) == 1
    replay.flush(stream.state())  # agents 0 and 1 (3 steps each); agent 2 has nothing new
    assert int(replay.total_emitted) == 3
    for slot, agent in ((1, 0), (2, 1)):
        seq = row(replay, slot)
        assert seq["obs"][0, 0] == agent
        assert seq["valid"].tolist() == [T, T, T] + [F] * 5
        assert seq["obs"][:4, 1].tolist() == [0, 1, 2, 3]
        assert not seq["terminated"].any() and not seq["truncated"].any()
    replay.flush(stream.state())
    assert int(replay.total_emitted) == 3  # nothing is emitted twice

    stream.step()
    stream.step()
    replay.flush(stream.state())
    assert int(replay.total_emitted) == 6
    after = row(replay, 3)  # agent 0 resumes at its current observation and state
    assert after["obs"][:3, 1].tolist() == [3, 4, 5]
    assert after["action"][:2].tolist() == [4, 5]
    assert after["h0"].tolist() == [3, 3]
    assert after["valid"].tolist() == [T, T] + [F] * 6
    assert row(replay, 5)["obs"][:3, 1].tolist() == [100, 101, 102]  # agent 2's episode 1


def test_ring_wraps_around_and_non_emitters_do_not_touch_it():
    replay = make(capacity=4, num_agents=3, seq_len=2)
    stream = Stream(replay)
    stream.step(terminated=[0, 1, 2])  # slots 0, 1, 2
    stream.step(terminated=[0, 1, 2])  # slots 3, 0, 1
    assert int(replay.size) == 4 and int(replay.total_emitted) == 6
    agent_and_episode = [tuple(row(replay, s)["obs"][0, :2].tolist()) for s in range(4)]
    assert agent_and_episode == [(1, 100), (2, 100), (2, 0), (0, 100)]

    before = {name: value[:4].clone() for name, value in replay.storage.items()}
    stream.step(terminated=[0, 2])  # agents 0 and 2 emit into slots 2 and 3, agent 1 does not
    assert int(replay.total_emitted) == 8
    assert row(replay, 2)["obs"][0, :2].tolist() == [0, 200]
    assert row(replay, 3)["obs"][0, :2].tolist() == [2, 200]
    for name in before:
        assert torch.equal(replay.storage[name][:2], before[name][:2]), name


def test_uniform_sampling_is_over_sequences_not_episodes():
    replay = make(capacity=16, num_agents=2)
    stream = Stream(replay)
    # Agent 0 has 1-step episodes, agent 1 one 7-step episode: 8 sequences in all.
    for step in range(1, 8):
        stream.step(terminated=[0, 1] if step == 7 else [0])
    assert int(replay.size) == 8
    gen = torch.Generator().manual_seed(0)
    batch = replay.sample(40_000, generator=gen)
    counts = torch.bincount(batch["indices"], minlength=16)
    assert counts[8:].sum() == 0  # never an empty slot
    assert (counts[:8] - 5000).abs().max() < 300  # 5000 expected each, std ~66
    assert torch.equal(batch["weights"], torch.ones(40_000))
    assert batch["obs"].shape == (40_000, 9, D) and batch["h0"].shape == (40_000, H)
    i = int(batch["indices"][0])
    assert torch.equal(batch["obs"][0], replay.storage["obs"][i])


def test_prioritized_sampling_and_max_priority_for_new_sequences():
    replay = SequenceReplay(8, 1, 2, D, A, H, "cpu", priority_exponent=1.0)
    stream = Stream(replay)
    stream.step(terminated=[0])
    stream.step(terminated=[0])
    replay.update_priorities(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    gen = torch.Generator().manual_seed(0)
    batch = replay.sample(20_000, generator=gen, prioritized=True, importance_exponent=1.0)
    share = (batch["indices"] == 1).float().mean().item()
    assert abs(share - 0.75) < 0.02
    # weights (N P)^-1 normalised: slot 0 (P=1/4) -> 2, slot 1 (P=3/4) -> 2/3; / max -> 1, 1/3
    assert torch.allclose(batch["weights"][batch["indices"] == 1], torch.tensor(1 / 3))
    stream.step(terminated=[0])
    assert replay.priority[2].item() == 3.0  # a new sequence gets the max priority so far


def test_feedforward_buffer_has_no_state():
    replay = make(recurrent=False)
    replay.begin(torch.zeros(1, D), torch.ones(1, A, dtype=torch.bool), None)
    replay.add(
        torch.tensor([1]), torch.ones(1), torch.zeros(1), bools(T), bools(F),
        torch.ones(1, D), torch.ones(1, A, dtype=torch.bool), None,
        torch.zeros(1, D), torch.ones(1, A, dtype=torch.bool),
    )
    replay.flush(None)
    batch = replay.sample(4)
    assert "h0" not in batch and batch["valid"][:, 0].all()


def test_state_dict_round_trip_with_weights_only_load():
    replay = make(num_agents=2)
    stream = Stream(replay)
    for _ in range(5):
        stream.step(terminated=[1])
    buf = io.BytesIO()
    torch.save(replay.state_dict(), buf)
    buf.seek(0)
    restored = make(num_agents=2)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    # Both continue identically: staging, ring pointer and counters were all restored.
    twin = stream.twin(restored)
    for _ in range(6):
        stream.step()
        twin.step()
    replay.flush(stream.state())
    restored.flush(twin.state())
    # 5 one-step episodes; then agent 0's window fills at its step 8, the rest is flushed.
    assert int(restored.total_emitted) == int(replay.total_emitted) == 8
    for name, value in replay.storage.items():
        assert torch.equal(restored.storage[name][:8], value[:8]), name


def test_mismatched_state_dict_is_refused():
    with pytest.raises(ValueError, match="mismatch"):
        make(seq_len=4).load_state_dict(make(seq_len=8).state_dict())


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="even"):
        make(seq_len=7)
    with pytest.raises(ValueError, match="capacity"):
        make(capacity=2, num_agents=3)


def test_episode_start_marks_exactly_the_sequences_that_begin_an_episode():
    replay = make(num_agents=2)
    stream = Stream(replay)
    stream.step()
    stream.step(terminated=[0])  # agent 0: a 2-step episode, emitted; agent 1 goes on
    replay.flush(stream.state())  # agent 0 has nothing new; agent 1's 2 steps are emitted
    rows = [row(replay, slot) for slot in range(int(replay.total_emitted))]
    assert [r["obs"][0, 0].item() for r in rows] == [0, 1]
    assert all(r["episode_start"] for r in rows)  # both windows began at an episode's step 0
    stream.step()
    replay.flush(stream.state())
    # Agent 0's window restarted at its new episode (exact); agent 1's after the earlier
    # flush, mid-episode (carried state).
    latest = {int(r["obs"][0, 0]): bool(r["episode_start"]) for r in (row(replay, 2), row(replay, 3))}
    assert latest == {0: True, 1: False}


def test_begin_takes_per_agent_episode_start_flags():
    """A run resumed mid-episode starts windows whose stored state is carried, not zero."""
    replay = make(num_agents=2)
    replay.begin(torch.zeros(2, D), torch.ones(2, A, dtype=torch.bool), None, episode_start=bools(T, F))
    assert replay.staging["episode_start"].tolist() == [T, F]
    replay.begin(torch.zeros(2, D), torch.ones(2, A, dtype=torch.bool), None)
    assert replay.staging["episode_start"].tolist() == [T, T]


@pytest.mark.parametrize("recurrent", [True, False])
def test_cpu_shortcut_stores_exactly_what_the_sync_free_path_stores(recurrent):
    """`read_flags` (CPU: touch only the emitting / shifting / restarting agents) and the
    GPU branch (every row, non-emitters to the trash row) leave the same ring, staging and
    counters, through wrap-around, terminations, truncations and flushes."""
    fast, general = make(capacity=6, num_agents=5, seq_len=4, recurrent=recurrent), \
        make(capacity=6, num_agents=5, seq_len=4, recurrent=recurrent)
    assert fast.read_flags
    general.read_flags = False
    g = torch.Generator().manual_seed(0)
    stream = Stream(fast)
    twin = stream.twin(general)
    general.begin(stream.obs(), stream.mask(), stream.state())
    for i in range(40):
        ended = torch.rand(5, generator=g) < 0.15
        term = [a for a in range(5) if ended[a] and a % 2 == 0]
        trunc = [a for a in range(5) if ended[a] and a % 2 == 1]
        stream.step(terminated=term, truncated=trunc)
        twin.step(terminated=term, truncated=trunc)
        if i % 13 == 12:
            fast.flush(stream.state()), general.flush(twin.state())
        for name in fast.storage:
            assert torch.equal(fast.storage[name][:6], general.storage[name][:6]), (i, name)
        for name in fast.staging:
            assert torch.equal(fast.staging[name], general.staging[name]), (i, name)
        assert torch.equal(fast.priority[:6], general.priority[:6])
        for a, b in ((fast._ptr, general._ptr), (fast._total, general._total), (fast.pos, general.pos),
                     (fast.emitted_upto, general.emitted_upto), (fast.h_mid, general.h_mid)):
            assert torch.equal(a, b)
    assert int(fast.total_emitted) > 6  # the ring wrapped
