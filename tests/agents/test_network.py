"""Q-networks: every observation part is consumed, state is carried and reset per agent."""

import pytest
import torch

from townlet_agents.network import FeedForwardQNetwork, RecurrentQNetwork, lstm_precision
from townlet_env.layout import ObsLayout

LAYOUTS = {"pomdp": ObsLayout.build(cells=25), "full": ObsLayout.build(cells=64), "onehot": ObsLayout.build(cells=25, one_hot=True)}
NETWORKS = {"recurrent": RecurrentQNetwork, "feedforward": FeedForwardQNetwork}


def make(net_name, layout_name, **kw):
    torch.manual_seed(0)
    layout = LAYOUTS[layout_name]
    return NETWORKS[net_name](layout, num_actions=6, hidden_size=32, **kw), layout


@pytest.mark.parametrize("net_name", NETWORKS)
@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_shapes(net_name, layout_name):
    net, layout = make(net_name, layout_name)
    obs = torch.rand(5, 3, layout.size)
    q, state = net(obs, net.initial_state(3, "cpu"))
    assert q.shape == (5, 3, 6)
    q1, state1 = net.step(obs[0], None, None)
    assert q1.shape == (3, 6)
    if net.is_recurrent:
        assert [s.shape for s in state] == [(3, 32), (3, 32)]
    else:
        assert state == () and state1 == () and net.initial_state(3, "cpu") == ()


@pytest.mark.parametrize("net_name", NETWORKS)
@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_every_observation_part_changes_the_output(net_name, layout_name):
    """Grid, position, meters, affordance and time all reach the Q-values: none is dropped
    (without time of day, opening hours are unlearnable)."""
    net, layout = make(net_name, layout_name)
    obs = torch.rand(1, 4, layout.size)
    q, _ = net(obs, None)
    assert layout.names() == ["grid", "position", "meters", "affordance", "time"]
    for part in layout.parts:
        changed = obs.clone()
        changed[..., part.slice] = torch.rand_like(changed[..., part.slice]) + 1.0
        q_changed, _ = net(changed, None)
        assert not torch.allclose(q, q_changed), f"part {part.name} does not affect Q"


def test_wrong_observation_size_is_a_clear_error():
    net, layout = make("recurrent", "pomdp")
    with pytest.raises(ValueError, match="layout"):
        net(torch.rand(1, 2, layout.size + 1), None)


def test_recurrent_state_carries_information_across_time():
    """The last step's Q depends on the first observation; not so without recurrence."""
    for net_name, depends in (("recurrent", True), ("feedforward", False)):
        net, layout = make(net_name, "pomdp")
        obs = torch.rand(6, 2, layout.size)
        changed = obs.clone()
        changed[0] = torch.rand_like(changed[0])
        q, _ = net(obs, None)
        q_changed, _ = net(changed, None)
        assert torch.allclose(q[-1], q_changed[-1]) is not depends


def test_forward_equals_repeated_steps():
    net, layout = make("recurrent", "pomdp")
    obs = torch.rand(4, 3, layout.size)
    state = (torch.rand(3, 32), torch.rand(3, 32))
    q_seq, final = net(obs, state)
    s = state
    for t in range(4):
        q_t, s = net.step(obs[t], s)
        torch.testing.assert_close(q_t, q_seq[t])
    torch.testing.assert_close(s[0], final[0])
    torch.testing.assert_close(s[1], final[1])


def test_step_reset_zeroes_only_flagged_agents_before_consuming_obs():
    net, layout = make("recurrent", "pomdp")
    obs = torch.rand(3, layout.size)
    state = (torch.rand(3, 32) + 0.5, torch.rand(3, 32) + 0.5)
    reset = torch.tensor([False, True, False])
    q, _ = net.step(obs, state, reset)
    q_carried, _ = net.step(obs, state, None)
    q_fresh, _ = net.step(obs, net.initial_state(3, "cpu"), None)
    torch.testing.assert_close(q[1], q_fresh[1])
    torch.testing.assert_close(q[[0, 2]], q_carried[[0, 2]])
    assert not torch.allclose(q_carried[1], q_fresh[1])


def test_forward_sequence_zeroes_state_at_starts():
    net, layout = make("recurrent", "pomdp")
    obs = torch.rand(5, 2, layout.size)
    state = (torch.rand(2, 32), torch.rand(2, 32))
    starts = torch.zeros(5, 2, dtype=torch.bool)
    starts[3, 1] = True  # agent 1 begins a new episode at t = 3
    q, final = net.forward_sequence(obs, state, starts)

    q_all, final_all = net(obs, state)
    torch.testing.assert_close(q[:, 0], q_all[:, 0])  # agent 0: plain unroll
    torch.testing.assert_close(q[:3, 1], q_all[:3, 1])
    q_tail, final_tail = net(obs[3:, 1:2], None)  # agent 1 from a zero state at t = 3
    torch.testing.assert_close(q[3:, 1:2], q_tail)
    torch.testing.assert_close(final[0][1:2], final_tail[0])
    assert not torch.allclose(q[3:, 1], q_all[3:, 1])


def test_feedforward_ignores_state_and_reset():
    net, layout = make("feedforward", "full")
    obs = torch.rand(3, layout.size)
    q, state = net.step(obs, (), torch.tensor([True, False, True]))
    q2, _ = net.step(obs, None, None)
    torch.testing.assert_close(q, q2)
    assert state == ()


def test_dueling_head_is_value_plus_centred_advantage():
    from townlet_agents.network import DuelingHead

    head = DuelingHead(2, 3)
    with torch.no_grad():
        head.value.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.value.bias.zero_()
        head.advantage.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        head.advantage.bias.zero_()
    q = head(torch.tensor([[2.0, 3.0]]))
    # V = 2, A = (2, 3, 0), mean A = 5/3  ->  Q = 2 + A - 5/3
    torch.testing.assert_close(q, torch.tensor([[2 + 2 - 5 / 3, 2 + 3 - 5 / 3, 2 - 5 / 3]]))


def test_dueling_networks_have_the_same_interface():
    layout = LAYOUTS["pomdp"]
    for cls in (RecurrentQNetwork, FeedForwardQNetwork):
        net = cls(layout, hidden_size=16, encoder_size=8, dueling=True)
        q, _ = net.step(torch.zeros(4, layout.size), net.initial_state(4))
        assert q.shape == (4, 6)


def test_position_cells_give_every_cell_of_a_town_its_own_vector():
    from townlet_agents.network import PositionCellEncoder

    enc = PositionCellEncoder(width=4)
    for side in (3, 8, 16):
        xs, ys = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy")
        position = torch.stack([xs.flatten(), ys.flatten()], dim=-1).float() / (side - 1)
        codes = enc(position)
        assert codes.shape == (side * side, 4)
        assert torch.unique(codes, dim=0).shape[0] == side * side
    # the same cell, up to float noise in the normalised coordinates, reads the same vector
    torch.testing.assert_close(enc(torch.tensor([[3 / 7, 5 / 7]])), enc(torch.tensor([[3 / 7 + 1e-6, 5 / 7 - 1e-6]])))


@pytest.mark.parametrize("net_name", NETWORKS)
def test_position_cells_networks_keep_the_interface(net_name):
    net, layout = make(net_name, "full", position_cells=True)
    assert type(net.encoder.encoders["position"]).__name__ == "PositionCellEncoder"
    q, _ = net(torch.rand(5, 3, layout.size), None)
    assert q.shape == (5, 3, 6)
    q.sum().backward()  # the cell vectors are trained
    assert net.encoder.encoders["position"].embedding.weight.grad.abs().sum() > 0


def test_lstm_precision_lowers_only_the_lstm_and_only_within_the_block():
    """bfloat16 autocast reaches the LSTM layer alone (its outputs and states come back as
    float32, close to the float32 ones but not equal), and leaving the block restores the
    exact float32 network that acting and evaluation use."""
    net, layout = make("recurrent", "pomdp")
    feedforward, _ = make("feedforward", "pomdp")
    obs = torch.rand(6, 4, layout.size)
    q32, (h32, c32) = net(obs)
    seen = []
    hook = net.lstm.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    with lstm_precision(torch.bfloat16, net, feedforward):  # a feed-forward network is left as it is
        q16, (h16, c16) = net(obs)
        assert not hasattr(feedforward, "lstm_dtype")
    hook.remove()
    assert seen == [torch.bfloat16]
    assert q16.dtype == h16.dtype == c16.dtype == torch.float32
    assert not torch.equal(q16, q32)
    assert torch.allclose(q16, q32, atol=0.05) and torch.allclose(h16, h32, atol=0.05)
    assert net.lstm_dtype == torch.float32
    q_after, _ = net(obs)
    assert torch.equal(q_after, q32)


def test_lstm_precision_is_restored_when_the_block_raises():
    net, _ = make("recurrent", "pomdp")
    with pytest.raises(RuntimeError), lstm_precision(torch.bfloat16, net):
        raise RuntimeError("an update that failed")
    assert net.lstm_dtype == torch.float32
