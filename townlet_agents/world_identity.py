"""Which world a checkpoint was trained on, and what changed since.

A checkpoint stores `world_identity`: a readable summary of the world (every number of
the world pack as a flat `dotted.key -> value` map, plus the observation layout) and a
SHA-256 fingerprint of that summary. Evaluating or resuming compares it with the world
about to be used and refuses a different one, naming what differs (`Job.ticks: 4 -> 5`),
unless the user passes `allow_world_change=true` (deliberate fine-tuning).

Left out on purpose: the pack's file name (a renamed copy with the same numbers is the
same world) and the choices the env constructor and the CLIs override on their own keys,
which say how the world is run and measured, not how it behaves: `reward_mode`,
`layout_mode`, `layout_seed`, `layout_pool`, the step limit `max_steps` (evaluation
runs lives past it on purpose with `env.max_steps`) and training's lowered starts
`start_spread`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from typing import Any

from .checkpoint import CheckpointError

#: WorldPack fields that are how a world is run, not what it is.
NOT_WORLD = ("name", "reward_mode", "layout_mode", "layout_seed", "layout_pool", "max_steps", "start_spread")
#: How many differences an error message lists before "and N more".
SHOWN = 8


def world_summary(pack, layout: dict) -> dict[str, Any]:
    """Flat `key -> plain value` map of every world number and the observation layout."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(pack):
        if f.name in NOT_WORLD:
            continue
        value = getattr(pack, f.name)
        if f.name == "affordances":  # keyed by name, as users think of them: Job.ticks
            for aff in value:
                _flatten(out, aff.name, {k: v for k, v in dataclasses.asdict(aff).items() if k != "name"})
        else:
            _flatten(out, f.name, value)
    parts = {part[0]: dict(zip(("start", "shape", "categories"), part[1:])) for part in layout.get("parts", [])}
    _flatten(out, "observation", {**{k: v for k, v in layout.items() if k != "parts"}, **parts})
    return out


def _flatten(out: dict, key: str, value: Any) -> None:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(out, f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) or dataclasses.is_dataclass(v)
                                                   for v in value):
        for i, v in enumerate(value):
            _flatten(out, f"{key}[{i}]", v)
    elif isinstance(value, (list, tuple)):
        out[key] = list(value)
    else:
        out[key] = value


def fingerprint(summary: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()


def world_identity(pack, layout: dict) -> dict[str, Any]:
    """What a checkpoint stores under `world_identity`."""
    summary = world_summary(pack, layout)
    return {"fingerprint": fingerprint(summary), "pack": pack.name, "summary": summary}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: saved -> current` for every key whose value differs (or exists on one side)."""
    missing = object()
    lines = []
    for key in sorted(saved.keys() | current.keys()):
        a, b = saved.get(key, missing), current.get(key, missing)
        if a != b:
            lines.append(f"{key}: {'(absent)' if a is missing else _show(a)} -> {'(absent)' if b is missing else _show(b)}")
    return lines


def _show(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else repr(v)


def check_world(path, saved: dict[str, Any] | None, current: dict[str, Any], allow_change: bool,
                what: str) -> list[str]:
    """Compare a checkpoint's world with the one about to be used (`what`, e.g. "resume").

    Refuses a different world with a CheckpointError naming the differences, unless
    `allow_change`; then, and for a checkpoint from before fingerprints (`saved` None),
    prints a warning instead. Returns the differences."""
    if saved is None:
        print(f"warning: {path}: written before checkpoints recorded their world; cannot check that it was "
              f"trained on the world used for this {what} (observation layout checked only)", file=sys.stderr)
        return []
    if saved["fingerprint"] == current["fingerprint"]:
        return []
    diff = differences(saved["summary"], current["summary"]) or \
        [f"fingerprint: {saved['fingerprint'][:12]} -> {current['fingerprint'][:12]}"]
    shown = ", ".join(diff[:SHOWN]) + (f", and {len(diff) - SHOWN} more" if len(diff) > SHOWN else "")
    if not allow_change:
        raise CheckpointError(
            f"{path}: trained on a different world than this {what} uses ({len(diff)} difference"
            f"{'s' if len(diff) != 1 else ''}: {shown}); pass allow_world_change=true to {what} on it anyway")
    print(f"warning: {path}: world changed since training (allow_world_change=true): {shown}", file=sys.stderr)
    return diff
