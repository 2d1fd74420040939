"""Sequence replay: a preallocated ring buffer of fixed-length, overlapping sequences.

Why sequences: the recurrent learner needs the recurrent state at each sequence's start
(for burn-in) and whole stretches of experience to unroll through, or it has no memory
(docs/training.md, "Sequences with stored state"). Why this shape:

* Each agent stages its current window `[L+1]` observations / `[L]` steps on the device.
  A window is emitted into the ring when the agent's episode ends (terminated or
  truncated) or when it is full. Short episodes are padded and masked, not dropped
  (else episodes shorter than L are never learned from); post-terminal steps are
  masked (docs/training.md, "Masks, and why").
* Full windows overlap by L/2: the next window keeps the last L/2 steps, with the
  recurrent state recorded when its first step began.
* Everything is batched over all N agents with masks and `torch.where`; emission computes
  ring slots with a cumsum over the emit flags and a device-side ring pointer, and writes
  non-emitting agents' rows to a trash row (index `capacity`). Nothing on `add`,
  `flush` or `sample` reads a tensor value on the host (a read per step would stall a
  GPU, and a loop per agent would make the cost grow with N). On the CPU, where a read
  is free, `read_flags` lets emission and the overlap shift touch only the agents
  involved; the stored result is the same.
* `flush` emits every agent's not-yet-emitted steps, for step limits, shutdown and
  checkpoints, so agents that survive to the step limit still reach replay.
* `sample` draws stored sequences uniformly (not episodes, which would over-weight the
  steps of short episodes), or by priority.

Sequence layout (one row of the ring), with L = `seq_len`:
  obs [L+1, D], action_mask [L+1, A]  observation index t is the one step t acted on;
                                      index `len` (number of valid steps) holds the
                                      observation that follows the last valid step (the
                                      final observation at an episode end), for
                                      bootstrapping. Entries past it are unspecified.
  action [L], reward_ext [L], reward_int [L], terminated [L], truncated [L]
                                      zero / False on invalid steps.
  valid [L]                           True for steps 0..len-1, False after (a prefix).
  episode_start []                    True when step 0 is the first step of an episode, so
                                      the start state is exactly zero and the learner needs
                                      no burn-in for this sequence.
  h0, c0 [H]                          recurrent state before consuming obs index 0
                                      (only when `recurrent`).

Counters `size` and `total_emitted` are 0-dim long tensors on the buffer's device, so
reading them never blocks the hot path; call `int(...)` only at logging intervals.
"""

from __future__ import annotations

import torch
from torch import Tensor

State = tuple[Tensor, ...]


class SequenceReplay:
    """Ring buffer of `capacity` sequences of `seq_len` steps, fed by `num_agents` agents."""

    def __init__(
        self,
        capacity: int,
        num_agents: int,
        seq_len: int,
        obs_dim: int,
        num_actions: int,
        hidden_size: int,
        device: torch.device | str = "cpu",
        recurrent: bool = True,
        priority_exponent: float = 0.9,
    ):
        if seq_len < 2 or seq_len % 2:
            raise ValueError(f"seq_len must be an even number >= 2, got {seq_len}")
        if capacity < num_agents:
            raise ValueError(
                f"capacity ({capacity}) must be at least num_agents ({num_agents}): "
                "one add can emit a sequence for every agent"
            )
        self.capacity = capacity
        self.num_agents = num_agents
        self.seq_len = seq_len
        self.half = seq_len // 2
        self.obs_dim = obs_dim
        self.num_actions = num_actions
        self.hidden_size = hidden_size
        self.device = torch.device(device)
        self.recurrent = recurrent
        self.priority_exponent = priority_exponent

        # Ring storage: rows 0..capacity-1, plus the trash row at index `capacity`.
        self.storage = self._sequence_tensors(capacity + 1)
        self.priority = torch.zeros(capacity + 1, device=self.device)
        self._ptr = torch.zeros((), dtype=torch.long, device=self.device)
        self._total = torch.zeros((), dtype=torch.long, device=self.device)
        self._max_priority = torch.ones((), device=self.device)

        # Per-agent staging: the window being collected, its write position, how many of
        # its leading steps were already emitted (overlap), and the state at step L/2.
        self.staging = self._sequence_tensors(num_agents)
        self.pos = torch.zeros(num_agents, dtype=torch.long, device=self.device)
        self.emitted_upto = torch.zeros(num_agents, dtype=torch.long, device=self.device)
        self.h_mid = torch.zeros(num_agents, hidden_size if recurrent else 0, device=self.device)
        self.c_mid = torch.zeros_like(self.h_mid)
        self._agents = torch.arange(num_agents, device=self.device)
        self._steps = torch.arange(seq_len, device=self.device)
        # Flat row offsets of each agent's window: one index_copy_ per field writes a step,
        # far cheaper than indexing with two tensors.
        self._step_rows = self._agents * seq_len
        self._obs_rows = self._agents * (seq_len + 1)
        # Whether emission and shifting may read which agents are involved and touch only
        # those rows: free on the CPU, a host sync on a GPU (there every row is written,
        # the others to the trash row). Tests switch it off to run the GPU branch on the CPU.
        self.read_flags = self.device.type == "cpu"

    def _sequence_tensors(self, rows: int) -> dict[str, Tensor]:
        L, D, A, dev = self.seq_len, self.obs_dim, self.num_actions, self.device
        t = {
            "obs": torch.zeros(rows, L + 1, D, device=dev),
            "action_mask": torch.zeros(rows, L + 1, A, dtype=torch.bool, device=dev),
            "action": torch.zeros(rows, L, dtype=torch.long, device=dev),
            "reward_ext": torch.zeros(rows, L, device=dev),
            "reward_int": torch.zeros(rows, L, device=dev),
            "terminated": torch.zeros(rows, L, dtype=torch.bool, device=dev),
            "truncated": torch.zeros(rows, L, dtype=torch.bool, device=dev),
            "valid": torch.zeros(rows, L, dtype=torch.bool, device=dev),
            "episode_start": torch.zeros(rows, dtype=torch.bool, device=dev),
        }
        if self.recurrent:
            t["h0"] = torch.zeros(rows, self.hidden_size, device=dev)
            t["c0"] = torch.zeros(rows, self.hidden_size, device=dev)
        return t

    # ------------------------------------------------------------------ counters

    @property
    def size(self) -> Tensor:
        """Number of stored sequences, a 0-dim long device tensor."""
        return torch.clamp(self._total, max=self.capacity)

    @property
    def total_emitted(self) -> Tensor:
        """Sequences emitted since construction (including overwritten ones), 0-dim tensor."""
        return self._total

    # ------------------------------------------------------------------ collecting

    def begin(
        self, obs: Tensor, action_mask: Tensor, state: State | None = None, episode_start: Tensor | bool = True
    ) -> None:
        """Start every agent's window at `obs [N, D]`, with recurrent `state` (None = zeros).

        `episode_start` (`[N]` or one bool) says which agents are at the first step of an
        episode; a run resumed mid-episode passes False for those that are not.
        """
        s = self.staging
        s["obs"][:, 0] = obs
        s["action_mask"][:, 0] = action_mask
        s["episode_start"].copy_(torch.as_tensor(episode_start, device=self.device).expand(self.num_agents))
        if self.recurrent:
            h, c = state if state is not None else (torch.zeros_like(self.h_mid),) * 2
            s["h0"].copy_(h)
            s["c0"].copy_(c)
        self.pos.zero_()
        self.emitted_upto.zero_()

    def add(
        self,
        action: Tensor,
        reward_ext: Tensor,
        reward_int: Tensor,
        terminated: Tensor,
        truncated: Tensor,
        next_obs: Tensor,
        next_action_mask: Tensor,
        next_state: State | None,
        reset_obs: Tensor,
        reset_action_mask: Tensor,
    ) -> None:
        """Record one step for all N agents; emit the windows that ended or filled up.

        `next_obs` is the true next observation (the final one where the episode ended);
        `reset_obs` / `reset_action_mask` are where ended agents' next episode starts.
        `next_state` is each agent's recurrent state after consuming its current obs, i.e.
        the state it carries into `next_obs` (None for a feed-forward buffer). Ended
        agents restart from a zero state whatever their `next_state`.
        """
        s, p = self.staging, self.pos
        step, obs = self._step_rows + p, self._obs_rows + p + 1
        for name, value in (("action", action), ("reward_ext", reward_ext), ("reward_int", reward_int),
                            ("terminated", terminated), ("truncated", truncated)):
            s[name].view(-1).index_copy_(0, step, value.to(s[name].dtype))
        s["obs"].view(-1, self.obs_dim).index_copy_(0, obs, next_obs)
        s["action_mask"].view(-1, self.num_actions).index_copy_(0, obs, next_action_mask)
        self.pos = p + 1

        if self.recurrent:
            # The state before consuming obs index L/2: the window's next start, if it fills.
            at_mid = (self.pos == self.half).unsqueeze(-1)
            self.h_mid = torch.where(at_mid, next_state[0], self.h_mid)
            self.c_mid = torch.where(at_mid, next_state[1], self.c_mid)

        ended = terminated | truncated
        full = self.pos == self.seq_len
        self._emit(ended | full)
        self._shift(full & ~ended, next_state)
        self._restart(ended, reset_obs, reset_action_mask)

    def flush(self, state: State | None = None) -> None:
        """Emit every agent's not-yet-emitted steps; restart windows at the current obs.

        `state` is each agent's current recurrent state (before consuming its current
        observation); it becomes the new windows' start state.
        """
        self._emit(self.pos > self.emitted_upto)
        s, rows = self.staging, self._agents
        s["episode_start"] &= self.pos == 0  # a window restarted mid-episode has a carried state
        s["obs"][:, 0] = s["obs"][rows, self.pos]
        s["action_mask"][:, 0] = s["action_mask"][rows, self.pos]
        if self.recurrent:
            h, c = state if state is not None else (torch.zeros_like(self.h_mid),) * 2
            s["h0"].copy_(h)
            s["c0"].copy_(c)
        self.pos = torch.zeros_like(self.pos)
        self.emitted_upto = torch.zeros_like(self.emitted_upto)

    def _emit(self, emit: Tensor) -> None:
        """Copy staged windows of agents with `emit` into consecutive ring slots, in agent
        order (sync-free unless `read_flags`)."""
        s = self.staging
        if self.read_flags:  # only the emitting agents' rows
            who = torch.nonzero(emit).flatten()
            count = who.numel()
            if count == 0:
                return
            dest = (self._ptr + torch.arange(count, device=self.device)) % self.capacity
            rows = {name: value.index_select(0, who) for name, value in s.items()}
            pos = self.pos.index_select(0, who)
        else:  # every agent's row; those not emitting go to the trash row
            flags = emit.long()
            rank = torch.cumsum(flags, 0) - flags
            dest = torch.where(emit, (self._ptr + rank) % self.capacity, self.capacity)
            count = flags.sum()
            rows, pos = dict(s), self.pos

        valid = self._steps.unsqueeze(0) < pos.unsqueeze(1)
        rows["valid"] = valid
        rows["terminated"] = rows["terminated"] & valid
        rows["truncated"] = rows["truncated"] & valid
        rows["action"] = torch.where(valid, rows["action"], 0)
        rows["reward_ext"] = torch.where(valid, rows["reward_ext"], 0.0)
        rows["reward_int"] = torch.where(valid, rows["reward_int"], 0.0)
        for name, value in rows.items():
            self.storage[name].index_copy_(0, dest, value)
        self.priority.index_copy_(0, dest, self._max_priority.expand(dest.shape[0]))

        self._ptr = (self._ptr + count) % self.capacity
        self._total = self._total + count

    def _shift(self, shift: Tensor, next_state: State | None) -> None:
        """Full windows keep their last L/2 steps: they become the next window's first half."""
        H, s = self.half, self.staging
        who = torch.nonzero(shift).flatten() if self.read_flags else None  # only the shifting rows
        if who is not None and who.numel() == 0:
            return
        for name, value in s.items():
            if name in ("h0", "c0", "valid", "episode_start"):  # handled below / at emission
                continue
            keep = H + 1 if name in ("obs", "action_mask") else H
            if who is not None:
                value[who, :keep] = value[who, H : H + keep]
            else:
                view = shift.view(-1, *([1] * (value.dim() - 1)))
                value[:, :keep] = torch.where(view, value[:, H : H + keep], value[:, :keep])
        if self.recurrent:
            col = shift.unsqueeze(-1)
            s["h0"].copy_(torch.where(col, self.h_mid, s["h0"]))
            s["c0"].copy_(torch.where(col, self.c_mid, s["c0"]))
            # The shifted window's step L/2 starts at the old window's obs index L.
            self.h_mid = torch.where(col, next_state[0], self.h_mid)
            self.c_mid = torch.where(col, next_state[1], self.c_mid)
        s["episode_start"] &= ~shift  # the kept half begins mid-episode
        self.pos = torch.where(shift, H, self.pos)
        self.emitted_upto = torch.where(shift, H, self.emitted_upto)

    def _restart(self, ended: Tensor, reset_obs: Tensor, reset_action_mask: Tensor) -> None:
        """Agents whose episode ended start a fresh window at the reset obs, zero state."""
        if self.read_flags and not bool(ended.any()):
            return
        s, col = self.staging, ended.unsqueeze(-1)
        s["obs"][:, 0] = torch.where(col, reset_obs, s["obs"][:, 0])
        s["action_mask"][:, 0] = torch.where(col, reset_action_mask, s["action_mask"][:, 0])
        s["episode_start"] |= ended
        if self.recurrent:
            s["h0"].masked_fill_(col, 0.0)
            s["c0"].masked_fill_(col, 0.0)
        self.pos = torch.where(ended, 0, self.pos)
        self.emitted_upto = torch.where(ended, 0, self.emitted_upto)

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        prioritized: bool = False,
        importance_exponent: float = 0.6,
    ) -> dict[str, Tensor]:
        """Draw `batch_size` stored sequences: uniformly, or with P(i) ~ priority_i ** alpha.

        Returns the sequence tensors `[B, ...]`, their ring `indices` (for
        `update_priorities`) and importance `weights` `[B]` (all ones when uniform;
        `(size * P(i)) ** -beta` normalised by its maximum when prioritized).
        The buffer must hold at least one sequence (check `size` at a logging interval).
        """
        size = self.size
        if prioritized:
            live = torch.arange(self.capacity, device=self.device) < size
            probs = torch.where(live, self.priority[: self.capacity] ** self.priority_exponent, 0.0)
            indices = torch.multinomial(probs, batch_size, replacement=True, generator=generator)
            p = probs[indices] / probs.sum()
            weights = (size * p) ** -importance_exponent
            weights = weights / weights.max()
        else:
            u = torch.rand(batch_size, dtype=torch.float64, device=self.device, generator=generator)
            indices = (u * size).long().clamp_(max=self.capacity - 1)
            weights = torch.ones(batch_size, device=self.device)
        batch = {name: value[indices] for name, value in self.storage.items()}
        batch["indices"] = indices
        batch["weights"] = weights
        return batch

    def update_priorities(self, indices: Tensor, priorities: Tensor) -> None:
        """Set the priorities of sampled sequences (e.g. the learner's R2D2 |TD| mix)."""
        priorities = priorities.detach().to(self.priority.dtype).clamp(min=1e-6)
        self.priority[indices] = priorities
        self._max_priority = torch.maximum(self._max_priority, priorities.max())

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Tensors and ints only (loads with `torch.load(weights_only=True)`)."""
        return {
            "config": {
                "capacity": self.capacity,
                "num_agents": self.num_agents,
                "seq_len": self.seq_len,
                "obs_dim": self.obs_dim,
                "num_actions": self.num_actions,
                "hidden_size": self.hidden_size,
                "recurrent": int(self.recurrent),
            },
            "storage": dict(self.storage),
            "priority": self.priority,
            "ptr": self._ptr,
            "total": self._total,
            "max_priority": self._max_priority,
            "staging": dict(self.staging),
            "pos": self.pos,
            "emitted_upto": self.emitted_upto,
            "h_mid": self.h_mid,
            "c_mid": self.c_mid,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a buffer saved by `state_dict`; its configuration must match this one."""
        mine = self.state_dict()["config"]
        if state["config"] != mine:
            raise ValueError(f"replay configuration mismatch: saved {state['config']}, this buffer {mine}")
        # Buffers saved before `episode_start` existed: every sequence keeps its burn-in.
        self.storage["episode_start"].zero_()
        self.staging["episode_start"].zero_()
        for name, value in state["storage"].items():
            self.storage[name].copy_(value)
        for name, value in state["staging"].items():
            self.staging[name].copy_(value)
        self.priority.copy_(state["priority"])
        self._ptr = state["ptr"].to(self.device).clone()
        self._total = state["total"].to(self.device).clone()
        self._max_priority = state["max_priority"].to(self.device).clone()
        self.pos = state["pos"].to(self.device).clone()
        self.emitted_upto = state["emitted_upto"].to(self.device).clone()
        self.h_mid = state["h_mid"].to(self.device).clone()
        self.c_mid = state["c_mid"].to(self.device).clone()
