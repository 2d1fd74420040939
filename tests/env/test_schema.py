"""The world's vocabulary lives in townlet_env.schema and everything agrees with it:
levels are the packs that define one, and sizes everywhere follow the names."""

from __future__ import annotations

import tomllib

import numpy as np

from townlet_env import LEVELS, TownletEnv, load_pack, schema
from townlet_env.backend import NumpyOps
from townlet_env.params import INTERACTION, WorldParams


def test_levels_are_the_shipped_packs_with_a_level_table():
    packs = sorted(schema.PACKS_DIR.glob("*.toml"))
    defining = {p.stem for p in packs if "level" in tomllib.loads(p.read_text())}
    assert set(LEVELS) == defining and "town" not in LEVELS
    assert LEVELS[0] == "L0_minimal" and LEVELS[-1] == schema.DEFAULT_LEVEL  # ordered by level number
    for level in LEVELS:
        assert load_pack(level).name == level


def test_names_and_indices_agree():
    assert schema.NUM_ACTIONS == len(schema.ACTIONS) == len(set(schema.ACTIONS))
    assert [schema.ACTION[a] for a in schema.ACTIONS] == list(range(schema.NUM_ACTIONS))
    assert (schema.UP, schema.INTERACT, schema.WAIT) == (0, 4, 5)
    assert schema.NUM_METERS == len(schema.METERS) and set(schema.LETHAL_METERS) <= set(schema.METERS)
    assert schema.EMPTY_CODE == schema.NUM_AFFORDANCES and schema.NUM_CELL_CODES == schema.OUTSIDE_CODE + 1


def test_env_sizes_follow_the_schema():
    env = TownletEnv("L1_full_observability")
    assert env.action_space.n == schema.NUM_ACTIONS
    assert env.obs_layout["meters"].size == schema.NUM_METERS
    assert env.params.open_hours.shape == (schema.NUM_AFFORDANCES + 1, schema.HOURS_PER_DAY)


def test_interaction_columns_are_disjoint_and_fill_the_table():
    p = WorldParams.build(load_pack("L3_temporal_mechanics"), NumpyOps())
    cols = np.zeros(INTERACTION.width, dtype=int)
    cols[INTERACTION.tick_gain] += 1
    cols[INTERACTION.bonus] += 1
    cols[INTERACTION.tick_price] += 1
    cols[INTERACTION.ticks] += 1
    assert (cols == 1).all() and p.interaction.shape[1] == INTERACTION.width
    bed = schema.AFFORDANCES.index("Bed")
    assert p.ticks[bed] == load_pack("L3_temporal_mechanics").affordances[bed].ticks
    assert p.tick_price[bed] == np.float32(load_pack("L3_temporal_mechanics").affordances[bed].tick_price
                                           / schema.DOLLARS_PER_UNIT)
