"""Acting: one batched forward pass for all agents per step, each agent's recurrent state
carried between steps and zeroed exactly when that agent's own episode ends, never when
another agent's does or when the learner updates."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .exploration import EpsilonSchedule, HeldExploration, masked_epsilon_greedy


class Actor:
    def __init__(self, net: nn.Module, num_agents: int, device: torch.device,
                 schedule: EpsilonSchedule | None = None, hold: HeldExploration | None = None):
        self.net = net
        self.schedule = schedule
        self.hold = hold  # ez-greedy: exploratory actions held for several steps
        self.num_agents = num_agents
        self.device = device
        self.state = net.initial_state(num_agents, device)

    @torch.no_grad()
    def act(self, obs: Tensor, action_mask: Tensor, env_step: int, generator=None) -> tuple[Tensor, Tensor, Tensor]:
        """Masked epsilon-greedy actions [N]; also the Q-values [N, A] and epsilons [N].

        The state advances by one step; the caller ends episodes with `end_episodes`.
        """
        q, self.state = self.net.step(obs, self.state)
        if self.schedule is None:
            eps = torch.zeros(self.num_agents, device=self.device)
        else:
            eps = self.schedule.values(env_step, self.num_agents, self.device)
        if self.hold is not None:
            return self.hold.choose(q, action_mask, eps, generator), q, eps
        return masked_epsilon_greedy(q, action_mask, eps, generator), q, eps

    @torch.no_grad()
    def greedy(self, obs: Tensor, action_mask: Tensor) -> Tensor:
        q, self.state = self.net.step(obs, self.state)
        return q.masked_fill(~action_mask, float("-inf")).argmax(dim=-1)

    def end_episodes(self, done: Tensor) -> None:
        """Zero the state of agents whose episode just ended (sync-free multiplication)."""
        keep = (~done).unsqueeze(-1).to(torch.float32)
        self.state = tuple(s * keep for s in self.state)
        if self.hold is not None:
            self.hold.end_episodes(done)


def masked_entropy(q: Tensor, action_mask: Tensor) -> Tensor:
    """[N] entropy (nats) of softmax(Q) over allowed actions: the curriculum's 'policy is
    decided' signal."""
    logits = q.masked_fill(~action_mask, float("-inf"))
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp.masked_fill(~action_mask, 0.0)).sum(-1)
