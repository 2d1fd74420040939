"""Curriculum stage changes on a GPU, kept in full without a sync per step.

Each change is written into a preallocated table on the device (env step, agent, from,
to, and the numbers behind the decision) at the slot given by a running count; the table
is read once per log interval. An agent changes stage at most once per
`curriculum.min_episodes` finished episodes, plus once for evidence it carried into the
interval, and an episode takes at least one of its steps, so one interval holds at most
`num_envs + (log_every_env_steps + num_envs) // min_episodes` changes: the table is sized
to that bound (capped at `MAX_ROWS`), so at shipped settings nothing is ever dropped.
Beyond the cap the rest are counted and reported in a `curriculum_stage_changes_dropped`
event, never lost without a trace.
"""

from __future__ import annotations

import torch

#: Largest table kept (rows of 9 float64: 72 bytes each, so 4.5 MiB).
MAX_ROWS = 65_536
COLUMNS = ("global_step", "agent", "from_stage", "to_stage", "survival_rate", "learning_progress", "entropy",
           "episodes_at_stage", "progress_noise")


class StageEventLog:
    def __init__(self, capacity: int, device: torch.device):
        self.capacity = capacity
        # One spare row at the end absorbs the writes of agents that did not change.
        self.rows = torch.zeros(capacity + 1, len(COLUMNS), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self._agents = None

    @classmethod
    def for_run(cls, num_envs: int, log_every: int, min_episodes: int, device: torch.device) -> StageEventLog:
        bound = num_envs + (log_every + num_envs) // max(min_episodes, 1) + 1
        return cls(min(bound, MAX_ROWS), device)

    def record(self, global_step: int, update, entropy: torch.Tensor) -> None:
        """Append the changes in one `Curriculum.record_episodes_tensor` result; no sync."""
        changed = update.change != 0
        n = changed.shape[0]
        if self._agents is None or self._agents.shape[0] != n:
            self._agents = torch.arange(n, device=self.rows.device, dtype=torch.float64)
        step = torch.full((n,), float(global_step), dtype=torch.float64, device=self.rows.device)
        rows = torch.stack([step, self._agents, update.from_stage.double(), (update.from_stage + update.change).double(),
                            update.survival_rate.double(), update.learning_progress.double(), entropy.double(),
                            update.episodes_at_stage.double(), update.progress_noise.double()], 1)
        slot = self.count + torch.cumsum(changed.long(), 0) - 1
        slot = torch.where(changed & (slot < self.capacity), slot, self.capacity)
        self.rows.index_copy_(0, slot, rows)
        self.count += changed.sum()

    def drain(self) -> tuple[list[dict], int]:
        """The changes since the last drain, oldest first, and how many did not fit."""
        count = int(self.count)
        kept = min(count, self.capacity)
        events = []
        for values in self.rows[:kept].tolist():
            e = dict(zip(COLUMNS, values))
            for k in ("global_step", "agent", "from_stage", "to_stage", "episodes_at_stage"):
                e[k] = int(e[k])
            e["reason"] = "advance" if e["to_stage"] > e["from_stage"] else "retreat"
            events.append(e)
        self.count.zero_()
        return events, count - kept
