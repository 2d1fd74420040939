"""Landmarks: optional observation parts that remember what the agent has seen this episode.

Through a 5x5 window in a new town every episode, an agent has to remember where the Bed,
the food and the Job were; an LSTM must first learn to store coordinates before it can
use them. With `landmarks=True` the observation carries that memory explicitly:

- `landmarks` (affordances, 3): for each affordance, in schema order, whether the agent
  has seen it this episode and, once seen, where it is from the agent (dx, dy in units of
  the town's side - 1, so in [-1, 1]; zeros while unseen);
- `seen_cells` (cells,): which cells of the town it has seen (row-major), what is left
  to search.

Both are functions of the observation history alone (tests/env/test_landmarks.py rebuilds
them from the windows and positions): they add no information the agent has not had,
only memory it no longer has to learn. With full observability every cell is seen at
the first step.
"""

from __future__ import annotations

import numpy as np

from .schema import NUM_AFFORDANCES, NUM_CELL_CODES


class Landmarks:
    """The landmark parts of `n` towns: the level's tables, and `seen`, the memory, an
    `[n, padded cells]` bool array that is True where the agent has seen that cell of its
    town this episode (part of the env state, for checkpoints).
    """

    def __init__(self, p, n: int):
        ops = p.ops
        self.ops = ops
        self.layout = p.layout
        self.observed = p.observed_cells
        self.cell_to_padded = p.cell_to_padded
        self.position = p.position
        self.padded_cells = p.padded_cells
        self.cell_index = ops.arange(p.cells)[None, :]
        deployed = np.isin(np.arange(NUM_AFFORDANCES), ops.to_numpy(p.deployed_codes))
        self.deployed = ops.asarray(deployed, ops.bool)
        self.seen = ops.zeros((n, self.padded_cells), ops.bool)

    def write(self, obs, s):
        """Forget towns whose episode is at its first step, mark what each agent's window
        shows now, and write both parts into `obs` [N, D] (in place)."""
        ops, xp, lay = self.ops, self.ops.xp, self.layout
        seen = self.seen & (s.steps != 0)[:, None]
        window = ops.lookup(self.observed, s.cell)
        seen = ops.put(seen, window, ops.full(window.shape, True, ops.bool))

        inside = xp.broadcast_to(self.cell_to_padded[None, :], (s.grid.shape[0], self.cell_to_padded.shape[0]))
        town = ops.cast(ops.take(s.grid, inside), ops.int64)
        # each deployed affordance stands on exactly one cell (towns.place_affordances):
        # scatter every cell's index to its code's column; EMPTY and OUTSIDE cells land in
        # columns past the affordances, which are dropped
        cells = xp.broadcast_to(self.cell_index, town.shape)
        cell_of = ops.put(ops.zeros((town.shape[0], NUM_CELL_CODES), ops.int64), town, cells)
        cell_of = cell_of[:, :NUM_AFFORDANCES]  # [N, affordances]; undeployed ones masked below
        seen_town = ops.take(seen, inside)
        known = ops.take(seen_town, cell_of) & self.deployed[None, :]
        known = ops.cast(known, ops.float32)[:, :, None]
        offset = ops.lookup(self.position, cell_of) - ops.lookup(self.position, s.cell)[:, None, :]
        marks = xp.concatenate([known, offset * known], 2)
        obs[:, lay["landmarks"].slice] = marks.reshape(marks.shape[0], -1)
        obs[:, lay["seen_cells"].slice] = ops.cast(seen_town, ops.float32)
        self.seen = seen
