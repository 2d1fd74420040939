"""The compiled CPU kernels (townlet_env.fused): where they apply, and that the compiled
code computes what its Python source says. That they match the torch step bit for bit
is tests/env/test_cpu_shortcuts.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from townlet_env import TownletVectorEnv, fused


def _played(level: str, n: int = 16, steps: int = 40, **options) -> TownletVectorEnv:
    env = TownletVectorEnv(n, level, torch_output=True, **options)
    env.set_difficulty(torch.linspace(1.0, 4.0, n))  # low meters and deaths early
    env.reset(seed=2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        env.step(torch.randint(0, 6, (n,), generator=gen))
    return env


def _assert_same(compiled, interpreted):
    for a, b in zip(compiled, interpreted):
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("options", [dict(), dict(layout_mode="per_episode", layout_pool="train", start_spread=0.7)])
@pytest.mark.parametrize("level", ["L2_partial_observability", "L3_temporal_mechanics"])
def test_compiled_kernels_compute_what_their_python_says(level, options, monkeypatch):
    env = _played(level, **options)
    t, s, host = env.params.fused, env.state, env.ops.to_numpy
    action = np.random.default_rng(0).integers(0, 6, env.num_envs)
    mask, here = host(env._mask), host(env._here)
    state = [host(x) for x in (s.cell, s.meters, s.hour, s.progress, s.current, s.steps)]
    which = np.arange(env.num_envs) % 3 == 0
    reset_in = [host(x) for x in (s.cell, s.meters, s.hour, s.progress, s.current, s.steps, s.episode, s.grid,
                                  s.town_seed)]
    observe_in = [host(x) for x in (s.cell, s.meters, s.hour, s.progress, s.current, s.grid)]

    def run_all():
        return (t.step(action, mask, here, *state, host(s.multiplier), 30), t.reset(which, *reset_in),
                t.observe(*observe_in))

    compiled = run_all()
    for name in ("_step_towns", "_reset_towns", "_observe_towns", "_hash", "_uniform"):
        monkeypatch.setattr(fused, name, getattr(fused, name).py_func)
    interpreted = run_all()
    for a, b in zip(compiled, interpreted):
        _assert_same(a, b)
    assert compiled[1][6].sum() == reset_in[6].sum() + which.sum()  # the resets happened


def test_the_single_env_never_loads_numba():
    code = ("import sys, gymnasium as gym, townlet_env; env = gym.make('Townlet-v0'); env.reset(seed=0); "
            "env.step(5); print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_one_hot_grids_of_towns_without_a_shared_layout_observe_through_torch():
    env = TownletVectorEnv(4, "L3_temporal_mechanics", one_hot=True, layout_mode="per_episode")
    assert env.params.fused is not None and not env.params.fused.observes


def test_the_gpu_branch_never_enters_the_kernels(monkeypatch):
    env = TownletVectorEnv(8, "L3_temporal_mechanics", torch_output=True, layout_mode="per_episode")
    env.ops.read_flags = False

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel ran on the GPU branch")

    for name in ("step", "reset", "observe"):
        monkeypatch.setattr(fused.FusedTables, name, refuse)
    env.reset(seed=0)
    for _ in range(5):
        env.step(torch.zeros(8, dtype=torch.int64))
