"""Checkpoints: round trip, migration, refusal of newer/foreign/garbage/malicious files, atomic writes, RNG."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from townlet_agents import checkpoint as ckpt
from townlet_agents.checkpoint import (
    CURRENT_VERSION,
    MIGRATIONS,
    CheckpointError,
    load_checkpoint,
    migrate_v1_to_v2,
    migrate_v2_to_v3,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from townlet_agents.curriculum import Curriculum
from townlet_agents.exploration import IntrinsicAnnealer
from townlet_env.layout import ObsLayout


def _payload() -> dict:
    torch.manual_seed(0)
    online = torch.nn.Linear(4, 6)
    target = torch.nn.Linear(4, 6)
    opt = torch.optim.Adam(online.parameters(), lr=1e-3)
    online(torch.randn(2, 4)).sum().backward()
    opt.step()
    layout = ObsLayout.build(cells=25)
    curriculum = Curriculum(num_agents=3, max_steps=100, window=4, min_episodes=2)
    curriculum.record_episodes(torch.tensor([True, False, True]), torch.tensor([50, 3, 100]))
    return {
        "online": online.state_dict(),
        "target": target.state_dict(),
        "optimizer": opt.state_dict(),
        "counters": {"env_steps": 12_345, "updates": 67, "episodes": 8},
        "rng": rng_state(),
        "exploration": {"annealer": IntrinsicAnnealer(1.0, window=4).state_dict(), "epsilon_step": 12_345},
        "curriculum": curriculum.state_dict(),
        "layout": {"cells": 25, "parts": [(p.name, p.start, p.shape) for p in layout.parts]},
        "config": {"agent": {"lr": 1e-3, "gamma": 0.99}, "env": {"num_envs": 3}, "seed": 0},
        "world_identity": {"fingerprint": "ab" * 32, "pack": "L0_minimal", "summary": {"Job.ticks": 4}},
    }


def _assert_same(a, b, where="payload"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_round_trip_equals_and_adds_version(tmp_path):
    payload = _payload()
    path = save_checkpoint(tmp_path / "run" / "ckpt.pt", payload)
    loaded = load_checkpoint(path)
    assert loaded["version"] == CURRENT_VERSION == 3
    _assert_same({**payload, "version": 3}, loaded)
    assert "version" not in payload  # the caller's dict is not modified
    # Optional replay is allowed and survives too.
    save_checkpoint(path, {**payload, "replay": {"obs": torch.arange(6.0).reshape(2, 3), "ptr": 1}})
    assert torch.equal(load_checkpoint(path)["replay"]["obs"], torch.arange(6.0).reshape(2, 3))


def test_incomplete_or_unloadable_payload_is_refused_before_writing(tmp_path):
    path = tmp_path / "ckpt.pt"
    payload = _payload()
    del payload["target"]
    with pytest.raises(CheckpointError, match=r"missing keys \['target'\]"):
        save_checkpoint(path, payload)
    payload = {**_payload(), "layout": ObsLayout.build(cells=25)}
    with pytest.raises(CheckpointError, match=r"\['layout'\] is a townlet_env.layout.ObsLayout"):
        save_checkpoint(path, payload)
    payload = _payload()
    payload["counters"]["env_steps"] = np.int64(5)
    with pytest.raises(CheckpointError, match=r"\['counters'\]\['env_steps'\] is a numpy"):
        save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match="unknown keys"):
        save_checkpoint(path, {**_payload(), "netwrok": {}})
    assert list(tmp_path.iterdir()) == []


def test_version_1_is_migrated(tmp_path):
    payload = _payload()
    legacy = {k: v for k, v in payload.items() if k not in ("online", "world_identity")}
    legacy["network"] = payload["online"]
    path = tmp_path / "old.pt"
    torch.save(legacy, path)  # what the old trainer wrote: no version key
    loaded = load_checkpoint(path)
    assert loaded["version"] == 3 and "network" not in loaded
    _assert_same({**payload, "version": 3, "world_identity": None}, loaded)
    assert MIGRATIONS[1] is migrate_v1_to_v2


def test_version_2_is_migrated_with_an_unknown_world(tmp_path):
    """Version 2 predates world fingerprints: the world it was trained on is unknown (None),
    which evaluate and resume accept with a warning (tests/agents/test_reliability.py)."""
    payload = {k: v for k, v in _payload().items() if k != "world_identity"}
    path = tmp_path / "v2.pt"
    torch.save({**payload, "version": 2}, path)
    loaded = load_checkpoint(path)
    assert loaded["version"] == 3 and loaded["world_identity"] is None
    _assert_same({**payload, "version": 3, "world_identity": None}, loaded)
    assert MIGRATIONS[2] is migrate_v2_to_v3


def test_newer_version_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({**_payload(), "version": 4, "something_new": 1}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "version 4" in message and "newer Townlet" in message and "versions 1 to 3" in message


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty"),
        (os.urandom(4096), "cannot read checkpoint"),
        (b"PK\x03\x04" + b"\x00" * 100, "cannot read checkpoint"),
    ],
    ids=["empty", "random-bytes", "broken-zip"],
)
def test_garbage_files_are_refused(tmp_path, content, problem):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=problem) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", _payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


def test_missing_file_and_foreign_dicts_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "resnet.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a Townlet checkpoint.*missing keys"):
        load_checkpoint(foreign)
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), tensor_file)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tensor_file)
    bad_version = tmp_path / "v.pt"
    torch.save({**_payload(), "version": "2"}, bad_version)
    with pytest.raises(CheckpointError, match="must be an integer"):
        load_checkpoint(bad_version)


class _CreatesMarker:
    """Unpickling this (with a code-executing loader) creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class _PlainObject:
    x: int = 1


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({**_payload(), "version": 2, "config": _CreatesMarker(marker)}, path)
    with pytest.raises(CheckpointError, match="refused without running it"):
        load_checkpoint(path)
    assert not marker.exists()
    # Control: an unsafe loader really would have run it, so the check above means something.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pickled_class_instance_is_refused(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({**_payload(), "version": 2, "counters": _PlainObject()}, path)
    with pytest.raises(CheckpointError, match="_PlainObject"):
        load_checkpoint(path)


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt.pt", _payload())
    before = path.read_bytes()

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash_mid_write)
    changed = _payload()
    changed["counters"]["updates"] = 999
    with pytest.raises(CheckpointError, match=r"ckpt.pt: cannot write checkpoint: write failed \(disk full\)"):
        save_checkpoint(path, changed)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    assert load_checkpoint(path)["counters"]["updates"] == 67


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leave a cached gaussian in Python's state
    np.random.standard_normal()  # and in NumPy's
    payload = {**_payload(), "rng": rng_state()}
    path = save_checkpoint(tmp_path / "ckpt.pt", payload)
    first = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.standard_normal(), torch.rand(3))
    # Disturb every generator, then restore from the file (tensors may come back on any device).
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(path)["rng"])
    again = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.standard_normal(), torch.rand(3))
    assert first[:4] == again[:4]
    assert torch.equal(first[4], again[4])


def test_set_rng_state_rejects_incomplete_state():
    with pytest.raises(CheckpointError, match="missing"):
        set_rng_state({"torch": torch.get_rng_state()})
