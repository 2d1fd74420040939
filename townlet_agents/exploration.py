"""Exploration: epsilon schedules, masked epsilon-greedy acting, and RND novelty rewards.

Everything here is batched over the agent dimension and stays on the tensors' device: no
call on the acting path reads a tensor back to the host. Values meant for logging are
returned as tensors (or exposed as a float property that the caller reads only when it
logs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class EpsilonSchedule:
    """Per-agent epsilon: a linear decay, optionally spread into an Ape-X ladder.

    The base value decays linearly from ``start`` to ``end`` over ``decay_steps`` env steps
    and then stays at ``end``::

        base(t) = start + (end - start) * min(t / decay_steps, 1)

    Without a ladder every agent gets ``base(t)``. With ``ladder=True`` agent ``i`` of ``N``
    gets (Horgan et al. 2018, Ape-X)::

        eps_i(t) = base(t) ** (1 + alpha * i / (N - 1))

    so agent 0 explores at the base rate and agent ``N - 1`` at ``base ** (1 + alpha)``
    (almost greedy for the default ``alpha = 7``). With one agent the ladder is just
    ``base``. Keeping some agents nearly greedy lets them reach deep states while others
    keep exploring, which matters when episodes are long and deaths end them early.
    """

    def __init__(
        self,
        start: float,
        end: float,
        decay_steps: int,
        ladder: bool = False,
        ladder_alpha: float = 7.0,
    ) -> None:
        for name, value in (("start", start), ("end", end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"epsilon {name} must be in [0, 1], got {value}")
        if decay_steps < 0:
            raise ValueError(f"epsilon decay_steps must be >= 0, got {decay_steps}")
        if ladder_alpha < 0:
            raise ValueError(f"epsilon ladder_alpha must be >= 0, got {ladder_alpha}")
        self.start = float(start)
        self.end = float(end)
        self.decay_steps = int(decay_steps)
        self.ladder = bool(ladder)
        self.ladder_alpha = float(ladder_alpha)

    def base(self, step: int) -> float:
        """The un-laddered epsilon after ``step`` env steps (a host number: step is a host counter)."""
        if self.decay_steps == 0:
            return self.end
        frac = min(max(step, 0) / self.decay_steps, 1.0)
        return self.start + (self.end - self.start) * frac

    def values(self, step: int, num_agents: int, device: torch.device | str = "cpu") -> Tensor:
        """Epsilon for each of ``num_agents`` agents at env step ``step``: a float tensor ``[N]``."""
        base = self.base(step)
        if not self.ladder or num_agents == 1:
            return torch.full((num_agents,), base, dtype=torch.float32, device=device)
        i = torch.arange(num_agents, dtype=torch.float32, device=device)
        exponent = 1.0 + self.ladder_alpha * i / (num_agents - 1)
        return torch.pow(torch.full_like(i, base), exponent)


def masked_epsilon_greedy(
    q: Tensor,
    action_mask: Tensor,
    epsilon: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Choose one action per agent: greedy among allowed actions, or random among them.

    ``q`` is ``[N, A]``, ``action_mask`` is bool ``[N, A]`` (True = allowed) and ``epsilon``
    is ``[N]``. Disallowed actions get Q = -inf before the argmax, so they are never greedy.
    With probability ``epsilon[i]`` agent ``i`` instead takes an action drawn uniformly from
    its allowed ones: each allowed action gets an independent uniform score, disallowed ones
    get -1, and the argmax of the scores is a uniform draw over the allowed set. No host
    synchronisation. Every row must allow at least one action (the environment guarantees
    it; an all-False row returns action 0).

    Returns a long tensor ``[N]``.
    """
    allowed = action_mask.to(torch.bool)
    greedy, random_action = _greedy_and_uniform(q, allowed, generator)
    explore = torch.rand(q.shape[:-1], generator=generator, device=q.device) < epsilon
    return torch.where(explore, random_action, greedy)


def _greedy_and_uniform(q: Tensor, allowed: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """The greedy allowed action and a uniform draw over the allowed ones, both ``[N]``."""
    greedy = q.masked_fill(~allowed, float("-inf")).argmax(dim=-1)
    scores = torch.rand(q.shape, generator=generator, device=q.device)
    return greedy, scores.masked_fill(~allowed, -1.0).argmax(dim=-1)


class HeldExploration:
    """Temporally extended epsilon-greedy ("ez-greedy", Dabney et al. 2021), per agent.

    With plain epsilon-greedy an agent that has settled near one spot only ever takes
    single random steps, so it rarely travels far enough to find what lies beyond its
    window. Here an exploratory choice is held: when agent ``i`` explores (probability
    ``epsilon[i]``) it draws a random allowed action and a duration ``n`` from a zeta
    distribution, ``P(n) ∝ n ** -mu`` for ``1 <= n <= max_hold``, and repeats that action
    for ``n`` steps. A hold ends early when its action becomes disallowed (a wall) or the
    agent's episode ends; the agent then decides afresh on that step. Batched, no host
    synchronisation.
    """

    def __init__(self, mu: float, num_agents: int, device: torch.device | str = "cpu",
                 max_hold: int = 100) -> None:
        if mu <= 1.0:
            raise ValueError(f"the zeta exponent mu must be > 1, got {mu}")
        if max_hold < 1:
            raise ValueError(f"max_hold must be >= 1, got {max_hold}")
        n = torch.arange(1, max_hold + 1, dtype=torch.float64)
        weights = n ** -float(mu)
        # Inverse-CDF table: duration = 1 + number of cdf entries below a uniform draw in
        # [0, 1); the last entry is exactly 1, so no draw falls past the table.
        self.cdf = (torch.cumsum(weights, 0) / weights.sum()).to(device=device, dtype=torch.float32)
        self.cdf[-1] = 1.0
        self.left = torch.zeros(num_agents, dtype=torch.long, device=device)
        self.action = torch.zeros(num_agents, dtype=torch.long, device=device)

    def choose(self, q: Tensor, action_mask: Tensor, epsilon: Tensor,
               generator: torch.Generator | None = None) -> Tensor:
        """Actions ``[N]``: a held action while its hold lasts, else masked epsilon-greedy
        where an exploratory draw starts a new hold."""
        allowed = action_mask.to(torch.bool)
        holding = (self.left > 0) & allowed.gather(1, self.action.unsqueeze(1)).squeeze(1)
        greedy, random_action = _greedy_and_uniform(q, allowed, generator)
        start = ~holding & (torch.rand(q.shape[:-1], generator=generator, device=q.device) < epsilon)
        u = torch.rand(q.shape[:-1], generator=generator, device=q.device)
        duration = torch.searchsorted(self.cdf, u.unsqueeze(1)).squeeze(1) + 1
        self.action = torch.where(start, random_action, self.action)
        self.left = torch.where(start, duration - 1, torch.where(holding, self.left - 1, torch.zeros_like(self.left)))
        return torch.where(holding | start, self.action, greedy)

    def end_episodes(self, done: Tensor) -> None:
        """A hold never carries into the next episode."""
        self.left = self.left.masked_fill(done, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"left": self.left.clone(), "action": self.action.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["left"].shape != self.left.shape:
            raise ValueError(f"held exploration for {state['left'].shape[0]} agents, this run has {self.left.shape[0]}")
        self.left = state["left"].to(self.left.device)
        self.action = state["action"].to(self.action.device)


class RunningMeanStd:
    """Running mean and (population) variance of a stream of batches, on any device.

    Batches are merged with the parallel (Chan et al.) form of Welford's algorithm, so one
    call with a whole batch equals feeding its rows one by one. The sample count depends
    only on batch shapes, so it is a host number and updating never synchronises.
    """

    def __init__(
        self,
        shape: tuple[int, ...] = (),
        epsilon: float = 1e-4,
        device: torch.device | str = "cpu",
    ) -> None:
        self.shape = tuple(shape)
        self.mean = torch.zeros(self.shape, dtype=torch.float32, device=device)
        self.var = torch.ones(self.shape, dtype=torch.float32, device=device)
        # A tiny prior count keeps the first merge well defined without biasing the stats.
        self.count = float(epsilon)

    def update(self, x: Tensor) -> None:
        """Merge a batch ``[B, *shape]`` into the running statistics."""
        x = x.detach().to(device=self.mean.device, dtype=torch.float32).reshape(-1, *self.shape)
        batch_count = x.shape[0]
        if batch_count == 0:
            return
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (batch_count / total)
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * (self.count * batch_count / total)
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> Tensor:
        return torch.sqrt(self.var + 1e-8)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean, var = state["mean"], state["var"]
        if tuple(mean.shape) != self.shape or tuple(var.shape) != self.shape:
            raise ValueError(
                f"running statistics have shape {tuple(mean.shape)}, expected {self.shape}"
            )
        self.mean = mean.to(device=self.mean.device, dtype=torch.float32).clone()
        self.var = var.to(device=self.var.device, dtype=torch.float32).clone()
        self.count = float(state["count"])


def _mlp(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


class RND:
    """Random Network Distillation (Burda et al. 2018): novelty as a prediction error.

    A fixed, randomly initialised *target* network embeds observations; a *predictor* is
    trained to match it. States visited often are predicted well, so the error is a
    novelty bonus.

    - **Next observation.** The bonus for a transition ``(s, a, s')`` is computed on ``s'``,
      the state the action led to: call ``intrinsic_reward(next_obs)``. Rewarding the
      current state would pay the agent for where it already was, not for what it did.
    - **Normalisation.** Observations are standardised with running statistics and clipped
      to [-5, 5] before both networks; the raw error is divided by a running standard
      deviation of the errors, so the bonus keeps a stable scale as the predictor learns.
    - **No weight here.** This class returns the *unweighted* normalised bonus. The
      intrinsic weight (see ``IntrinsicAnnealer``) is applied exactly once, in the learner,
      when extrinsic and intrinsic rewards are combined; the replay buffer stores them
      separately.
    """

    OBS_CLIP = 5.0

    def __init__(
        self,
        obs_dim: int,
        hidden: int = 128,
        out: int = 64,
        lr: float = 1e-4,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.target = _mlp(obs_dim, hidden, out).to(self.device)
        self.target.requires_grad_(False)
        self.predictor = _mlp(obs_dim, hidden, out).to(self.device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.obs_rms = RunningMeanStd((obs_dim,), device=self.device)
        self.reward_rms = RunningMeanStd((), device=self.device)

    def normalise_obs(self, obs: Tensor) -> Tensor:
        obs = obs.to(device=self.device, dtype=torch.float32)
        return ((obs - self.obs_rms.mean) / self.obs_rms.std).clamp(-self.OBS_CLIP, self.OBS_CLIP)

    def prediction_error(self, obs: Tensor) -> Tensor:
        """Raw per-row squared error (mean over embedding dims) ``[N]``, differentiable in the predictor."""
        x = self.normalise_obs(obs)
        with torch.no_grad():
            target = self.target(x)
        return (self.predictor(x) - target).square().mean(dim=-1)

    @torch.no_grad()
    def intrinsic_reward(self, next_obs: Tensor, update_stats: bool = True) -> Tensor:
        """Unweighted novelty bonus ``[N]`` for reaching ``next_obs`` ``[N, D]``.

        With ``update_stats`` (the acting path) the observation statistics are updated with
        ``next_obs`` first, then the error statistics with the new errors, and the error is
        divided by the running error std.
        """
        if update_stats:
            self.obs_rms.update(next_obs)
        error = self.prediction_error(next_obs)
        if update_stats:
            self.reward_rms.update(error)
        return error / self.reward_rms.std

    def update(self, obs: Tensor) -> Tensor:
        """One Adam step of the predictor on a batch of observations; returns the loss (a tensor)."""
        loss = self.prediction_error(obs.reshape(-1, obs.shape[-1])).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.state_dict(),
            "predictor": self.predictor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "reward_rms": self.reward_rms.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.reward_rms.load_state_dict(state["reward_rms"])


class IntrinsicAnnealer:
    """Shrinks the intrinsic-reward weight once agents survive long and consistently.

    It keeps a window of the last ``window`` finished episodes' survival lengths (in env
    steps, all agents pooled). Whenever the window is full, the population variance of the
    lengths is below ``variance_threshold`` and their mean is above ``survival_floor``, the
    weight is multiplied by ``decay`` (never below ``min_weight``) and the window is cleared,
    so the next decay needs a fresh window of evidence. Consistent *and* long survival means
    the agents have learnt the world; consistently short survival must not switch novelty
    off.

    State lives in device tensors and ``observe`` never synchronises; ``weight_tensor`` is
    what the learner multiplies by (once), ``weight`` is a host float for logging.
    """

    def __init__(
        self,
        initial_weight: float,
        window: int = 100,
        variance_threshold: float = 100.0,
        survival_floor: float = 0.0,
        decay: float = 0.5,
        min_weight: float = 0.0,
        device: torch.device | str = "cpu",
    ) -> None:
        if window < 2:
            raise ValueError(f"annealing window must be >= 2 episodes, got {window}")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"annealing decay must be in (0, 1], got {decay}")
        if initial_weight < 0 or min_weight < 0:
            raise ValueError("intrinsic weights must be >= 0")
        if variance_threshold < 0:
            raise ValueError(f"variance_threshold must be >= 0, got {variance_threshold}")
        self.window = int(window)
        self.variance_threshold = float(variance_threshold)
        self.survival_floor = float(survival_floor)
        self.decay = float(decay)
        self.min_weight = float(min_weight)
        self.device = torch.device(device)
        self.weight_tensor = torch.tensor(float(initial_weight), device=self.device)
        # One spare slot at the end absorbs writes from entries that are not recorded.
        self._lengths = torch.zeros(self.window + 1, device=self.device)
        self._count = torch.zeros((), dtype=torch.long, device=self.device)
        self._next = torch.zeros((), dtype=torch.long, device=self.device)

    @property
    def weight(self) -> float:
        """The current weight as a host float (synchronises: read it when logging)."""
        return float(self.weight_tensor)

    def observe(self, lengths: Tensor, done: Tensor | None = None) -> None:
        """Record finished episodes' survival lengths and anneal if the rule fires.

        ``lengths`` is ``[M]``; if ``done`` (bool ``[M]``) is given, only entries where it is
        True are recorded (pass the per-agent step counters and the done flags directly).
        If more than ``window`` episodes arrive at once, the last ``window`` are kept.
        """
        lengths = lengths.to(device=self.device, dtype=torch.float32).reshape(-1)
        if done is None:
            done = torch.ones_like(lengths, dtype=torch.bool)
        done = done.to(device=self.device, dtype=torch.bool).reshape(-1)
        rank = torch.cumsum(done.long(), dim=0) - 1  # position among recorded entries
        total = rank[-1] + 1 if rank.numel() else torch.zeros((), dtype=torch.long, device=self.device)
        keep = done & (rank >= total - self.window)
        slot = torch.where(keep, (self._next + rank) % self.window, torch.full_like(rank, self.window))
        self._lengths.scatter_(0, slot, lengths)
        self._next = (self._next + total) % self.window
        self._count = torch.clamp(self._count + total, max=self.window)

        recent = self._lengths[: self.window]
        full = self._count >= self.window
        settled = recent.var(unbiased=False) < self.variance_threshold
        surviving = recent.mean() > self.survival_floor
        fire = full & settled & surviving
        decayed = torch.clamp(self.weight_tensor * self.decay, min=self.min_weight)
        self.weight_tensor = torch.where(fire, decayed, self.weight_tensor)
        self._count = torch.where(fire, torch.zeros_like(self._count), self._count)

    def state_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight_tensor.clone(),
            "lengths": self._lengths.clone(),
            "count": self._count.clone(),
            "next": self._next.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["lengths"].shape) != (self.window + 1,):
            raise ValueError(
                f"annealer state has a window of {state['lengths'].shape[0] - 1} episodes, "
                f"this annealer uses {self.window}"
            )
        self.weight_tensor = state["weight"].to(self.device, torch.float32).clone()
        self._lengths = state["lengths"].to(self.device, torch.float32).clone()
        self._count = state["count"].to(self.device, torch.long).clone()
        self._next = state["next"].to(self.device, torch.long).clone()


__all__ = [
    "EpsilonSchedule",
    "IntrinsicAnnealer",
    "RND",
    "RunningMeanStd",
    "masked_epsilon_greedy",
]
