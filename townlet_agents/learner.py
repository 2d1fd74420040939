"""Learner: where the TD target is built and the Q-network is trained on replayed sequences.

R2D2-style, on the sequences stored by `SequenceReplay` (batch-first, L steps,
observation indices 0..L):

1. Burn-in: a sequence that starts mid-episode begins from a stored `(h0, c0)` that
   the current weights would not have produced, so its first B steps only warm the state
   up: no loss there, and no gradient into the stale start. A sequence that starts an
   episode begins from the exact (zero) state and learns from its first step. Both
   networks carry their state step to step through the whole sequence (docs/training.md,
   "Burn-in, and why").
2. n-step double-DQN target per step t >= B, argmax restricted to the actions allowed in
   the bootstrap state; bootstrap at truncation and at the end of unfinished windows, not
   at termination (docs/training.md, "The target: masked n-step double DQN").
3. Huber (or MSE) loss, a masked mean over valid steps only; every logged metric is a
   masked mean too (docs/training.md, "Masks, and why"). Metrics are returned as
   detached tensors, never `.item()`.
4. Adam, gradient clipping, target update (hard every K updates, or Polyak).

The reward is `reward_ext + intrinsic_weight * reward_int`, formed in `sequence_td` and
nowhere else, so the weight is applied exactly once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from townlet_env.schema import METER, NUM_METERS

from .config import AgentConfig, check_agent, reward_scale
from .network import lstm_precision


@dataclass(frozen=True)
class LearnerConfig:
    """What the learning step reads: a view of `AgentConfig` under the same names, built
    by `learner_config`. The values, their defaults, their documentation and their range
    checks live in townlet_agents.config, once."""

    lr: float
    adam_eps: float
    gamma: float
    n_step: int
    burn_in: int
    loss: str
    grad_clip: float
    target_update_every: int
    tau: float
    average_decay: float
    reward_scale: float
    """`agent.reward_scale` with null resolved (config.reward_scale)."""
    intrinsic_weight: float
    """Initial weight of the intrinsic reward (the trainer may anneal `Learner.intrinsic_weight`)."""
    shaping: float = 0.0
    """`agent.shaping`: weight of the meter potential (0 = no shaping)."""
    distress: float = 0.0
    """`agent.distress`: weight of the cost of meters below `distress_threshold` (0 = off)."""
    distress_threshold: float = 0.3
    """`agent.distress_threshold`: the meter level below which distress starts."""
    distress_money: bool = False
    """`agent.distress_money`: money counts in the distress mean too."""
    lstm_precision: str = "float32"
    """`agent.lstm_precision`: the dtype of the LSTM in the learner's unrolls."""
    huber_delta: float = 1.0
    """Where the Huber loss turns from quadratic to linear (not a user setting)."""
    priority_eta: float = 0.9
    """Sequence priority = eta * max |TD| + (1 - eta) * mean |TD| over valid steps (R2D2; not a user setting)."""


_NOT_MONEY = [i for i in range(NUM_METERS) if i != METER["money"]]
"""Money is a resource, not a need: no cascade runs from it, so it carries no distress."""

_SHARED = ("lr", "adam_eps", "gamma", "n_step", "burn_in", "loss", "grad_clip", "target_update_every", "tau",
           "average_decay", "shaping", "distress", "distress_threshold", "distress_money", "lstm_precision")


def learner_config(agent=None, intrinsic_weight: float = 0.0) -> LearnerConfig:
    """The learner's view of `agent` (an AgentConfig or its DictConfig; default: the
    defaults), range-checked by `config.check_agent`."""
    agent = AgentConfig() if agent is None else agent
    check_agent(agent)
    values = {k: getattr(getattr(agent, k), "value", getattr(agent, k)) for k in _SHARED}
    return LearnerConfig(**values, reward_scale=reward_scale(agent), intrinsic_weight=intrinsic_weight)


# ---------------------------------------------------------------------- targets


def n_step_targets(
    q_online: Tensor,
    q_target: Tensor,
    action_mask: Tensor,
    rewards: Tensor,
    valid: Tensor,
    terminated: Tensor,
    gamma: float,
    n: int,
) -> Tensor:
    """n-step double-DQN targets `[B, L]` for every step of a batch of sequences.

    Inputs: `q_online`, `q_target` `[B, L+1, A]` and `action_mask` `[B, L+1, A]` over
    observation indices 0..L; `rewards`, `valid`, `terminated` `[B, L]` over steps.
    `valid` is a prefix mask; `len` = its count. For step t < len, with m = min(n, len - t):

        G_t = sum_{k<m} gamma^k r_{t+k} + gamma^m * Q_target(o_{t+m}, a*) * bootstrap
        a*  = argmax over actions allowed at t+m of Q_online(o_{t+m})

    bootstrap is 0 exactly when t + m == len and step len-1 terminated. Truncated or
    unfinished sequences bootstrap from observation index len. Invalid steps get 0.
    """
    B, L = rewards.shape
    length = valid.sum(1, keepdim=True)  # [B, 1]
    t = torch.arange(L, device=rewards.device).unsqueeze(0)  # [1, L]
    m = (length - t).clamp(min=1, max=n)  # [B, L]; only meaningful where valid

    # Discounted reward sum: masked rewards are zero past len, so "k < m" needs no mask.
    r = F.pad(torch.where(valid, rewards, 0.0), (0, n))
    returns = torch.zeros_like(rewards)
    for k in range(n):
        returns = returns + gamma**k * r[:, k : k + L]

    # Double DQN: online argmax among allowed actions, evaluated by the target network.
    best = q_online.masked_fill(~action_mask, float("-inf")).argmax(-1, keepdim=True)
    value = q_target.gather(-1, best).squeeze(-1)  # [B, L+1]
    bootstrap_index = t + m
    boot = value.gather(1, bootstrap_index)
    ends_terminal = terminated.gather(1, (length - 1).clamp(min=0))  # [B, 1]
    bootstrap = ~((bootstrap_index == length) & ends_terminal)

    discount = gamma ** m.to(rewards.dtype)
    targets = returns + torch.where(bootstrap, discount * boot, 0.0)
    return torch.where(valid, targets, 0.0)


# ---------------------------------------------------------------------- sequence TD


def unroll(net: nn.Module, obs: Tensor, state, burn_in: int, exact_start: Tensor | None = None) -> Tensor:
    """Q-values `[B, L+1, A]` for every observation of batch-first `obs`.

    The state after the first `burn_in` observations is cut from the gradient for the
    sequences whose start state is stale (`exact_start [B]` False, or all when None), so
    their loss never pushes on the stale stored state; the burn-in's own Q-values are
    computed for every sequence, and the loss masks out those it must not use.
    """
    obs = obs.transpose(0, 1)  # time-first for the network
    if burn_in == 0:
        q, _ = net(obs, state)
        return q.transpose(0, 1)
    q_burn, state = net(obs[:burn_in], state)
    if state is not None:
        keep = torch.zeros(obs.shape[1], 1, dtype=torch.bool, device=obs.device) if exact_start is None \
            else exact_start.unsqueeze(-1)
        state = tuple(torch.where(keep, s, s.detach()) for s in state)
    q, _ = net(obs[burn_in:], state)
    return torch.cat([q_burn, q]).transpose(0, 1)


def learning_steps(valid: Tensor, burn_in: int, exact_start: Tensor | None = None) -> Tensor:
    """Steps `[B, L]` that get a loss: valid, and past the burn-in unless the sequence
    starts an episode (`exact_start [B]`)."""
    past = torch.arange(valid.shape[1], device=valid.device).unsqueeze(0) >= burn_in
    if exact_start is not None:
        past = past | exact_start.unsqueeze(-1)
    return valid & past


class SequenceTD(NamedTuple):
    """Per-step quantities of the loss over steps 0..L-1, each `[B, L]`; `valid` marks
    the steps that get a loss (burn-in steps of mid-episode sequences excluded)."""

    q_taken: Tensor
    targets: Tensor
    valid: Tensor


def sequence_td(
    online: nn.Module,
    target: nn.Module,
    batch: dict[str, Tensor],
    gamma: float,
    n_step: int,
    burn_in: int,
    intrinsic_weight: float | Tensor,
    reward_scale: float = 1.0,
    shaping: float = 0.0,
    distress: float = 0.0,
    distress_threshold: float = 0.3,
    distress_money: bool = False,
) -> SequenceTD:
    """Unroll both networks over a replay batch and build Q(s_t, a_t) and its target."""
    L = batch["action"].shape[1]
    if burn_in >= L:
        raise ValueError(f"burn_in ({burn_in}) must be shorter than the sequence length ({L})")
    reward = reward_scale * (batch["reward_ext"] + intrinsic_weight * batch["reward_int"])  # the only place
    if shaping:
        reward = reward + meter_shaping(batch["obs"], batch["terminated"], online.layout, gamma, shaping)
    if distress:
        reward = reward - reward_scale * distress * meter_distress(batch["obs"], online.layout, distress_threshold,
                                                                    distress_money)
    state = (batch["h0"], batch["c0"]) if online.is_recurrent else None
    exact_start = batch.get("episode_start")

    q_online = unroll(online, batch["obs"], state, burn_in, exact_start)
    with torch.no_grad():
        # No gradient to cut, so one call over the whole sequence: the same values as a
        # burn-in call then a main call, bit for bit, with one LSTM launch fewer.
        q_target = unroll(target, batch["obs"], state, 0)

    # Targets look forward only, so a step's target is the same whether or not earlier
    # steps get a loss; they are built over the whole valid prefix.
    targets = n_step_targets(
        q_online.detach(),
        q_target,
        batch["action_mask"],
        reward,
        batch["valid"],
        batch["terminated"],
        gamma,
        n_step,
    )
    q_taken = q_online[:, :-1].gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)
    return SequenceTD(q_taken, targets, learning_steps(batch["valid"], burn_in, exact_start))


def meter_shaping(obs: Tensor, terminated: Tensor, layout, gamma: float, weight: float) -> Tensor:
    """Shaping rewards `[B, L]`: gamma * Phi(o_{t+1}) - Phi(o_t), with Phi(o) = weight * the
    mean of o's meters and Phi = 0 after a termination.

    Potential-based (Ng et al. 1999), so over any n-step window the terms telescope to
    gamma^m Phi(o_{t+m}) - Phi(o_t): the network learns Q* - Phi and its argmax is the
    unshaped one. Restoring a meter pays at once instead of only through a longer life."""
    phi = weight * obs[..., layout["meters"].slice].mean(-1)  # [B, L+1]
    return gamma * torch.where(terminated, 0.0, phi[:, 1:]) - phi[:, :-1]


def meter_distress(obs: Tensor, layout, threshold: float, money: bool = False) -> Tensor:
    """`[B, L]`: for each step, the mean over the meters but money (all eight with `money`)
    of clamp((threshold - m) / threshold, 0, 1), read from the observation after the step.

    0 while every meter is at or above the threshold, 1 with all of them empty. Below the
    threshold a meter drains others (the cascades), whose cost to survival comes hundreds
    of steps later; this charges it while it happens."""
    meters = obs[:, 1:, layout["meters"].slice]
    deficit = ((threshold - meters) / threshold).clamp(0.0, 1.0)
    return (deficit if money else deficit[..., _NOT_MONEY]).mean(-1)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over entries where `mask` is True (0 when there are none)."""
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


def sequence_loss(
    td: SequenceTD, kind: str = "huber", huber_delta: float = 1.0, weights: Tensor | None = None
) -> Tensor:
    """Huber or MSE TD loss, masked mean over valid steps; `weights [B]` scale sequences."""
    q = torch.where(td.valid, td.q_taken, 0.0)
    y = torch.where(td.valid, td.targets, 0.0)
    if kind == "huber":
        per_step = F.smooth_l1_loss(q, y, reduction="none", beta=huber_delta)
    elif kind == "mse":
        per_step = F.mse_loss(q, y, reduction="none")
    else:
        raise ValueError(f"unknown loss {kind!r}; expected 'huber' or 'mse'")
    if weights is not None:
        per_step = per_step * weights.unsqueeze(1)
    return masked_mean(per_step, td.valid)


def sequence_priority(td: SequenceTD, eta: float = 0.9) -> Tensor:
    """R2D2 priority per sequence `[B]`: eta * max |TD| + (1 - eta) * mean |TD| over valid steps."""
    abs_td = torch.where(td.valid, (td.targets - td.q_taken).detach().abs(), 0.0)
    mean = abs_td.sum(1) / td.valid.sum(1).clamp(min=1)
    return eta * abs_td.amax(1) + (1 - eta) * mean


# ---------------------------------------------------------------------- learner


class Learner:
    """Owns the online and target networks, the optimiser and (with `average_decay`) the
    averaged weights; one `update` per batch."""

    def __init__(
        self, online: nn.Module, target: nn.Module | None = None, config: LearnerConfig | None = None
    ):
        self.config = config or learner_config()
        self.online = online
        self.target = target if target is not None else copy.deepcopy(online)
        self.target.load_state_dict(online.state_dict())  # start in sync
        self.target.requires_grad_(False)
        # Parameter lists built once (nn.Module.parameters() walks the module tree on every
        # call); loading a state dict copies into these same tensors, so they stay valid.
        self.online_parameters = list(online.parameters())
        self._target_parameters = list(self.target.parameters())
        # foreach: the multi-tensor Adam does the same arithmetic per element as the
        # per-parameter loop (bitwise the same weights) in far fewer Python-level ops.
        self.optimizer = torch.optim.Adam(self.online_parameters, lr=self.config.lr, eps=self.config.adam_eps,
                                          foreach=True)
        self.averaged: nn.Module | None = None
        self._averaged_parameters: list[Tensor] = []
        if self.config.average_decay > 0:
            self.averaged = copy.deepcopy(online).requires_grad_(False)
            self._averaged_parameters = list(self.averaged.parameters())
        self.intrinsic_weight: float | Tensor = self.config.intrinsic_weight
        self.updates = 0

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step on a replay batch; returns detached metric tensors.

        Keys: td_loss, q_values, abs_td, grad_norm (scalars) and priority `[B]` (for
        `SequenceReplay.update_priorities(batch["indices"], ...)`).
        """
        cfg = self.config
        with lstm_precision(getattr(torch, cfg.lstm_precision), self.online, self.target):
            td = sequence_td(
                self.online, self.target, batch, cfg.gamma, cfg.n_step, cfg.burn_in, self.intrinsic_weight,
                cfg.reward_scale, cfg.shaping, cfg.distress, cfg.distress_threshold,
                cfg.distress_money,
            )
        loss = sequence_loss(td, cfg.loss, cfg.huber_delta, batch.get("weights"))

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.online_parameters, cfg.grad_clip)
        self.optimizer.step()
        self.updates += 1
        self._update_target()
        self._update_average()

        q = td.q_taken.detach()
        return {
            "td_loss": loss.detach(),
            "q_values": masked_mean(q, td.valid),
            "abs_td": masked_mean((td.targets - q).abs(), td.valid),
            "grad_norm": grad_norm.detach(),
            "priority": sequence_priority(td, cfg.priority_eta),
        }

    @torch.no_grad()
    def _update_target(self) -> None:
        tau = self.config.tau
        if tau > 0:
            torch._foreach_lerp_(self._target_parameters, self.online_parameters, tau)
        elif self.updates % self.config.target_update_every == 0:
            self.target.load_state_dict(self.online.state_dict())

    @torch.no_grad()
    def _update_average(self) -> None:
        if self.averaged is not None:
            torch._foreach_lerp_(self._averaged_parameters, self.online_parameters, 1.0 - self.config.average_decay)

    @property
    def policy_network(self) -> nn.Module:
        """The network to act greedily with once training is done: the averaged weights
        when kept, else the online network."""
        return self.averaged if self.averaged is not None else self.online

    def state_dict(self) -> dict:
        state = {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restores `state_dict()`. Averaged weights missing from `state` (saved without
        averaging) restart from the online weights."""
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a checkpoint's saved groups carry their own flag
            group["foreach"] = True
        self.updates = int(state["updates"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state.get("averaged") or state["online"])
