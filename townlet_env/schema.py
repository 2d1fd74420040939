"""The world's vocabulary, in one place: every other module, the agents package included,
reads names and sizes from here instead of typing them out again.

The rules these names take part in are written down in docs/world.md.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

# --- actions (docs/world.md, "Actions"): the index of each is fixed ----------------------
ACTIONS = ("UP", "DOWN", "LEFT", "RIGHT", "INTERACT", "WAIT")
NUM_ACTIONS = len(ACTIONS)
ACTION = {name: i for i, name in enumerate(ACTIONS)}
UP, DOWN, LEFT, RIGHT, INTERACT, WAIT = (ACTION[a] for a in ACTIONS)

# --- meters (docs/world.md, "Meters"): the order of the meter vector everywhere -----------
METERS = ("energy", "hygiene", "satiation", "money", "mood", "social", "health", "fitness")
NUM_METERS = len(METERS)
METER = {name: i for i, name in enumerate(METERS)}
#: An agent dies when one of these reaches 0.
LETHAL_METERS = ("energy", "health")

# --- affordances and cell codes (docs/world.md, "Affordances") ----------------------------
AFFORDANCES = (
    "Bed", "LuxuryBed", "Shower", "HomeMeal", "FastFood", "Doctor", "Hospital",
    "Therapist", "Recreation", "Bar", "Job", "Labor", "Gym", "Park",
)
NUM_AFFORDANCES = len(AFFORDANCES)
#: Cell codes: 0..NUM_AFFORDANCES-1 an affordance, then an empty floor cell, then a cell
#: beyond the town's edge (seen only in observation windows).
EMPTY_CODE = NUM_AFFORDANCES
OUTSIDE_CODE = NUM_AFFORDANCES + 1
NUM_CELL_CODES = NUM_AFFORDANCES + 2

# --- clock and money -----------------------------------------------------------------------
HOURS_PER_DAY = 24
#: Money is a meter in [0, 1]; packs write dollars, and $100 is 1.0.
DOLLARS_PER_UNIT = 100.0
#: A price equal to the money left is affordable despite float rounding.
MONEY_EPS = 1e-6

# --- modes a pack (or the env constructor) picks from --------------------------------------
OBSERVABILITY = ("full", "partial")
REWARD_MODES = ("survival", "baseline_relative", "interoception")
#: Modes that pay an episode's whole reward on its last step, whether it ended by death
#: or by the step limit. After that step nothing is owed, so a learner should not
#: bootstrap past a truncation in these modes (townlet_agents stores it as terminal);
#: the other modes pay as they go and bootstrap at truncation as usual.
SETTLES_AT_EPISODE_END = frozenset({"baseline_relative"})
LAYOUT_MODES = ("shared", "per_town", "per_episode")
# Which half of the layout key space new towns draw from (rng.py): training's, the
# held-out towns' of evaluation, or the plain key.
LAYOUT_POOLS = ("any", "train", "held_out")

# --- levels: the shipped packs that define a level ------------------------------------------
PACKS_DIR = Path(str(resources.files("townlet_env") / "packs"))


def _level_order(name: str):
    # L0, L0_5, L1, ...: the level number first (L0_minimal before L0_5_dual_resource).
    m = re.match(r"L(\d+)(?:_(\d+)_)?", name)
    return (0, int(m[1]), int(m[2] or 0), name) if m else (1, 0, 0, name)


def _discover_levels() -> tuple[str, ...]:
    """Every shipped pack with a `[level]` table (a base file such as town.toml has none)."""
    names = []
    for path in PACKS_DIR.glob("*.toml"):
        with open(path, "rb") as f:
            if "level" in tomllib.load(f):
                names.append(path.stem)
    return tuple(sorted(names, key=_level_order))


LEVELS = _discover_levels()
DEFAULT_LEVEL = "L3_temporal_mechanics"
