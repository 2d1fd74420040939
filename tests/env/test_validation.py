"""Invalid input is rejected with a clear message and changes nothing.

Actions: out of range, wrong shape, float dtype, NaN, wrong batch size, on both envs.
World packs: errors name the file and the dotted key (unknown keys are errors, never ignored).
Constructor kwargs: unknown level, bad reward_mode / layout_mode / layout_seed.
"""

from __future__ import annotations

import dataclasses
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

import townlet_env
from townlet_env import PackError, TownletEnv, TownletVectorEnv, load_pack
from townlet_env.pack import pack_path

torch.set_num_threads(1)

WAIT = 5


def _np(x):
    return x.detach().cpu().numpy().copy() if torch.is_tensor(x) else np.array(x, copy=True)


def snapshot(env):
    s = {f.name: _np(getattr(env.state, f.name)) for f in dataclasses.fields(env.state)}
    # cached step inputs (mask, codes under the agents, pending autoresets), where present
    for name in ("_mask", "_here", "_prev_done"):
        if getattr(env, name, None) is not None:
            s[name] = _np(getattr(env, name))
    return s


def assert_same(before, after):
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


# --- actions: single env -----------------------------------------------------------------

SINGLE_BAD = [
    (6, "0..5"),
    (-1, "0..5"),
    (100, "0..5"),
    (np.int64(6), "0..5"),
    (np.int32(-3), "0..5"),
    (np.array([7]), "0..5"),
    ([1, 2], "shape"),
    (np.array([[1]]), "shape"),
    (np.zeros((2, 3), dtype=np.int64), "shape"),
    (1.0, "dtype"),
    (np.float32(2.0), "dtype"),
    (np.array([1.0]), "dtype"),
    (float("nan"), "dtype"),
    (np.array(np.nan), "dtype"),
    (True, "dtype"),
    ("1", "dtype"),
    (None, "dtype"),
]


@pytest.mark.parametrize("action, problem", SINGLE_BAD, ids=[repr(a) for a, _ in SINGLE_BAD])
def test_single_env_rejects_invalid_action(action, problem):
    env = TownletEnv("L3_temporal_mechanics")
    env.reset(seed=0)
    for _ in range(5):
        env.step(3)
    before = snapshot(env)
    with pytest.raises(ValueError, match="action") as e:
        env.step(action)
    assert problem in str(e.value), str(e.value)
    assert_same(before, snapshot(env))
    # the env still steps exactly as an untouched twin does
    twin = TownletEnv("L3_temporal_mechanics")
    twin.reset(seed=0)
    for _ in range(5):
        twin.step(3)
    a, b = env.step(WAIT), twin.step(WAIT)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:4] == b[1:4]


@pytest.mark.parametrize("action", [0, np.int64(4), np.array(5), np.array([2]), np.uint8(1)])
def test_single_env_accepts_integer_forms(action):
    env = TownletEnv("L0_minimal")
    env.reset(seed=0)
    env.step(action)


def test_single_env_rejects_through_gym_make_wrappers():
    env = gym.make("Townlet-v0", level="L0_minimal")
    env.reset(seed=0)
    before = snapshot(env.unwrapped)
    with pytest.raises(ValueError, match="0..5"):
        env.step(9)
    assert_same(before, snapshot(env.unwrapped))


# --- actions: vector env -----------------------------------------------------------------

N = 3
VECTOR_BAD = [
    (np.array([0, 6, 1]), "0..5"),
    (np.array([-1, 0, 1]), "0..5"),
    ([0, 1, 99], "0..5"),
    (np.array([0, 1]), "shape (3,)"),
    (np.array([0, 1, 2, 3]), "shape (3,)"),
    (np.zeros((3, 1), dtype=np.int64), "shape (3,)"),
    (np.array(1), "shape (3,)"),
    (2, "shape (3,)"),
    ([[0, 1], [2]], "could not be read"),
    (np.array([0.0, 1.0, 2.0]), "dtype"),
    (np.array([0, np.nan, 1]), "dtype"),
    (np.array([True, False, True]), "dtype"),
    (np.array(["a", "b", "c"]), "dtype"),
    (torch.tensor([0.0, 1.0, 2.0]), "dtype"),
    (torch.tensor([0.0, float("nan"), 2.0]), "dtype"),
    (torch.tensor([True, False, True]), "dtype"),
    (torch.tensor([0, 1, 6]), "0..5"),
    (torch.tensor([0, -2, 1]), "0..5"),
    (torch.tensor([0, 1]), "shape (3,)"),
    (torch.zeros(3, 1, dtype=torch.int64), "shape (3,)"),
]


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
@pytest.mark.parametrize("actions, problem", VECTOR_BAD, ids=[f"bad{i}" for i in range(len(VECTOR_BAD))])
def test_vector_env_rejects_invalid_actions(actions, problem, mode):
    env = TownletVectorEnv(N, "L3_temporal_mechanics", autoreset_mode=mode)
    env.reset(seed=0)
    env.state.meters[1, 0] = 1e-4  # town 1 dies on the next step ...
    env.step(np.full(N, WAIT))  # ... so a NEXT_STEP autoreset is pending now
    before = snapshot(env)
    with pytest.raises(ValueError, match="action") as e:
        env.step(actions)
    assert problem in str(e.value), str(e.value)
    assert_same(before, snapshot(env))
    # the env goes on exactly as an untouched twin does
    twin = TownletVectorEnv(N, "L3_temporal_mechanics", autoreset_mode=mode)
    twin.reset(seed=0)
    twin.state.meters[1, 0] = 1e-4
    twin.step(np.full(N, WAIT))
    a, b = env.step(np.full(N, WAIT)), twin.step(np.full(N, WAIT))
    for x, y in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(x, y)


def test_vector_error_names_the_bad_towns():
    env = TownletVectorEnv(5, "L0_minimal")
    env.reset(seed=0)
    with pytest.raises(ValueError) as e:
        env.step(np.array([0, 7, 1, -1, 2]))
    msg = str(e.value)
    assert "[7, -1]" in msg and "[1, 3]" in msg


@pytest.mark.parametrize("actions", [
    [0, 1, 2], np.array([3, 4, 5], dtype=np.int8), np.array([0, 1, 2], dtype=np.uint8),
    torch.tensor([5, 5, 5], dtype=torch.int32), (1, 2, 3),
])
def test_vector_env_accepts_integer_forms(actions):
    env = TownletVectorEnv(N, "L0_minimal")
    env.reset(seed=0)
    env.step(actions)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_bad_num_envs(n):
    with pytest.raises(ValueError, match="num_envs"):
        TownletVectorEnv(n)


# --- constructor kwargs ------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda **kw: TownletEnv(**kw),
    lambda **kw: TownletVectorEnv(2, **kw),
    lambda **kw: gym.make("Townlet-v0", **kw),
    lambda **kw: gym.make_vec("Townlet-v0", num_envs=2, **kw),
])
class TestKwargs:
    def test_unknown_level(self, make):
        with pytest.raises(PackError, match="unknown level 'L9_nope'") as e:
            make(level="L9_nope")
        assert "L0_minimal" in str(e.value)  # the message lists the choices
        assert isinstance(e.value, ValueError)

    def test_missing_pack_file(self, make, tmp_path):
        missing = tmp_path / "nope.toml"
        with pytest.raises(PackError, match="not found") as e:
            make(level=str(missing))
        assert str(missing) in str(e.value)

    @pytest.mark.parametrize("mode", ["sparse", "", "Survival", 1])
    def test_bad_reward_mode(self, make, mode):
        with pytest.raises(ValueError, match="reward_mode"):
            make(reward_mode=mode)

    @pytest.mark.parametrize("mode", ["random", "per-town", 0])
    def test_bad_layout_mode(self, make, mode):
        with pytest.raises(ValueError, match="layout_mode"):
            make(layout_mode=mode)

    @pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
    def test_bad_layout_seed(self, make, seed):
        with pytest.raises(ValueError, match="layout_seed"):
            make(layout_seed=seed)

    @pytest.mark.filterwarnings("ignore:.*render_mode")
    def test_bad_render_mode(self, make):
        with pytest.raises(ValueError, match="render_mode"):
            make(render_mode="human3d")

    @pytest.mark.parametrize("kw", [
        dict(reward_mode="survival"), dict(reward_mode="baseline_relative"),
        dict(reward_mode="interoception"), dict(layout_mode="shared"),
        dict(layout_mode="per_town"), dict(layout_mode="per_episode"), dict(layout_seed=7),
    ])
    def test_good_kwargs(self, make, kw):
        env = make(**kw)
        u = env if isinstance(env, TownletVectorEnv) else env.unwrapped
        key, value = next(iter(kw.items()))
        assert getattr(u.pack, key) == value


# --- world packs -------------------------------------------------------------------------

LEVEL = """\
base = "town.toml"

[level]
grid_size = 5
affordances = ["Bed", "HomeMeal", "Bar"]
observability = "full"
window_radius = 2
temporal_mechanics = true
starting_money = 30.0
max_steps = 200
reward_mode = "survival"
layout_mode = "shared"
layout_seed = 0
random_start_hour = false
"""


@pytest.fixture
def packdir(tmp_path):
    shutil.copy(pack_path("L0_minimal").parent / "town.toml", tmp_path / "town.toml")
    return tmp_path


def write_level(packdir, text, name="level.toml"):
    path = packdir / name
    path.write_text(text)
    return path


def edit_level(old, new):
    assert LEVEL.count(old) == 1, old
    return LEVEL.replace(old, new)


def test_good_custom_pack_loads(packdir):
    path = write_level(packdir, LEVEL)
    pack = load_pack(str(path))
    assert pack.name == "level" and pack.grid_size == 5
    assert pack.deployed == ("Bed", "HomeMeal", "Bar")
    env = TownletEnv(str(path))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_custom_pack_overrides_base_table(packdir):
    path = write_level(packdir, LEVEL + '\n[affordances.Bar]\nhours = [20, 30]\n'
                                        '\n[meters]\nenergy = { initial = 0.8, depletion = 0.01 }\n')
    pack = load_pack(str(path))
    bar = pack.affordances[townlet_env.AFFORDANCES.index("Bar")]
    assert bar.hours == (20, 30)
    assert bar.price == 15.0  # the rest of the Bar table still comes from the base
    assert pack.initial["energy"] == 0.8 and pack.depletion["energy"] == 0.01
    assert pack.initial["hygiene"] == 1.0


def test_partial_affordance_override_keeps_the_base_values(packdir):
    """Overriding one key of an affordance's instant/ticked table keeps the base's others.

    (Bug fixed: the reader filled unwritten keys with defaults before merging, so a level
    overriding only Bed's instant effects made the Bed free, and overriding only `ticks`
    made the ticked Bed free too.)
    """
    path = write_level(packdir, LEVEL + "\n[affordances.Bed.instant]\neffects = { energy = 0.6 }\n"
                                        "\n[affordances.Bed.ticked]\nticks = 7\n")
    bed = load_pack(str(path)).affordances[0]
    base = load_pack("L0_minimal").affordances[0]
    assert bed.price == base.price == 5.0
    assert bed.effects == {"energy": 0.6, "health": 0.02}
    assert bed.ticks == 7
    assert (bed.tick_price, bed.per_tick, bed.bonus) == (base.tick_price, base.per_tick, base.bonus)


BAD_LEVELS = {
    # unknown keys
    "unknown level key": (edit_level("max_steps = 200\n", "max_steps = 200\nmax_step = 5\n"),
                          "level.max_step", "unknown key"),
    "unknown top-level table": (LEVEL + "\n[levle]\ngrid_size = 3\n", "levle", "unknown key"),
    "unknown affordance field": (LEVEL + "\n[affordances.Bed]\nopen = [0, 24]\n",
                                 "affordances.Bed.open", "unknown key"),
    "unknown meter spec field": (LEVEL + "\n[meters.energy]\ninitial = 1.0\ndecay = 0.1\n",
                                 "meters.energy.decay", "unknown key"),
    # wrong types
    "grid_size as string": (edit_level("grid_size = 5", 'grid_size = "5"'),
                            "level.grid_size", "expected an integer"),
    "grid_size as float": (edit_level("grid_size = 5", "grid_size = 5.0"),
                           "level.grid_size", "expected an integer"),
    "temporal as int": (edit_level("temporal_mechanics = true", "temporal_mechanics = 1"),
                        "level.temporal_mechanics", "expected true or false"),
    "money as string": (edit_level("starting_money = 30.0", 'starting_money = "lots"'),
                        "level.starting_money", "expected a number"),
    "money as bool": (edit_level("starting_money = 30.0", "starting_money = true"),
                      "level.starting_money", "expected a number"),
    "affordances as int": (edit_level('affordances = ["Bed", "HomeMeal", "Bar"]', "affordances = 3"),
                           "level.affordances", '"all" or a non-empty list'),
    "price as string": (LEVEL + '\n[affordances.Bed.instant]\nprice = "5"\n',
                        "affordances.Bed.instant.price", "expected a number"),
    "meters not a table": ("meters = 3\n" + LEVEL, "meters", "expected a table"),
    # out of range / bad choices
    "grid too small": (edit_level("grid_size = 5", "grid_size = 1"), "level.grid_size", "out of range"),
    "grid too large": (edit_level("grid_size = 5", "grid_size = 65"), "level.grid_size", "out of range"),
    "negative money": (edit_level("starting_money = 30.0", "starting_money = -1.0"),
                       "level.starting_money", "out of range"),
    "zero max_steps": (edit_level("max_steps = 200", "max_steps = 0"), "level.max_steps", "out of range"),
    "negative layout seed": (edit_level("layout_seed = 0", "layout_seed = -4"),
                             "level.layout_seed", "out of range"),
    "initial above 1": (LEVEL + "\n[meters]\nenergy = { initial = 1.5, depletion = 0.005 }\n",
                        "meters.energy.initial", "out of range"),
    "negative depletion": (LEVEL + "\n[meters]\nenergy = { initial = 1.0, depletion = -0.1 }\n",
                           "meters.energy.depletion", "out of range"),
    "effect above 1": (LEVEL + "\n[affordances.Bed.instant]\neffects = { energy = 2.0 }\n",
                       "affordances.Bed.instant.effects.energy", "out of range"),
    "nan threshold": (LEVEL + "\n[cascades]\nthreshold = nan\n", "cascades.threshold", "out of range"),
    "zero ticks": (LEVEL + "\n[affordances.Bed.ticked]\nticks = 0\n", "affordances.Bed.ticked.ticks",
                   "out of range"),
    "bad observability": (edit_level('observability = "full"', 'observability = "foggy"'),
                          "level.observability", "not one of"),
    "bad reward mode": (edit_level('reward_mode = "survival"', 'reward_mode = "fun"'),
                        "level.reward_mode", "not one of"),
    "bad layout mode": (edit_level('layout_mode = "shared"', 'layout_mode = "chaos"'),
                        "level.layout_mode", "not one of"),
    "too many affordances": (edit_level("grid_size = 5", "grid_size = 2").replace(
        '["Bed", "HomeMeal", "Bar"]', '["Bed", "HomeMeal", "Bar", "Job", "Park"]'),
        "level.affordances", "more affordances than grid cells"),
    # unknown meter names
    "unknown meter in action cost": (LEVEL + "\n[actions]\nmove = { energy = 0.005, stamina = 0.1 }\n"
                                             "wait = { energy = 0.001 }\n",
                                     "actions.move.stamina", "unknown key"),
    "unknown meter table": (LEVEL + "\n[meters]\nstamina = { initial = 1.0, depletion = 0.1 }\n",
                            "meters.stamina", "unknown key"),
    "unknown meter in effects": (LEVEL + "\n[affordances.Bed.instant]\neffects = { sleepiness = 0.5 }\n",
                                 "affordances.Bed.instant.effects.sleepiness", "unknown key"),
    "unknown cascade source": (LEVEL + '\n[[cascades.groups]]\nname = "x"\nedges = [{ source = "stamina",'
                                       ' target = "health", strength = 0.1 }]\n',
                               "cascades.groups[0].edges[0].source", "'stamina' is not one of"),
    # unknown affordance names
    "unknown deployed affordance": (edit_level('["Bed", "HomeMeal", "Bar"]', '["Bed", "Casino"]'),
                                    "level.affordances", "unknown affordance 'Casino'"),
    "unknown affordance table": (LEVEL + "\n[affordances.Casino]\nhours = [0, 24]\n",
                                 "affordances.Casino", "unknown key"),
    "duplicate deployed affordance": (edit_level('["Bed", "HomeMeal", "Bar"]', '["Bed", "Bed"]'),
                                      "level.affordances", "listed twice"),
    # opening hours
    "hours close before open": (LEVEL + "\n[affordances.Bar]\nhours = [18, 10]\n",
                                "affordances.Bar.hours", "not a valid [open, close) window"),
    "hours empty window": (LEVEL + "\n[affordances.Bar]\nhours = [9, 9]\n",
                           "affordances.Bar.hours", "not a valid"),
    "hours longer than a day": (LEVEL + "\n[affordances.Bar]\nhours = [18, 43]\n",
                                "affordances.Bar.hours", "not a valid"),
    "open hour 24": (LEVEL + "\n[affordances.Bar]\nhours = [24, 30]\n",
                     "affordances.Bar.hours[0]", "out of range"),
    "close hour 48": (LEVEL + "\n[affordances.Bar]\nhours = [18, 48]\n",
                      "affordances.Bar.hours[1]", "out of range"),
    "hours one number": (LEVEL + "\n[affordances.Bar]\nhours = [18]\n",
                         "affordances.Bar.hours", "expected [open, close]"),
    "hours as floats": (LEVEL + "\n[affordances.Bar]\nhours = [18.0, 28.0]\n",
                        "affordances.Bar.hours[0]", "expected an integer"),
    # WAIT must be cheaper than a move
    "wait energy equals move": (LEVEL + "\n[actions]\nwait = { energy = 0.005 }\n",
                                "actions.wait.energy", "WAIT must cost strictly less energy"),
    "wait energy above move": (LEVEL + "\n[actions]\nwait = { energy = 0.01 }\n",
                               "actions.wait.energy", "WAIT must cost strictly less energy"),
    "wait hygiene above move": (LEVEL + "\n[actions]\nwait = { energy = 0.001, hygiene = 0.01 }\n",
                                "actions.wait", "WAIT must not cost more than a move"),
    # structure
    "missing level key": (edit_level("max_steps = 200\n", ""), "level.max_steps", "missing"),
    "base not a string": (edit_level('base = "town.toml"', "base = 3"), "base", "expected a file name"),
}


@pytest.mark.parametrize("case", list(BAD_LEVELS))
def test_bad_level_file(packdir, case):
    text, key, problem = BAD_LEVELS[case]
    path = write_level(packdir, text)
    with pytest.raises(PackError) as e:
        load_pack(str(path))
    msg = str(e.value)
    assert str(path) in msg, msg
    assert f"'{key}'" in msg, msg
    assert problem in msg, msg
    # and the env constructors surface the same error
    with pytest.raises(PackError, match="key"):
        TownletEnv(str(path))
    with pytest.raises(PackError, match="key"):
        gym.make_vec("Townlet-v0", num_envs=2, level=str(path))


BAD_BASES = {
    "unknown key in base": ("move = {", "speed = 1\nmove = {", "actions.speed", "unknown key"),
    "wrong type in base": ("threshold = 0.30", 'threshold = "low"', "cascades.threshold",
                           "expected a number"),
    "bad hours in base": ("hours = [18, 28]", "hours = [28, 18]", "affordances.Bar.hours[0]",
                          "out of range"),
    "unknown meter in base": ("mood = { initial = 1.0, depletion = 0.001 }",
                              "moood = { initial = 1.0, depletion = 0.001 }", "meters.moood",
                              "unknown key"),
    "unknown interoception weight": ("center = 0.5", "centre = 0.5", "rewards.interoception.centre",
                                     "unknown key"),
}


@pytest.mark.parametrize("case", list(BAD_BASES))
def test_bad_base_file_is_named(packdir, case):
    old, new, key, problem = BAD_BASES[case]
    base = packdir / "town.toml"
    text = base.read_text()
    assert text.count(old) == 1, old
    base.write_text(text.replace(old, new))
    path = write_level(packdir, LEVEL)
    with pytest.raises(PackError) as e:
        load_pack(str(path))
    msg = str(e.value)
    assert str(base) in msg and f"'{key}'" in msg and problem in msg, msg


def test_missing_base_file_is_named(packdir):
    path = write_level(packdir, edit_level('base = "town.toml"', 'base = "gone.toml"'))
    with pytest.raises(PackError, match="not found") as e:
        load_pack(str(path))
    assert str(packdir / "gone.toml") in str(e.value)


def test_base_resolved_beside_the_level_file_then_among_shipped_packs(packdir):
    """`base` is looked up in the level file's folder first (not the working directory),
    then among the shipped packs."""
    sub = packdir / "levels"
    sub.mkdir()
    path = write_level(sub, LEVEL.replace('base = "town.toml"', 'base = "my_town.toml"'))
    with pytest.raises(PackError, match="not found"):
        load_pack(str(path))
    shutil.copy(packdir / "town.toml", sub / "my_town.toml")
    assert load_pack(str(path)).grid_size == 5
    shipped = write_level(packdir / "levels", LEVEL)  # base = "town.toml" beside it: none
    (sub / "town.toml").unlink(missing_ok=True)
    assert load_pack(str(shipped)).grid_size == 5


def test_reset_mask_resets_only_masked_towns():
    env = townlet_env.TownletVectorEnv(3, "L2_partial_observability")
    env.reset(seed=4)
    for _ in range(5):
        env.step(np.full(3, 5))
    obs, info = env.reset(options={"reset_mask": np.array([True, False, True])})
    assert info["episode_step"].tolist() == [0, 5, 0]
    assert env.state.episode.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.array([1, 0, 1])})


def test_invalid_toml_is_named(packdir):
    path = write_level(packdir, LEVEL + "\n[level\n")
    with pytest.raises(PackError, match="not valid TOML") as e:
        load_pack(str(path))
    assert str(path) in str(e.value)


def test_shipped_packs_all_valid():
    for level in townlet_env.LEVELS:
        pack = load_pack(level)
        assert pack.name == level
        assert pack.wait_cost["energy"] < pack.move_cost["energy"]
