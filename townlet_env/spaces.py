"""Gymnasium spaces for a level's observation and action."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .layout import ObsLayout
from .schema import NUM_ACTIONS


def observation_space(layout: ObsLayout) -> spaces.Box:
    """Bounds per part: codes in [0, categories - 1], sin/cos in [-1, 1], the rest [0, 1]."""
    low = np.zeros(layout.size, dtype=np.float32)
    high = np.ones(layout.size, dtype=np.float32)
    for part in layout.parts:
        if part.categories:
            high[part.slice] = part.categories - 1
    t = layout["time"].start
    low[t : t + 2] = -1.0
    if "landmarks" in layout.names():  # (seen, dx, dy) per affordance: the offsets are signed
        low[layout["landmarks"].slice] = np.tile([0.0, -1.0, -1.0], layout["landmarks"].shape[0])
    return spaces.Box(low=low, high=high, dtype=np.float32)


def action_space() -> spaces.Discrete:
    return spaces.Discrete(NUM_ACTIONS)
