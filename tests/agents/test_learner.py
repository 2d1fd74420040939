"""Learner: hand-computed n-step targets, masked loss, burn-in, state carrying, targets."""

import io

import pytest
import torch

from townlet_agents.config import AgentConfig
from townlet_agents.learner import (
    Learner,
    SequenceTD,
    learner_config,
    meter_distress,
    meter_shaping,
    n_step_targets,
    sequence_loss,
    sequence_priority,
    sequence_td,
)
from townlet_agents.network import FeedForwardQNetwork, RecurrentQNetwork
from townlet_agents.replay import SequenceReplay
from townlet_env.layout import ObsLayout
from townlet_env.schema import METER

LAYOUT = ObsLayout.build(cells=25)
T, F = True, False

# Settings the hand computations below assume unless a test says otherwise.
_NEUTRAL = dict(lr=1e-4, adam_eps=1e-3, gamma=0.99, n_step=5, burn_in=0, target_update_every=2500, reward_scale=1.0,
                average_decay=0.0)


def _config(intrinsic_weight: float = 0.0, **agent):
    """The learner's view of an AgentConfig, built the way the trainer builds it."""
    return learner_config(AgentConfig(**{**_NEUTRAL, **agent}), intrinsic_weight=intrinsic_weight)


# ---------------------------------------------------------------------- n-step targets


def q_for_values(values):
    """Q arrays [B, L+1, 2] where the online argmax is action 0 and Q_target(o_j, 0) = value_j."""
    v = torch.tensor(values, dtype=torch.float32)
    q_online = torch.stack([torch.ones_like(v), torch.zeros_like(v)], -1)
    q_target = torch.stack([v, torch.full_like(v, -999.0)], -1)
    return q_online, q_target


def test_n_step_targets_hand_computed():
    """gamma = 0.5, n = 2, rewards 1..4, Q_target(o_j) = 10, 20, 30, 40, 50 (j = 0..4).

    full, no terminal:   t0: 1 + .5*2 + .25*30 = 9.5   t1: 2 + 1.5 + .25*40 = 13.5
                         t2: 3 + 2 + .25*50 = 17.5      t3 (m=1): 4 + .5*50 = 29
    terminal at step 3:  t2: 3 + 2 = 5, t3: 4 (no bootstrap); t0, t1 unchanged
    truncated at step 3: exactly the no-terminal case (truncation is not termination)
    padded, len 2:       t0: 1 + 1 + .25*30 = 9.5, t1 (m=1): 2 + .5*30 = 17; garbage ignored
    padded, terminal 1:  t0: 1 + 1 = 2, t1: 2
    """
    values = [[10, 20, 30, 40, 50]] * 5
    q_online, q_target = q_for_values(values)
    mask = torch.ones(5, 5, 2, dtype=torch.bool)
    rewards = torch.tensor([[1, 2, 3, 4]] * 3 + [[1, 2, 1e6, 1e6]] * 2)
    valid = torch.tensor([[T, T, T, T]] * 3 + [[T, T, F, F]] * 2)
    terminated = torch.tensor(
        [[F, F, F, F], [F, F, F, T], [F, F, F, F], [F, F, T, T], [F, T, T, F]]
    )  # garbage terminal flags on invalid steps (rows 3, 4) must be ignored
    targets = n_step_targets(q_online, q_target, mask, rewards, valid, terminated, gamma=0.5, n=2)
    expected = torch.tensor(
        [
            [9.5, 13.5, 17.5, 29.0],
            [9.5, 13.5, 5.0, 4.0],
            [9.5, 13.5, 17.5, 29.0],
            [9.5, 17.0, 0.0, 0.0],
            [2.0, 2.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(targets, expected)


def test_n_step_one_is_td0():
    q_online, q_target = q_for_values([[10, 20, 30]])
    targets = n_step_targets(
        q_online, q_target, torch.ones(1, 3, 2, dtype=torch.bool),
        torch.tensor([[1.0, 2.0]]), torch.tensor([[T, T]]), torch.tensor([[F, T]]), gamma=0.5, n=1,
    )
    torch.testing.assert_close(targets, torch.tensor([[1 + 0.5 * 20, 2.0]]))


def test_double_dqn_argmax_is_restricted_to_allowed_actions():
    # Bootstrap observation j = 1: online Q = [5, 1, 9]; action 2 is masked, so a* = 0.
    q_online = torch.tensor([[[0.0, 0, 0], [5, 1, 9]], [[0, 0, 0], [5, 1, 9]]])
    q_target = torch.tensor([[[0.0, 0, 0], [10, 20, 30]], [[0, 0, 0], [10, 20, 30]]])
    mask = torch.tensor([[[T, T, T], [T, T, F]], [[T, T, T], [F, T, F]]])
    targets = n_step_targets(
        q_online, q_target, mask, torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool),
        torch.zeros(2, 1, dtype=torch.bool), gamma=0.5, n=1,
    )
    # Row 0: a* = 0 -> 0.5 * 10 (unmasked would give 0.5 * 30). Row 1: only action 1 allowed.
    torch.testing.assert_close(targets, torch.tensor([[5.0], [10.0]]))


# ---------------------------------------------------------------------- loss and priority


def test_sequence_loss_is_a_masked_mean():
    td = SequenceTD(
        q_taken=torch.tensor([[0.0, 0.0, 1e6], [0.0, 5.0, 5.0]]),
        targets=torch.tensor([[0.5, 2.0, -1e6], [0.0, 0.0, 0.0]]),
        valid=torch.tensor([[T, T, F], [F, F, F]]),
    )
    # Huber(delta 1): 0.5 * 0.5^2 = 0.125 and 2 - 0.5 = 1.5 over 2 valid steps.
    torch.testing.assert_close(sequence_loss(td, "huber"), torch.tensor(0.8125))
    torch.testing.assert_close(sequence_loss(td, "mse"), torch.tensor((0.25 + 4.0) / 2))
    weights = torch.tensor([2.0, 7.0])
    torch.testing.assert_close(sequence_loss(td, "huber", weights=weights), torch.tensor(1.625))
    empty = SequenceTD(td.q_taken, td.targets, torch.zeros(2, 3, dtype=torch.bool))
    assert sequence_loss(empty).item() == 0.0
    with pytest.raises(ValueError, match="loss"):
        sequence_loss(td, "l1")


def test_priority_mixes_max_and_mean_abs_td_over_valid_steps():
    td = SequenceTD(
        q_taken=torch.zeros(2, 3),
        targets=torch.tensor([[1.0, -3.0, 100.0], [4.0, 4.0, 4.0]]),
        valid=torch.tensor([[T, T, F], [F, F, F]]),
    )
    # |TD| = 1, 3: 0.9 * 3 + 0.1 * 2 = 2.9; no valid step -> 0.
    torch.testing.assert_close(sequence_priority(td, 0.9), torch.tensor([2.9, 0.0]))


# ---------------------------------------------------------------------- sequences through networks


def make_nets(num_actions=6, recurrent=True, seed=0):
    torch.manual_seed(seed)
    cls = RecurrentQNetwork if recurrent else FeedForwardQNetwork
    kw = dict(encoder_size=16) if recurrent else {}
    online = cls(LAYOUT, num_actions=num_actions, hidden_size=16, **kw)
    target = cls(LAYOUT, num_actions=num_actions, hidden_size=16, **kw)
    return online, target


def make_batch(lengths=(6, 3, 5), L=6, num_actions=6, terminal=(F, T, F), seed=1):
    """Sequences like the replay's: `lengths[b]` valid steps, obs index len = next obs."""
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    length = torch.tensor(lengths).unsqueeze(1)
    valid = torch.arange(L).unsqueeze(0) < length
    terminated = (torch.arange(L).unsqueeze(0) == length - 1) & torch.tensor(terminal).unsqueeze(1)
    mask = torch.rand(B, L + 1, num_actions, generator=g) < 0.7
    mask[..., 0] = True
    return {
        "obs": torch.rand(B, L + 1, LAYOUT.size, generator=g),
        "action_mask": mask,
        "action": torch.randint(num_actions, (B, L), generator=g),
        "reward_ext": torch.rand(B, L, generator=g),
        "reward_int": torch.zeros(B, L),
        "terminated": terminated,
        "truncated": torch.zeros(B, L, dtype=torch.bool),
        "valid": valid,
        "h0": 0.1 * torch.randn(B, 16, generator=g),
        "c0": 0.1 * torch.randn(B, 16, generator=g),
        "weights": torch.ones(B),
    }


def loss_and_grads(online, target, batch, burn_in=0, gamma=0.9, n_step=3, w=0.0):
    td = sequence_td(online, target, batch, gamma, n_step, burn_in, w)
    loss = sequence_loss(td, "huber")
    grads = torch.autograd.grad(loss, list(online.parameters()))
    return loss.detach(), grads, td


def test_garbage_in_invalid_steps_changes_neither_loss_nor_gradients():
    """Post-terminal / padding content is invisible to the loss."""
    online, target = make_nets()
    batch = make_batch()
    garbage = {k: v.clone() for k, v in batch.items()}
    invalid = ~batch["valid"]
    for key in ("reward_ext", "reward_int"):
        garbage[key][invalid] = 1e6
    garbage["terminated"][invalid] = True
    garbage["action"][invalid] = 5
    # Observation indices past len (len itself is the bootstrap observation).
    length = batch["valid"].sum(1, keepdim=True)
    past_len = torch.arange(7).unsqueeze(0) > length
    garbage["obs"][past_len] = 1e6
    garbage["action_mask"][past_len] = False
    loss, grads, _ = loss_and_grads(online, target, batch)
    loss_g, grads_g, _ = loss_and_grads(online, target, garbage)
    assert torch.equal(loss, loss_g)
    for g, g_g in zip(grads, grads_g):
        assert torch.equal(g, g_g)
    assert loss > 0


def test_burn_in_steps_get_no_loss_but_shape_the_state():
    online, target = make_nets()
    batch = make_batch()
    loss, _, td = loss_and_grads(online, target, batch, burn_in=2)
    assert td.q_taken.shape == (3, 6)
    assert not td.valid[:, :2].any()  # no episode_start flags: every sequence burns in

    rewards_changed = {**batch, "reward_ext": batch["reward_ext"].clone()}
    rewards_changed["reward_ext"][:, :2] += 100.0
    assert torch.equal(loss_and_grads(online, target, rewards_changed, burn_in=2)[0], loss)

    obs_changed = {**batch, "obs": batch["obs"].clone()}
    obs_changed["obs"][:, 0] = torch.rand_like(obs_changed["obs"][:, 0])
    assert not torch.allclose(loss_and_grads(online, target, obs_changed, burn_in=2)[0], loss)

    state_changed = {**batch, "h0": batch["h0"] + 1.0}
    assert not torch.allclose(loss_and_grads(online, target, state_changed, burn_in=2)[0], loss)


def test_state_is_carried_through_the_sequence_in_both_passes():
    """The state is carried: the first observation reaches the last step's Q (online) and target."""
    batch = make_batch(lengths=(6, 6, 6), num_actions=1, terminal=(F, F, F))
    batch["action"].zero_()
    online, target = make_nets(num_actions=1)
    changed = {**batch, "obs": batch["obs"].clone()}
    changed["obs"][:, 0] = torch.rand_like(changed["obs"][:, 0])
    _, _, td = loss_and_grads(online, target, batch, burn_in=0)
    _, _, td_changed = loss_and_grads(online, target, changed, burn_in=0)
    assert not torch.allclose(td.q_taken[:, -1], td_changed.q_taken[:, -1])
    # With one action the online argmax is fixed, so the targets move only through the
    # target network's carried state.
    assert not torch.allclose(td.targets[:, -1], td_changed.targets[:, -1])


def test_intrinsic_weight_is_applied_exactly_once():
    online, target = make_nets()
    batch = make_batch()
    batch["reward_int"][0, 3] = 1.0
    base = sequence_td(online, target, batch, 0.5, 1, 0, 0.0).targets
    shifted = sequence_td(online, target, batch, 0.5, 1, 0, 0.5).targets
    expected = torch.zeros_like(base)
    expected[0, 3] = 0.5
    torch.testing.assert_close(shifted - base, expected)
    # n = 2: the earlier step sees it discounted once.
    with_int = sequence_td(online, target, batch, 0.5, 2, 0, 0.5).targets
    diff2 = with_int - sequence_td(online, target, batch, 0.5, 2, 0, 0.0).targets
    expected[0, 2] = 0.25
    torch.testing.assert_close(diff2, expected)


def test_reward_scale_multiplies_the_rewards_not_the_bootstrap():
    """TD(0), gamma 0.5: target_t = scale * r_t + 0.5 * Q_target(o_t+1). Scaling by 0.1
    changes the targets by (0.1 - 1) * r_t, where r_t = ext + w * int."""
    online, target = make_nets()
    batch = make_batch()
    batch["reward_ext"].fill_(1.0)
    batch["reward_int"][0, 3] = 2.0
    plain = sequence_td(online, target, batch, 0.5, 1, 0, 0.5).targets
    scaled = sequence_td(online, target, batch, 0.5, 1, 0, 0.5, reward_scale=0.1).targets
    reward = torch.where(batch["valid"], batch["reward_ext"] + 0.5 * batch["reward_int"], 0.0)
    torch.testing.assert_close(scaled - plain, -0.9 * reward)


def test_reward_scale_default_is_one_minus_gamma():
    from townlet_agents.config import reward_scale

    assert reward_scale(AgentConfig(gamma=0.99)) == pytest.approx(0.01)
    assert reward_scale(AgentConfig(gamma=1.0)) == 1.0  # undiscounted: no natural scale
    assert reward_scale(AgentConfig(gamma=0.99, reward_scale=0.5)) == 0.5
    with pytest.raises(ValueError, match="reward_scale"):
        learner_config(AgentConfig(reward_scale=0.0))


def test_meter_shaping_hand_computed():
    # Two steps: meters averaging 0.5, then 0.75 (ate), then 0.25; gamma 0.5, weight 2.
    obs = torch.zeros(1, 3, LAYOUT.size)
    meters = LAYOUT["meters"].slice
    for j, level in enumerate((0.5, 0.75, 0.25)):
        obs[0, j, meters] = level
    live = torch.tensor([[F, F]])
    # Phi = 1.0, 1.5, 0.5: step 0 gains 0.5 * 1.5 - 1.0, step 1 gains 0.5 * 0.5 - 1.5.
    torch.testing.assert_close(meter_shaping(obs, live, LAYOUT, 0.5, 2.0), torch.tensor([[-0.25, -1.25]]))
    # A death on step 1: nothing after it has a potential, so the step loses Phi(o_1) whole.
    dead = torch.tensor([[F, T]])
    torch.testing.assert_close(meter_shaping(obs, dead, LAYOUT, 0.5, 2.0), torch.tensor([[-0.25, -1.5]]))


def test_shaping_telescopes_over_the_n_step_window():
    """n = 3, gamma 0.5, a sequence of 6 that does not terminate: step t's target gains
    gamma^3 Phi(o_{t+3}) - Phi(o_t) (fewer steps near the end: the window is cut at len)."""
    online, target = make_nets()
    batch = make_batch(lengths=(6,), terminal=(F,))
    plain = sequence_td(online, target, batch, 0.5, 3, 0, 0.0).targets
    shaped = sequence_td(online, target, batch, 0.5, 3, 0, 0.0, shaping=0.8).targets
    phi = 0.8 * batch["obs"][0, :, LAYOUT["meters"].slice].mean(-1)
    expected = torch.stack([0.5 ** min(3, 6 - t) * phi[min(t + 3, 6)] - phi[t] for t in range(6)])
    torch.testing.assert_close(shaped[0] - plain[0], expected)


def test_meter_distress_hand_computed():
    """Threshold 0.4. After step 0 every meter is at 0.5 (no distress); after step 1 hygiene
    is 0.1 (deficit 0.75), social 0 (deficit 1), money 0 (not a need: ignored), the others
    0.5: (0.75 + 1) / 7 = 0.25."""
    obs = torch.full((1, 3, LAYOUT.size), 0.5)
    meters = LAYOUT["meters"].slice
    obs[0, 2, meters.start + METER["hygiene"]] = 0.1
    obs[0, 2, meters.start + METER["social"]] = 0.0
    obs[0, 2, meters.start + METER["money"]] = 0.0
    torch.testing.assert_close(meter_distress(obs, LAYOUT, 0.4), torch.tensor([[0.0, 0.25]]))
    # With money counted: (0.75 + 1 + 1) / 8.
    torch.testing.assert_close(meter_distress(obs, LAYOUT, 0.4, money=True), torch.tensor([[0.0, 0.34375]]))
    # Every need empty after step 0 (read from o_1): the whole step's worth.
    obs[0, 1, meters] = 0.0
    assert meter_distress(obs, LAYOUT, 0.4)[0, 0].item() == 1.0


def test_distress_lowers_each_step_reward_in_the_target():
    """n = 3, gamma 0.5, reward scale 2, weight 0.5: step t's target loses
    sum_k<m gamma^k * 2 * 0.5 * distress(o_{t+k+1}), the same discounting as any reward."""
    online, target = make_nets()
    batch = make_batch(lengths=(6,), terminal=(F,))
    batch["obs"][..., LAYOUT["meters"].slice] = torch.rand(1, 7, 8, generator=torch.Generator().manual_seed(3)) * 0.5
    plain = sequence_td(online, target, batch, 0.5, 3, 0, 0.0, reward_scale=2.0).targets
    costly = sequence_td(online, target, batch, 0.5, 3, 0, 0.0, reward_scale=2.0, distress=0.5,
                         distress_threshold=0.3).targets
    d = meter_distress(batch["obs"], LAYOUT, 0.3)[0]
    expected = torch.stack([sum(0.5 ** k * d[t + k] for k in range(min(3, 6 - t))) for t in range(6)])
    torch.testing.assert_close(plain[0] - costly[0], expected)


def test_distress_settings_reach_the_learner_and_are_range_checked():
    cfg = _config(distress=0.4, distress_threshold=0.2, distress_money=True)
    assert (_config().distress, cfg.distress, cfg.distress_threshold) == (0.0, 0.4, 0.2)
    assert (_config().distress_money, cfg.distress_money) == (False, True)
    with pytest.raises(ValueError, match="agent.distress"):
        learner_config(AgentConfig(distress=1.5))
    with pytest.raises(ValueError, match="agent.distress_threshold"):
        learner_config(AgentConfig(distress_threshold=0.0))


def test_shaping_setting_reaches_the_learner_and_is_range_checked():
    assert _config().shaping == 0.0 and _config(shaping=0.3).shaping == 0.3
    with pytest.raises(ValueError, match="agent.shaping"):
        learner_config(AgentConfig(shaping=-1.0))


# ---------------------------------------------------------------------- Learner


def test_learner_update_uses_its_settings_and_returns_tensors():
    online, target = make_nets()
    cfg = _config(lr=1e-3, gamma=0.9, n_step=3, burn_in=2, intrinsic_weight=0.5)
    learner = Learner(online, target, cfg)
    batch = make_batch()
    batch["reward_int"][:, 3] = 1.0
    with torch.no_grad():
        td = sequence_td(learner.online, learner.target, batch, 0.9, 3, 2, 0.5)
        expected_loss = sequence_loss(td)
    out = learner.update(batch)
    torch.testing.assert_close(out["td_loss"], expected_loss)
    torch.testing.assert_close(out["priority"], sequence_priority(td, 0.9))
    for key in ("td_loss", "q_values", "abs_td", "grad_norm"):
        assert isinstance(out[key], torch.Tensor) and out[key].dim() == 0 and not out[key].requires_grad
    assert out["priority"].shape == (3,)
    assert learner.updates == 1


def test_learner_starts_with_target_equal_to_online():
    online, target = make_nets()
    learner = Learner(online, target, _config())
    for p, q in zip(learner.online.parameters(), learner.target.parameters()):
        assert torch.equal(p, q) and not q.requires_grad


def test_hard_target_update_every_k_updates():
    online, target = make_nets()
    learner = Learner(online, target, _config(lr=1e-2, target_update_every=3))
    initial = [p.clone() for p in learner.online.parameters()]
    batch = make_batch()
    for k in (1, 2):
        learner.update(batch)
        for p_t, p0 in zip(learner.target.parameters(), initial):
            assert torch.equal(p_t, p0), f"target changed after update {k}"
    assert not all(torch.equal(p, p0) for p, p0 in zip(learner.online.parameters(), initial))
    learner.update(batch)
    for p_t, p in zip(learner.target.parameters(), learner.online.parameters()):
        assert torch.equal(p_t, p)


def test_polyak_target_update():
    online, target = make_nets()
    learner = Learner(online, target, _config(lr=1e-2, tau=0.25))
    batch = make_batch()
    learner.update(batch)
    before = [p.clone() for p in learner.target.parameters()]
    learner.update(batch)
    for p_t, p_before, p_online in zip(learner.target.parameters(), before, learner.online.parameters()):
        torch.testing.assert_close(p_t, 0.75 * p_before + 0.25 * p_online)


def test_averaged_weights_are_a_moving_average_of_the_online_weights():
    online, target = make_nets()
    learner = Learner(online, target, _config(lr=1e-2, average_decay=0.75))
    assert learner.policy_network is learner.averaged
    for p, a in zip(learner.online.parameters(), learner.averaged.parameters()):
        assert torch.equal(p, a) and not a.requires_grad  # starts as the online weights
    batch = make_batch()
    learner.update(batch)
    before = [a.clone() for a in learner.averaged.parameters()]
    learner.update(batch)
    for a, a_before, p in zip(learner.averaged.parameters(), before, learner.online.parameters()):
        torch.testing.assert_close(a, 0.75 * a_before + 0.25 * p)
        assert not torch.equal(a, p)
    # the averaged weights take no part in learning: the TD target uses online and target only
    plain = Learner(*make_nets(), _config(lr=1e-2))
    plain.update(batch), plain.update(batch)
    assert plain.averaged is None and plain.policy_network is plain.online
    for p, q in zip(plain.online.parameters(), learner.online.parameters()):
        torch.testing.assert_close(p, q)


def test_averaged_weights_round_trip_and_restart_from_online_when_absent():
    config = _config(lr=1e-2, average_decay=0.5)
    learner = Learner(*make_nets(), config)
    batch = make_batch()
    learner.update(batch), learner.update(batch)
    restored = Learner(*make_nets(seed=5), config)
    restored.load_state_dict(learner.state_dict())
    for a, b in zip(learner.averaged.parameters(), restored.averaged.parameters()):
        torch.testing.assert_close(a, b)
    state = learner.state_dict()
    del state["averaged"]  # a checkpoint from a run without averaging
    restored.load_state_dict(state)
    for a, p in zip(restored.averaged.parameters(), learner.online.parameters()):
        torch.testing.assert_close(a, p)
    with pytest.raises(ValueError, match="average_decay"):
        learner_config(AgentConfig(average_decay=1.0))


def test_gradient_clipping():
    online, target = make_nets()
    learner = Learner(online, target, _config(grad_clip=1e-3))
    batch = make_batch()
    batch["reward_ext"] *= 1000
    out = learner.update(batch)
    assert out["grad_norm"] > 1e-3  # the norm before clipping is reported
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in learner.online.parameters()))
    assert total <= 1e-3 * 1.001


def test_feedforward_learner_ignores_missing_state():
    online, target = make_nets(recurrent=False)
    learner = Learner(online, target, _config())
    batch = make_batch()
    del batch["h0"], batch["c0"]
    out = learner.update(batch)
    assert torch.isfinite(out["td_loss"])


def test_learner_state_dict_round_trip():
    online, target = make_nets()
    learner = Learner(online, target, _config(lr=1e-2, target_update_every=2))
    batch = make_batch()
    learner.update(batch)
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    online2, target2 = make_nets(seed=5)
    restored = Learner(online2, target2, _config(lr=1e-2, target_update_every=2))
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.updates == 1
    a, b = learner.update(batch), restored.update(batch)
    torch.testing.assert_close(a["td_loss"], b["td_loss"])
    for p, q in zip(learner.target.parameters(), restored.target.parameters()):
        torch.testing.assert_close(p, q)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="loss"):
        learner_config(AgentConfig(loss="l1"))
    with pytest.raises(ValueError, match="gamma"):
        learner_config(AgentConfig(gamma=1.5))
    online, target = make_nets()
    with pytest.raises(ValueError, match="burn_in"):
        sequence_td(online, target, make_batch(), 0.9, 1, 6, 0.0)


def test_learning_from_replay_reduces_the_loss():
    """Replay and learner fit together: sample, update, feed priorities back."""
    torch.manual_seed(0)
    replay = SequenceReplay(16, 4, 6, LAYOUT.size, 6, 16, "cpu")
    online, target = make_nets()
    learner = Learner(online, target, _config(lr=3e-3, burn_in=2, n_step=2, gamma=0.5))
    mask = torch.ones(4, 6, dtype=torch.bool)
    replay.begin(torch.rand(4, LAYOUT.size), mask, None)
    for step in range(12):
        ended = torch.tensor([step % 5 == 4, False, step == 8, False])
        replay.add(
            torch.randint(6, (4,)), torch.ones(4), torch.zeros(4), ended, torch.zeros(4, dtype=torch.bool),
            torch.rand(4, LAYOUT.size), mask, learner.online.initial_state(4),
            torch.rand(4, LAYOUT.size), mask,
        )
    replay.flush(None)
    gen = torch.Generator().manual_seed(0)
    batch = replay.sample(8, generator=gen, prioritized=True)
    first = learner.update(batch)
    replay.update_priorities(batch["indices"], first["priority"])
    for _ in range(30):
        last = learner.update(batch)
    assert last["td_loss"] < 0.5 * first["td_loss"]


def test_sequences_that_start_an_episode_learn_from_their_first_step():
    """Burn-in only where the start state is stale: sequence 0 starts an episode (its zero
    state is exact), sequence 1 starts mid-episode."""
    online, target = make_nets()
    batch = make_batch(lengths=(6, 6, 4), terminal=(F, F, F))
    batch["episode_start"] = torch.tensor([True, False, True])
    batch["h0"][0] = batch["c0"][0] = 0.0
    batch["h0"][2] = batch["c0"][2] = 0.0
    loss, _, td = loss_and_grads(online, target, batch, burn_in=2)
    expected = torch.tensor([[True] * 6, [False, False] + [True] * 4, [True] * 4 + [False] * 2])
    assert torch.equal(td.valid, expected)

    # A reward on step 0 moves step 0's target: it counts for sequence 0, not for 1.
    for row, counts in ((0, True), (1, False)):
        changed = {**batch, "reward_ext": batch["reward_ext"].clone()}
        changed["reward_ext"][row, 0] += 100.0
        assert torch.equal(loss_and_grads(online, target, changed, burn_in=2)[0], loss) != counts


def test_mid_episode_sequences_get_no_gradient_through_their_burn_in():
    """The loss of a mid-episode sequence trains the network exactly as a burn-in run
    without gradient would (R2D2): its gradients equal the no-grad-burn-in reference."""
    online, target = make_nets()
    batch = make_batch(lengths=(6, 6, 6), terminal=(F, F, F))
    batch["episode_start"] = torch.tensor([False, False, False])
    b = 2
    td = sequence_td(online, target, batch, 0.9, 3, b, 0.0)
    grads = torch.autograd.grad(td.q_taken[:, b:].sum(), list(online.parameters()))

    obs = batch["obs"].transpose(0, 1)
    with torch.no_grad():
        _, state = online(obs[:b], (batch["h0"], batch["c0"]))
    q, _ = online(obs[b:], state)
    q_ref = q.transpose(0, 1)[:, :-1].gather(-1, batch["action"][:, b:].unsqueeze(-1)).squeeze(-1)
    ref = torch.autograd.grad(q_ref.sum(), list(online.parameters()))
    assert torch.allclose(td.q_taken[:, b:], q_ref)
    for g, g_ref in zip(grads, ref):
        assert torch.allclose(g, g_ref, atol=1e-6)

    # The same sequences flagged as episode starts do send gradient through the burn-in.
    batch["episode_start"] = torch.tensor([True, True, True])
    td = sequence_td(online, target, batch, 0.9, 3, b, 0.0)
    grads_start = torch.autograd.grad(td.q_taken[:, b:].sum(), list(online.parameters()))
    assert any(not torch.allclose(g, g_ref, atol=1e-6) for g, g_ref in zip(grads_start, ref))


def test_multi_tensor_updates_match_the_per_parameter_loop_bitwise():
    """Adam with foreach and the foreach lerps of the Polyak target and the averaged weights
    give exactly the weights of the per-parameter loops they replaced."""
    config = _config(lr=1e-2, tau=0.25, average_decay=0.75)
    learner = Learner(*make_nets(), config)
    online, target = make_nets()
    averaged = make_nets()[0]
    averaged.load_state_dict(online.state_dict()), target.load_state_dict(online.state_dict())
    adam = torch.optim.Adam(online.parameters(), lr=config.lr, eps=config.adam_eps, foreach=False)
    batch = make_batch()
    for _ in range(3):
        learner.update(batch)
        td = sequence_td(online, target, batch, config.gamma, config.n_step, config.burn_in, 0.0, config.reward_scale)
        adam.zero_grad()
        sequence_loss(td, config.loss, weights=batch["weights"]).backward()
        torch.nn.utils.clip_grad_norm_(online.parameters(), config.grad_clip)
        adam.step()
        with torch.no_grad():
            for p_t, p_a, p in zip(target.parameters(), averaged.parameters(), online.parameters()):
                p_t.lerp_(p, config.tau)
                p_a.lerp_(p, 1.0 - config.average_decay)
    for mine, ref in ((learner.online, online), (learner.target, target), (learner.averaged, averaged)):
        for p, q in zip(mine.parameters(), ref.parameters()):
            assert torch.equal(p, q)


def test_a_restored_optimiser_keeps_the_multi_tensor_path():
    learner = Learner(*make_nets(), _config())
    state = learner.state_dict()
    state["optimizer"]["param_groups"][0]["foreach"] = None  # as saved before it was set
    learner.load_state_dict(state)
    assert learner.optimizer.param_groups[0]["foreach"] is True


def test_bfloat16_lstm_precision_applies_to_the_learners_unrolls_only():
    """With `lstm_precision=bfloat16` both networks' LSTMs run in bfloat16 during the
    update (three unrolls: the online burn-in and main parts, the target), the loss stays
    close to the float32 one, and afterwards the networks act in float32 again."""
    batch = make_batch()
    losses = {}
    for precision in ("float32", "bfloat16"):
        online, target = make_nets()
        learner = Learner(online, target, _config(burn_in=2, lstm_precision=precision))
        seen = []
        hooks = [net.lstm.register_forward_hook(lambda m, a, out: seen.append(out[0].dtype))
                 for net in (learner.online, learner.target)]
        losses[precision] = learner.update(batch)["td_loss"]
        for h in hooks:
            h.remove()
        assert seen == [getattr(torch, precision)] * 3
        assert learner.online.lstm_dtype == learner.target.lstm_dtype == torch.float32
    assert losses["bfloat16"] != losses["float32"]
    torch.testing.assert_close(losses["bfloat16"], losses["float32"], rtol=0.1, atol=1e-3)
