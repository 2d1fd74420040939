"""Gymnasium parity beyond the step results (issue 13): numpy scalars in every info value,
the `autoreset_mode` attribute, AutoresetMode.DISABLED through `reset_mask`, the `_key`
masks of vector info, and `call` / `get_attr` / `set_attr`. The native vector env is
compared key by key with Gymnasium's own SyncVectorEnv over single envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from townlet_env import TownletVectorEnv

torch.set_num_threads(1)
LEVEL = "L0_5_dual_resource"  # short episodes under random play: many autoresets


def test_single_env_info_values_are_numpy():
    env = gym.make("Townlet-v0", level=LEVEL)
    _, info = env.reset(seed=0)
    infos = [info]
    for _ in range(5):
        infos.append(env.step(env.action_space.sample())[-1])
    for info in infos:
        for key, value in info.items():
            assert isinstance(value, (np.ndarray, np.generic)), (key, type(value))
    assert infos[-1]["episode_step"].dtype == np.int64 and infos[-1]["action_masked"].dtype == np.bool_
    assert infos[-1]["action_masked"].shape == ()


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_autoreset_mode_attribute_and_metadata(mode):
    envs = gym.make_vec("Townlet-v0", num_envs=2, autoreset_mode=mode.value)
    assert envs.autoreset_mode is mode and envs.metadata["autoreset_mode"] is mode


def _assert_same_info(native: dict, sync: dict, n: int, where: str) -> None:
    """Every key SyncVectorEnv reports is in the native info with the same `_key` mask,
    dtype and (where present) value; native-only keys report no town present."""
    for key, value in sync.items():
        if key.startswith("_"):
            continue
        assert key in native, f"{where}: {key} missing"
        present = sync[f"_{key}"]
        np.testing.assert_array_equal(native[f"_{key}"], present, err_msg=f"{where}: _{key}")
        if isinstance(value, dict):
            _assert_same_info(native[key], value, n, f"{where}/{key}")
            continue
        if value.dtype == object:  # SyncVectorEnv's final_obs: None or one observation per env
            value = np.stack(list(value[present])) if present.any() else native[key][present]
            assert native[key].dtype == value.dtype, f"{where}: {key}"
            np.testing.assert_allclose(native[key][present], value, atol=1e-6, err_msg=f"{where}: {key}")
            continue
        assert native[key].dtype == value.dtype, f"{where}: {key} dtype {native[key].dtype} vs {value.dtype}"
        np.testing.assert_allclose(native[key][present], value[present], atol=1e-6, err_msg=f"{where}: {key}")
    for key in native.keys() - sync.keys():
        if not key.startswith("_"):
            assert not np.asarray(native[f"_{key}"]).any(), f"{where}: {key} present only natively"


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_vector_info_matches_sync_vector_env_key_by_key(mode):
    n = 4
    native = gym.make_vec("Townlet-v0", num_envs=n, autoreset_mode=mode, level=LEVEL)
    sync = gym.make_vec("Townlet-v0", num_envs=n, vectorization_mode="sync", level=LEVEL,
                        vector_kwargs={"autoreset_mode": mode})
    on, infon = native.reset(seed=3)
    os_, infos = sync.reset(seed=3)
    _assert_same_info(infon, infos, n, "reset")
    rng = np.random.default_rng(0)
    ended = partial_resets = 0
    for t in range(400):
        actions = rng.integers(0, 6, n)
        on, rn, ten, trn, infon = native.step(actions)
        os_, rs, tes, trs, infos = sync.step(actions)
        np.testing.assert_allclose(on, os_, atol=1e-6)
        np.testing.assert_array_equal(ten | trn, tes | trs)
        _assert_same_info(infon, infos, n, f"step {t}")
        done = ten | trn
        ended += int(done.sum())
        if mode is AutoresetMode.DISABLED and done.any():
            on, infon = native.reset(options={"reset_mask": done})
            os_, infos = sync.reset(options={"reset_mask": done.copy()})
            np.testing.assert_allclose(on, os_, atol=1e-6)
            _assert_same_info(infon, infos, n, f"partial reset {t}")
            partial_resets += 1
    assert ended >= 4 and (mode is not AutoresetMode.DISABLED or partial_resets >= 2)


def test_disabled_refuses_to_step_an_ended_town_and_seeded_partial_resets():
    envs = TownletVectorEnv(2, "L0_minimal", autoreset_mode="Disabled")
    envs.reset(seed=0)
    done = np.zeros(2, bool)
    while not done.any():
        *_, te, tr, _ = envs.step(np.full(2, 5))
        done = te | tr
    with pytest.raises(RuntimeError, match="reset_mask"):
        envs.step(np.full(2, 5))
    with pytest.raises(ValueError, match="seed"):
        envs.reset(seed=1, options={"reset_mask": done})
    _, info = envs.reset(options={"reset_mask": done})
    assert info["episode_step"][done].tolist() == [0] * int(done.sum())
    envs.step(np.full(2, 5))  # every ended town was reset: stepping is allowed again


def test_call_get_attr_set_attr_shaped_like_sync_vector_env():
    n = 3
    native = TownletVectorEnv(n, LEVEL, render_mode="ansi")
    sync = gym.make_vec("Townlet-v0", num_envs=n, vectorization_mode="sync", level=LEVEL, render_mode="ansi")
    native.reset(seed=1)
    sync.reset(seed=1)
    masks = native.call("action_masks")
    assert len(masks) == n
    np.testing.assert_array_equal(np.stack(masks), np.stack(sync.call("action_masks")))
    assert native.get_attr("render_mode") == sync.get_attr("render_mode") == ("ansi",) * n
    assert native.call("obs_layout")[0] is native.obs_layout
    native.set_attr("render_mode", None)
    assert native.render_mode is None
    native.set_attr("render_mode", ["rgb_array"] * n)
    assert native.render_mode == "rgb_array"
    with pytest.raises(ValueError, match="share"):
        native.set_attr("render_mode", ["ansi", None, None])
    with pytest.raises(ValueError, match="2 values for 3 towns"):
        native.set_attr("render_mode", ["ansi", "ansi"])
    with pytest.raises(AttributeError, match="no public attribute"):
        native.call("no_such_method")
    with pytest.raises(AttributeError, match="no public attribute"):
        native.get_attr("_mask")


def test_namespaced_id_makes_the_env_in_a_fresh_process():
    """`"townlet_env:Townlet-v0"` imports the package first, so a spawned worker that never
    imported townlet_env can still make the env (docs/ecosystem.md)."""
    import subprocess
    import sys

    code = ("import gymnasium as gym; e = gym.make('townlet_env:Townlet-v0', level='L0_minimal'); "
            "print(e.reset(seed=0)[0].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
