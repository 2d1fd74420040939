"""Rendering: the text grid and the RGB picture of one town, single and vector envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import townlet_env  # noqa: F401  (registers Townlet-v0)
from townlet_env import AFFORDANCES, METERS, TownletEnv, TownletVectorEnv
from townlet_env.schema import EMPTY_CODE as EMPTY
from townlet_env.render import ANSI_LABELS, TILE, render_ansi, render_rgb

LEVELS = ["L1_full_observability", "L2_partial_observability", "L3_temporal_mechanics"]


def _np(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _make(kind: str, level: str, mode: str):
    if kind == "single":
        env = TownletEnv(level, render_mode=mode)
    else:
        env = TownletVectorEnv(3, level, render_mode=mode)
    env.reset(seed=7)
    return env


def _town_codes(env, town: int = 0) -> np.ndarray:
    """[cells] codes of a town's layout, flat y * G + x."""
    return _np(env.state.grid[town])[_np(env.params.cell_to_padded)].astype(np.int64)


def _floor_cells(env, town: int = 0) -> np.ndarray:
    return np.flatnonzero(_town_codes(env, town) == EMPTY)


def _place(env, cell: int, town: int = 0) -> None:
    env.state.cell[town] = cell
    env._observe()


@pytest.mark.parametrize("kind", ["single", "vector"])
@pytest.mark.parametrize("level", LEVELS)
def test_ansi_shows_agent_labels_meters_money(kind, level):
    env = _make(kind, level, "ansi")
    text = env.render()
    assert isinstance(text, str)
    assert text.count("@") == 2  # once in the grid, once in the legend ("@=agent")
    for name in AFFORDANCES:  # all 14 deployed at these levels: every label and its legend entry
        assert f"={name}" in text
    for name in METERS:
        assert name in text
    assert "$50.00" in text  # starting money of L1..L3
    assert "step 0 / 500" in text
    assert ("hour 00:00" in text) == (level == "L3_temporal_mechanics")


@pytest.mark.parametrize("kind", ["single", "vector"])
def test_ansi_grid_puts_agent_and_labels_where_they_are(kind):
    env = _make(kind, "L1_full_observability", "ansi")
    g = env.params.grid_size
    codes = _town_codes(env)
    cell = int(_floor_cells(env)[0])
    _place(env, cell)
    rows = env.render().splitlines()[1 : 1 + g]
    assert all(len(r) == 3 * g for r in rows)
    y, x = divmod(cell, g)
    assert rows[y][3 * x : 3 * x + 3] == " @ "
    for c, code in enumerate(codes):
        yy, xx = divmod(c, g)
        if code != EMPTY:
            assert rows[yy][3 * xx + 1 : 3 * xx + 3] == ANSI_LABELS[code]
        elif c != cell:
            assert rows[yy][3 * xx : 3 * xx + 3] == " . "
    # Standing on an affordance: '@' in front of its label.
    bed = AFFORDANCES.index("Bed")
    bed_cell = int(np.flatnonzero(codes == bed)[0])
    _place(env, bed_cell)
    rows = env.render().splitlines()[1 : 1 + g]
    y, x = divmod(bed_cell, g)
    assert rows[y][3 * x : 3 * x + 3] == "@" + ANSI_LABELS[bed]


def test_ansi_temporal_shows_clock_closed_affordances_and_progress():
    env = _make("single", "L3_temporal_mechanics", "ansi")
    text = env.render()
    # Hour 0: Job (8-18) is closed (lowercase), Bed (0-24) open.
    assert " " + ANSI_LABELS[AFFORDANCES.index("Job")].lower() in text
    assert " " + ANSI_LABELS[AFFORDANCES.index("Bed")] in text
    assert "interaction none" in text
    codes = _town_codes(env)
    _place(env, int(np.flatnonzero(codes == AFFORDANCES.index("Bed"))[0]))
    env.step(4)
    env.step(4)
    text = env.render()
    assert "interaction Bed 2/5" in text
    assert "hour 02:00" in text
    assert "$48.00" in text  # two Bed ticks at $1


@pytest.mark.parametrize("kind", ["single", "vector"])
@pytest.mark.parametrize("level", LEVELS)
def test_rgb_is_a_readable_picture_that_follows_the_agent(kind, level):
    env = _make(kind, level, "rgb_array")
    floor = _floor_cells(env)
    _place(env, int(floor[0]))
    img = env.render()
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3
    g = env.params.grid_size
    assert img.shape[0] >= g * TILE and img.shape[1] > g * TILE
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # not blank: tiles, text, bars
    # Only the agent's position changes: the picture changes, including at the new tile.
    _place(env, int(floor[-1]))
    moved = env.render()
    assert moved.shape == img.shape
    assert not np.array_equal(img, moved)
    y, x = divmod(int(floor[-1]), g)
    assert not np.array_equal(img[y * TILE : (y + 1) * TILE + 16, x * TILE : (x + 1) * TILE + 16],
                              moved[y * TILE : (y + 1) * TILE + 16, x * TILE : (x + 1) * TILE + 16])


@pytest.mark.parametrize("kind", ["single", "vector"])
def test_rgb_changes_after_a_real_move(kind):
    env = _make(kind, "L2_partial_observability", "rgb_array")
    before = env.render()
    mask = _np(env.action_masks()).reshape(-1, 6)[0]
    move = int(np.flatnonzero(mask[:4])[0])
    env.step(move if kind == "single" else np.full(env.num_envs, move))
    after = env.render()
    assert after.shape == before.shape and not np.array_equal(before, after)


def test_rgb_panel_shows_meters_change():
    """Same position, different energy: the picture differs (the meter bar)."""
    env = _make("single", "L1_full_observability", "rgb_array")
    a = env.render()
    env.state.meters[0, METERS.index("energy")] = 0.1
    b = env.render()
    assert not np.array_equal(a, b)


def test_render_reads_only_the_requested_town_of_a_torch_state():
    env = TownletVectorEnv(4, "L2_partial_observability", torch_output=True)
    env.reset(seed=0)
    assert torch.is_tensor(env.state.cell)
    floor = _floor_cells(env)
    env.state.cell[:] = int(floor[0])
    env.state.cell[2] = int(floor[-1])
    env.state.meters[2, METERS.index("money")] = 0.125
    t0, t2 = render_ansi(env.params, env.state, 0), render_ansi(env.params, env.state, 2)
    assert "town 2" in t2 and "$12.50" in t2 and "$12.50" not in t0
    assert t0.split("\n", 1)[1] == render_ansi(env.params, env.state, 1).split("\n", 1)[1]
    r0, r2 = render_rgb(env.params, env.state, 0), render_rgb(env.params, env.state, 2)
    assert r0.shape == r2.shape and not np.array_equal(r0, r2)
    with pytest.raises(ValueError, match="town"):
        render_ansi(env.params, env.state, 4)


def test_single_and_vector_town_render_the_same():
    single = TownletEnv("L3_temporal_mechanics", render_mode="ansi")
    single.reset(seed=11)
    vec = TownletVectorEnv(2, "L3_temporal_mechanics", render_mode="ansi")
    vec.reset(seed=11)
    assert single.render() == vec.render()
    np.testing.assert_array_equal(render_rgb(single.params, single.state, 0),
                                  render_rgb(vec.params, vec.state, 0))


def test_gym_make_render_modes():
    env = gym.make("Townlet-v0", level="L0_minimal", render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().dtype == np.uint8
    env = gym.make("Townlet-v0", level="L0_minimal", render_mode="ansi")
    env.reset(seed=0)
    assert "Bed" in env.render()
    envs = gym.make_vec("Townlet-v0", num_envs=2, level="L0_5_dual_resource", render_mode="rgb_array")
    envs.reset(seed=0)
    assert envs.render().shape[2] == 3
    plain = TownletEnv("L0_minimal")
    plain.reset(seed=0)
    assert plain.render() is None
    with pytest.raises(RuntimeError):
        TownletEnv("L0_minimal", render_mode="ansi").render()
