"""Adversarial per-agent curriculum: each agent's world gets harder as it learns to survive.

Every agent has its own stage; a stage is a depletion multiplier that the trainer passes to
the environment's per-agent difficulty method (agent ``i`` gets ``multipliers()[i]``, never
agent 0's). The curriculum is fed exactly once per finished episode with that episode's
survival (steps survived / step limit), never with mid-episode or intrinsic rewards.

Decision rule, evaluated for an agent only when one of its episodes has just finished and it
has played at least ``min_episodes`` episodes at its current stage. Over the agent's window
of recent survival fractions at this stage:

- ``survival_rate`` = mean of the window;
- ``learning_progress`` = mean of the newer half minus mean of the older half (with an odd
  count the oldest entry is left out), so positive means it is still improving;
- **advance** if ``survival_rate >= advance_survival``, ``survival_rate`` is at least the
  stage's idle baseline (the survival fraction of an agent that never interacts at that
  stage's multiplier, when given), and ``learning_progress >= 0``; an optional
  ``entropy < entropy_threshold`` can be required too (no entropy given counts as met);
- otherwise **retreat** if ``survival_rate < retreat_survival`` or the survival is falling
  by more than noise explains: ``learning_progress < -max(progress_tolerance, 2 *
  progress_noise)``, where ``progress_noise`` is the standard error of the difference of
  the two half means. Episodes in random towns vary so much that the plain difference
  fell below -0.1 by chance within a few decisions, and agents bounced back to stage 0
  (docs/training.md, "Curriculum");
- never past the first or last stage. On a change the agent's episode count and window
  are reset, so the next decision rests on evidence from the new stage only.

Why no entropy gate by default: with rewards scaled by 1 - gamma the Q-values lie in
[0, 1], where the entropy of softmax(Q) over 5 or 6 allowed actions cannot fall below
about 1.5 / 1.7 nats, so a gate on it opened only on edge cells (docs/training.md,
"Curriculum"). The optional idle baseline asks an agent to outlive one that only WAITs.
It is off by default because with the reference stages it binds at stage 0 alone, where
the idler lives the whole episode: there it demanded a window of perfect episodes, and no
agent advanced in 3M env steps (docs/training.md, "Curriculum").

All state is ``[N]`` / ``[N, W]`` tensors; ``record_episodes_tensor`` never synchronises.
``record_episodes`` additionally reads the few changed agents back to build logged events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

DEFAULT_MULTIPLIERS = (0.2, 0.5, 0.8, 1.0, 1.0)


@dataclass(frozen=True)
class StageChange:
    """One agent moving between stages, with the numbers that made it move."""

    agent: int
    from_stage: int
    to_stage: int
    reason: str  # "advance" or "retreat"
    survival_rate: float
    learning_progress: float
    entropy: float | None
    episodes_at_stage: int
    idle_baseline: float | None = None  # the from-stage's idle survival fraction, when used
    progress_noise: float | None = None  # standard error of learning_progress

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CurriculumUpdate(NamedTuple):
    """Per-agent result of one ``record_episodes_tensor`` call (all ``[N]`` tensors).

    ``change`` is +1 (advanced), -1 (retreated) or 0. The statistics are those the decision
    was made on, i.e. before the window of a changed agent was reset.
    """

    change: Tensor
    from_stage: Tensor
    survival_rate: Tensor
    learning_progress: Tensor
    progress_noise: Tensor
    episodes_at_stage: Tensor


class Curriculum:
    """Per-agent stage tracker; see the module docstring for the rule."""

    def __init__(
        self,
        num_agents: int,
        max_steps: int,
        multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS,
        window: int = 50,
        min_episodes: int = 20,
        advance_survival: float = 0.5,
        retreat_survival: float = 0.3,
        entropy_threshold: float | None = None,
        progress_tolerance: float = 0.1,
        device: torch.device | str = "cpu",
        idle_baselines: tuple[float, ...] | None = None,
    ) -> None:
        if num_agents < 1:
            raise ValueError(f"curriculum needs at least one agent, got num_agents={num_agents}")
        if max_steps < 1:
            raise ValueError(f"curriculum max_steps must be >= 1, got {max_steps}")
        if len(multipliers) < 1 or any(m <= 0 for m in multipliers):
            raise ValueError(f"curriculum multipliers must be a non-empty tuple of positive numbers, got {multipliers}")
        if window < 2:
            raise ValueError(f"curriculum window must be >= 2 episodes, got {window}")
        if not 1 <= min_episodes:
            raise ValueError(f"curriculum min_episodes must be >= 1, got {min_episodes}")
        if not 0.0 <= retreat_survival <= advance_survival <= 1.0:
            raise ValueError(
                "curriculum needs 0 <= retreat_survival <= advance_survival <= 1, got "
                f"retreat_survival={retreat_survival}, advance_survival={advance_survival}"
            )
        if idle_baselines is not None and len(idle_baselines) != len(multipliers):
            raise ValueError(
                f"curriculum needs one idle baseline per stage, got {len(idle_baselines)} for {len(multipliers)} stages"
            )
        if progress_tolerance < 0:
            raise ValueError(f"curriculum progress_tolerance must be >= 0, got {progress_tolerance}")
        self.num_agents = int(num_agents)
        self.max_steps = int(max_steps)
        self.window = int(window)
        self.min_episodes = int(min_episodes)
        self.advance_survival = float(advance_survival)
        self.retreat_survival = float(retreat_survival)
        self.entropy_threshold = None if entropy_threshold is None else float(entropy_threshold)
        self.progress_tolerance = float(progress_tolerance)
        self.device = torch.device(device)
        self.stage_multipliers = torch.tensor([float(m) for m in multipliers], device=self.device)
        self.num_stages = len(multipliers)
        # Survival fraction an idle agent reaches at each stage; 0 = no baseline.
        self.idle_baselines = torch.tensor(
            [0.0] * self.num_stages if idle_baselines is None else [min(1.0, float(b)) for b in idle_baselines],
            device=self.device,
        )
        self.uses_baseline = idle_baselines is not None

        n, w = self.num_agents, self.window
        self.stage = torch.zeros(n, dtype=torch.long, device=self.device)
        self.episodes_at_stage = torch.zeros(n, dtype=torch.long, device=self.device)
        # Oldest outcome in column 0, newest in column W-1; ``filled`` counts valid columns
        # from the right.
        self.survival_window = torch.zeros(n, w, device=self.device)
        self.return_window = torch.zeros(n, w, device=self.device)
        self.filled = torch.zeros(n, dtype=torch.long, device=self.device)
        self._column = torch.arange(w, device=self.device)

    # ----------------------------------------------------------------- reading
    def multipliers(self) -> Tensor:
        """Each agent's depletion multiplier for its own stage, ``[N]``."""
        return self.stage_multipliers[self.stage]

    def survival_rate(self) -> Tensor:
        """Mean survival fraction over each agent's window at its stage, ``[N]`` (0 when empty)."""
        valid = self._column >= self.window - self.filled[:, None]
        return _masked_mean(self.survival_window, valid)

    def _halves(self) -> tuple[Tensor, Tensor, Tensor]:
        """Masks of the newer and older halves of each window, and the half size ``[N]``."""
        half = (self.filled // 2)[:, None]
        newer = self._column >= self.window - half
        older = (self._column >= self.window - 2 * half) & ~newer
        return newer, older, half.squeeze(1)

    def learning_progress(self) -> Tensor:
        """Newer-half mean minus older-half mean of each agent's window, ``[N]`` (0 below 2 entries)."""
        newer, older, half = self._halves()
        progress = _masked_mean(self.survival_window, newer) - _masked_mean(self.survival_window, older)
        return torch.where(half > 0, progress, torch.zeros_like(progress))

    def progress_noise(self) -> Tensor:
        """Standard error of ``learning_progress``, ``[N]``: sqrt(s_new^2 / h + s_old^2 / h)
        with the unbiased variance of each half of h entries (0 below 2 entries a half)."""
        newer, older, half = self._halves()
        var = _masked_variance(self.survival_window, newer) + _masked_variance(self.survival_window, older)
        return torch.sqrt(var / half.clamp(min=1))

    def mean_return(self) -> Tensor:
        """Mean episode return over each agent's window at its stage, ``[N]``."""
        valid = self._column >= self.window - self.filled[:, None]
        return _masked_mean(self.return_window, valid)

    # ---------------------------------------------------------------- updating
    def record_episodes_tensor(
        self,
        done: Tensor,
        lengths: Tensor,
        entropy: Tensor | None = None,
        returns: Tensor | None = None,
    ) -> CurriculumUpdate:
        """Record the episodes that just finished and move agents between stages; no sync.

        ``done`` bool ``[N]`` marks agents whose episode ended at this step (terminated or
        truncated at the step limit); ``lengths`` ``[N]`` are their episode lengths in steps;
        ``entropy`` ``[N]`` an optional policy entropy; ``returns`` ``[N]`` optional
        extrinsic episode returns (kept for logging, not used in decisions). Entries of agents
        that are not done are ignored.
        """
        n = self.num_agents
        done = done.to(device=self.device, dtype=torch.bool).reshape(n)
        survival = (self._per_agent(lengths) / self.max_steps).clamp(0.0, 1.0)
        ret = torch.zeros_like(survival) if returns is None else self._per_agent(returns)

        # 1. Append the finished episode to each done agent's window (shift left by one).
        self.survival_window = _append_where(done, self.survival_window, survival)
        self.return_window = _append_where(done, self.return_window, ret)
        self.filled = torch.where(done, torch.clamp(self.filled + 1, max=self.window), self.filled)
        self.episodes_at_stage = self.episodes_at_stage + done.long()

        # 2. Decide, for done agents with enough evidence at their stage.
        rate = self.survival_rate()
        progress = self.learning_progress()
        noise = self.progress_noise()
        calm = torch.ones_like(done)
        if entropy is not None and self.entropy_threshold is not None:
            calm = self._per_agent(entropy) < self.entropy_threshold
        eligible = done & (self.episodes_at_stage >= self.min_episodes)
        earned = rate >= self.idle_baselines[self.stage]
        thriving = (rate >= self.advance_survival) & earned & (progress >= 0) & calm
        advance = eligible & thriving & (self.stage < self.num_stages - 1)
        # A fall counts only beyond two standard errors: noise alone goes that low ~2% of the time.
        falling = progress < -torch.clamp(2.0 * noise, min=self.progress_tolerance)
        struggling = (rate < self.retreat_survival) | falling
        retreat = eligible & ~advance & struggling & (self.stage > 0)
        change = advance.long() - retreat.long()

        update = CurriculumUpdate(
            change=change,
            from_stage=self.stage.clone(),
            survival_rate=rate,
            learning_progress=progress,
            progress_noise=noise,
            episodes_at_stage=self.episodes_at_stage.clone(),
        )

        # 3. Apply changes; a changed agent starts its new stage with no evidence.
        kept = change == 0
        self.stage = self.stage + change
        self.episodes_at_stage = torch.where(kept, self.episodes_at_stage, 0)
        self.filled = torch.where(kept, self.filled, 0)
        self.survival_window = torch.where(kept[:, None], self.survival_window, 0.0)
        self.return_window = torch.where(kept[:, None], self.return_window, 0.0)
        return update

    def _per_agent(self, values: Tensor) -> Tensor:
        return values.to(device=self.device, dtype=torch.float32).reshape(self.num_agents)

    def record_episodes(
        self,
        done: Tensor,
        lengths: Tensor,
        entropy: Tensor | None = None,
        returns: Tensor | None = None,
    ) -> list[StageChange]:
        """Like ``record_episodes_tensor``, but returns a ``StageChange`` event per changed agent.

        Reads the changed agents back to the host (one small sync); call it where episodes
        end, or use the tensor variant and build events at logging time.
        """
        update = self.record_episodes_tensor(done, lengths, entropy=entropy, returns=returns)
        agents = torch.nonzero(update.change).flatten()
        if agents.numel() == 0:
            return []
        ent = (
            torch.full((self.num_agents,), float("nan"), device=self.device)
            if entropy is None
            else self._per_agent(entropy)
        )
        columns = torch.stack(
            [
                agents.float(),
                update.from_stage[agents].float(),
                update.change[agents].float(),
                update.survival_rate[agents],
                update.learning_progress[agents],
                ent[agents],
                update.episodes_at_stage[agents].float(),
                update.progress_noise[agents],
            ],
            dim=1,
        ).tolist()
        events = []
        for agent, from_stage, change, rate, progress, ent_i, episodes, noise in columns:
            events.append(
                StageChange(
                    agent=int(agent),
                    from_stage=int(from_stage),
                    to_stage=int(from_stage) + int(change),
                    reason="advance" if change > 0 else "retreat",
                    survival_rate=rate,
                    learning_progress=progress,
                    entropy=None if entropy is None else ent_i,
                    episodes_at_stage=int(episodes),
                    idle_baseline=float(self.idle_baselines[int(from_stage)]) if self.uses_baseline else None,
                    progress_noise=noise,
                )
            )
        return events

    # ----------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage.clone(),
            "episodes_at_stage": self.episodes_at_stage.clone(),
            "survival_window": self.survival_window.clone(),
            "return_window": self.return_window.clone(),
            "filled": self.filled.clone(),
            "stage_multipliers": self.stage_multipliers.clone(),
            "max_steps": self.max_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore per-agent progress. Stage multipliers and max_steps stay those this
        curriculum was built with (the config in use), only the stage count must match."""
        shape = (self.num_agents, self.window)
        if tuple(state["survival_window"].shape) != shape:
            raise ValueError(
                f"curriculum state is for (agents, window) = {tuple(state['survival_window'].shape)}, "
                f"this curriculum has {shape}"
            )
        if state["stage_multipliers"].numel() != self.num_stages:
            raise ValueError(
                f"curriculum state has {state['stage_multipliers'].numel()} stages, this curriculum has {self.num_stages}"
            )
        dev = self.device
        self.stage = state["stage"].to(dev, torch.long).clone()
        self.episodes_at_stage = state["episodes_at_stage"].to(dev, torch.long).clone()
        self.survival_window = state["survival_window"].to(dev, torch.float32).clone()
        self.return_window = state["return_window"].to(dev, torch.float32).clone()
        self.filled = state["filled"].to(dev, torch.long).clone()


def _append_where(done: Tensor, window: Tensor, value: Tensor) -> Tensor:
    """Rows where ``done``: drop the oldest column and append ``value``; other rows unchanged."""
    shifted = torch.cat([window[:, 1:], value[:, None]], dim=1)
    return torch.where(done[:, None], shifted, window)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    count = mask.sum(dim=-1)
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=-1)
    return total / count.clamp(min=1)


def _masked_variance(values: Tensor, mask: Tensor) -> Tensor:
    """Unbiased variance over the masked entries of each row (0 below 2 entries)."""
    count = mask.sum(dim=-1)
    centred = torch.where(mask, values - _masked_mean(values, mask)[:, None], torch.zeros_like(values))
    return torch.where(count > 1, centred.square().sum(dim=-1) / (count - 1).clamp(min=1), torch.zeros_like(centred[:, 0]))


__all__ = ["Curriculum", "CurriculumUpdate", "StageChange", "DEFAULT_MULTIPLIERS"]
