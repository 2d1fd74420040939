"""World packs: TOML files holding every number of a level, loaded and validated.

A level pack names a `base` (the shared town tuning) and a `[level]` table; it may also
override any base table. Each file is checked on its own so that an error names the file
and the dotted key at fault; the merged result is then checked for completeness.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .schema import (
    AFFORDANCES, HOURS_PER_DAY, LAYOUT_MODES, LAYOUT_POOLS, LEVELS, METERS, OBSERVABILITY, PACKS_DIR, REWARD_MODES,
)



class PackError(ValueError):
    """A world pack is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Affordance:
    name: str
    hours: tuple[int, int]
    price: float  # instant price in dollars
    effects: dict[str, float]
    ticks: int
    tick_price: float  # dollars per tick
    per_tick: dict[str, float]
    bonus: dict[str, float]


@dataclass(frozen=True)
class CascadeEdge:
    source: str
    target: str
    strength: float


@dataclass(frozen=True)
class WorldPack:
    """Everything a level is made of, validated. Numbers are as written in the files."""

    name: str
    grid_size: int
    deployed: tuple[str, ...]
    observability: str
    window_radius: int
    temporal_mechanics: bool
    starting_money: float  # dollars
    max_steps: int
    reward_mode: str
    layout_mode: str
    layout_seed: int
    random_start_hour: bool
    move_cost: dict[str, float]
    wait_cost: dict[str, float]
    interact_cost: dict[str, float]
    initial: dict[str, float]
    depletion: dict[str, float]
    modulation: dict[str, float]
    interoception: dict[str, float]  # base, center, health and energy weights of that reward mode
    cascade_threshold: float
    cascade_groups: tuple[tuple[CascadeEdge, ...], ...]
    affordances: tuple[Affordance, ...]  # vocabulary order
    layout_pool: str = "any"  # per-town/per-episode layouts: "train", "held_out" or "any" (schema.LAYOUT_POOLS)
    start_spread: float = 0.0  # each meter starts at initial x (1 - start_spread x U[0, 1)); 0: the level's start


# --- small typed readers ---------------------------------------------------------------

class _Reader:
    """Reads one file's dict, naming the file and dotted key in every error."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, key: str, problem: str) -> PackError:
        return PackError(f"{self.file}: key '{key}': {problem}")

    def table(self, raw: Any, key: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a table, got {type(raw).__name__}")
        for k in raw:
            if k not in allowed:
                raise self.fail(f"{key}.{k}" if key else k, f"unknown key; allowed: {', '.join(allowed)}")
        return raw

    def number(self, raw: Any, key: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise self.fail(key, f"expected a number, got {type(raw).__name__} {raw!r}")
        if not (lo <= raw <= hi) or math.isnan(raw):
            raise self.fail(key, f"value {raw!r} out of range [{lo}, {hi}]")
        return float(raw)

    def integer(self, raw: Any, key: str, lo: int, hi: int = 2**31 - 1) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.fail(key, f"expected an integer, got {type(raw).__name__} {raw!r}")
        if not lo <= raw <= hi:
            raise self.fail(key, f"value {raw} out of range [{lo}, {hi}]")
        return raw

    def boolean(self, raw: Any, key: str) -> bool:
        if not isinstance(raw, bool):
            raise self.fail(key, f"expected true or false, got {raw!r}")
        return raw

    def choice(self, raw: Any, key: str, choices: tuple[str, ...]) -> str:
        if raw not in choices:
            raise self.fail(key, f"{raw!r} is not one of {', '.join(choices)}")
        return raw

    def meter_map(self, raw: Any, key: str, lo: float = -1.0, hi: float = 1.0) -> dict[str, float]:
        self.table(raw, key, METERS)
        return {m: self.number(v, f"{key}.{m}", lo, hi) for m, v in raw.items()}


# --- per-file validation (partial: a level file may override only some tables) --------

_TOP = ("base", "level", "actions", "meters", "modulation", "rewards", "cascades", "affordances")
_INTEROCEPTION = ("base", "center", "health", "energy")
_LEVEL = (
    "grid_size", "affordances", "observability", "window_radius", "temporal_mechanics",
    "starting_money", "max_steps", "reward_mode", "layout_mode", "layout_seed",
    "random_start_hour",
)


def _check_file(raw: dict, r: _Reader) -> dict:
    """Type- and range-check whatever tables this file contains; return them normalised."""
    r.table(raw, "", _TOP)
    out: dict[str, Any] = {}
    if "level" in raw:
        lv = r.table(raw["level"], "level", _LEVEL)
        readers = {
            "grid_size": lambda v, k: r.integer(v, k, 2, 64),
            "observability": lambda v, k: r.choice(v, k, OBSERVABILITY),
            "window_radius": lambda v, k: r.integer(v, k, 1, 16),
            "temporal_mechanics": r.boolean,
            "starting_money": lambda v, k: r.number(v, k, 0.0, 100.0),
            "max_steps": lambda v, k: r.integer(v, k, 1),
            "reward_mode": lambda v, k: r.choice(v, k, REWARD_MODES),
            "layout_mode": lambda v, k: r.choice(v, k, LAYOUT_MODES),
            "layout_seed": lambda v, k: r.integer(v, k, 0),
            "random_start_hour": r.boolean,
            "affordances": lambda v, k: _deployed(v, k, r),
        }
        out["level"] = {k: readers[k](v, f"level.{k}") for k, v in lv.items()}
    if "actions" in raw:
        acts = r.table(raw["actions"], "actions", ("move", "wait", "interact"))
        out["actions"] = {k: r.meter_map(v, f"actions.{k}", 0.0, 1.0) for k, v in acts.items()}
    if "meters" in raw:
        ms = r.table(raw["meters"], "meters", METERS)
        out["meters"] = {}
        for m, spec in ms.items():
            spec = r.table(spec, f"meters.{m}", ("initial", "depletion"))
            out["meters"][m] = {
                k: r.number(v, f"meters.{m}.{k}", 0.0, 1.0) for k, v in spec.items()
            }
    if "modulation" in raw:
        mod = r.table(raw["modulation"], "modulation", ("base", "offset", "gain"))
        out["modulation"] = {k: r.number(v, f"modulation.{k}", 0.0, 10.0) for k, v in mod.items()}
    if "rewards" in raw:
        rw = r.table(raw["rewards"], "rewards", ("interoception",))
        out["rewards"] = {}
        if "interoception" in rw:
            io = r.table(rw["interoception"], "rewards.interoception", _INTEROCEPTION)
            out["rewards"]["interoception"] = {
                k: r.number(v, f"rewards.interoception.{k}", -10.0, 10.0) for k, v in io.items()
            }
    if "cascades" in raw:
        out["cascades"] = _cascades(raw["cascades"], r)
    if "affordances" in raw:
        table = r.table(raw["affordances"], "affordances", AFFORDANCES)
        out["affordances"] = {n: _affordance(n, spec, r) for n, spec in table.items()}
    return out


def _deployed(raw: Any, key: str, r: _Reader) -> tuple[str, ...]:
    if raw == "all":
        return AFFORDANCES
    if not isinstance(raw, list) or not raw:
        raise r.fail(key, 'expected "all" or a non-empty list of affordance names')
    for name in raw:
        if name not in AFFORDANCES:
            raise r.fail(key, f"unknown affordance {name!r}; known: {', '.join(AFFORDANCES)}")
    if len(set(raw)) != len(raw):
        raise r.fail(key, "an affordance is listed twice")
    return tuple(a for a in AFFORDANCES if a in raw)


def _cascades(raw: Any, r: _Reader) -> dict:
    c = r.table(raw, "cascades", ("threshold", "groups"))
    out: dict[str, Any] = {}
    if "threshold" in c:
        out["threshold"] = r.number(c["threshold"], "cascades.threshold", 1e-6, 1.0)
    if "groups" in c:
        if not isinstance(c["groups"], list):
            raise r.fail("cascades.groups", "expected an array of tables")
        groups = []
        for i, g in enumerate(c["groups"]):
            key = f"cascades.groups[{i}]"
            g = r.table(g, key, ("name", "edges"))
            edges = []
            for j, e in enumerate(g.get("edges", [])):
                ek = f"{key}.edges[{j}]"
                e = r.table(e, ek, ("source", "target", "strength"))
                for part in ("source", "target", "strength"):
                    if part not in e:
                        raise r.fail(f"{ek}.{part}", "missing")
                edges.append(CascadeEdge(
                    r.choice(e["source"], f"{ek}.source", METERS),
                    r.choice(e["target"], f"{ek}.target", METERS),
                    r.number(e["strength"], f"{ek}.strength", 0.0, 1.0),
                ))
            groups.append(tuple(edges))
        out["groups"] = tuple(groups)
    return out


def _affordance(name: str, raw: Any, r: _Reader) -> dict:
    key = f"affordances.{name}"
    spec = r.table(raw, key, ("hours", "instant", "ticked"))
    out: dict[str, Any] = {}
    if "hours" in spec:
        h = spec["hours"]
        if not (isinstance(h, list) and len(h) == 2):
            raise r.fail(f"{key}.hours", "expected [open, close]")
        o = r.integer(h[0], f"{key}.hours[0]", 0, HOURS_PER_DAY - 1)
        c = r.integer(h[1], f"{key}.hours[1]", 1, 2 * HOURS_PER_DAY - 1)
        if not o < c <= o + HOURS_PER_DAY:
            raise r.fail(f"{key}.hours", f"[{o}, {c}] is not a valid [open, close) window")
        out["hours"] = (o, c)
    # Only the keys written are returned: defaults are filled in after merging, so a level
    # file overriding one key (say instant.effects) keeps the base's others (its price).
    if "instant" in spec:
        ins = r.table(spec["instant"], f"{key}.instant", ("price", "effects"))
        readers = {
            "price": lambda v, k: r.number(v, k, 0.0, 100.0),
            "effects": r.meter_map,
        }
        out["instant"] = {k: readers[k](v, f"{key}.instant.{k}") for k, v in ins.items()}
    if "ticked" in spec:
        t = r.table(spec["ticked"], f"{key}.ticked", ("ticks", "price", "per_tick", "bonus", "deferred_costs"))
        readers = {
            "ticks": lambda v, k: r.integer(v, k, 1, 100),
            "price": lambda v, k: r.number(v, k, 0.0, 100.0),
            "per_tick": r.meter_map,
            "bonus": r.meter_map,
            "deferred_costs": r.boolean,
        }
        ticked = {k: readers[k](v, f"{key}.ticked.{k}") for k, v in t.items()}
        # A cost held back for the completion bonus is skipped by leaving one tick early
        # (docs/environment.md, "Temporal mechanics"); a pack must opt in to that on purpose.
        if not ticked.pop("deferred_costs", False):
            for meter, value in ticked.get("bonus", {}).items():
                if value < 0:
                    raise r.fail(
                        f"{key}.ticked.bonus.{meter}",
                        f"{value} is a cost in the completion bonus; charge it per tick in "
                        "per_tick (or set deferred_costs = true to defer it on purpose)",
                    )
        out["ticked"] = ticked
    return out


# --- loading and merging -----------------------------------------------------------------

def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PackError(f"{path}: world pack file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise PackError(f"{path}: not valid TOML: {e}") from None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def pack_path(level: str) -> Path:
    """Path of a shipped level pack, or of a user's pack file."""
    if level in LEVELS:
        return PACKS_DIR / f"{level}.toml"
    p = Path(level)
    if p.suffix == ".toml":
        return p
    raise PackError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)} or a .toml path")


def load_pack(level: str = "L3_temporal_mechanics") -> WorldPack:
    """Load and validate a level (a shipped level name or a path to a .toml pack)."""
    path = pack_path(level)
    r = _Reader(str(path))
    return _assemble(path.stem, _load_chain(path, ()), r)


def _load_chain(path: Path, seen: tuple[Path, ...]) -> dict:
    """A file's checked tables merged over its base's, the base's over its own base's..."""
    raw = _read_toml(path)
    r = _Reader(str(path))
    own = _check_file(raw, r)
    if "base" not in raw:
        return own
    if not isinstance(raw["base"], str):
        raise r.fail("base", "expected a file name")
    base_path = path.parent / raw["base"]
    if not base_path.exists():  # a user's pack may build on a shipped file by name
        shipped = PACKS_DIR / raw["base"]
        if not shipped.exists():
            raise r.fail("base", f"base file {base_path} not found (nor among the shipped packs)")
        base_path = shipped
    chain = (*seen, path.resolve())
    if base_path.resolve() in chain:
        names = " -> ".join(p.name for p in (*chain, base_path.resolve()))
        raise r.fail("base", f"bases form a cycle: {names}")
    return _merge(_load_chain(base_path, chain), own)


def _require(d: dict, key: str, r: _Reader, prefix: str = "") -> Any:
    if key not in d:
        raise r.fail(f"{prefix}{key}", "missing (not in this file nor in its base)")
    return d[key]


def _assemble(name: str, d: dict, r: _Reader) -> WorldPack:
    level = _require(d, "level", r)
    for k in _LEVEL:
        _require(level, k, r, "level.")
    actions = _require(d, "actions", r)
    move, wait = _require(actions, "move", r, "actions."), _require(actions, "wait", r, "actions.")
    interact = actions.get("interact", {})
    if not wait.get("energy", 0.0) < move.get("energy", 0.0):
        raise r.fail("actions.wait.energy", "WAIT must cost strictly less energy than a move")
    if any(wait.get(m, 0.0) > move.get(m, 0.0) for m in METERS):
        raise r.fail("actions.wait", "WAIT must not cost more than a move on any meter")
    meters = _require(d, "meters", r)
    for m in METERS:
        spec = _require(meters, m, r, "meters.")
        _require(spec, "initial", r, f"meters.{m}.")
        _require(spec, "depletion", r, f"meters.{m}.")
    modulation = _require(d, "modulation", r)
    for k in ("base", "offset", "gain"):
        _require(modulation, k, r, "modulation.")
    interoception = _require(_require(d, "rewards", r), "interoception", r, "rewards.")
    for k in _INTEROCEPTION:
        _require(interoception, k, r, "rewards.interoception.")
    cascades = _require(d, "cascades", r)
    affs = _require(d, "affordances", r)
    built = []
    for a in AFFORDANCES:
        spec = _require(affs, a, r, "affordances.")
        for k in ("hours", "instant", "ticked"):
            _require(spec, k, r, f"affordances.{a}.")
        ins, tk = spec["instant"], spec["ticked"]
        built.append(Affordance(a, spec["hours"], ins.get("price", 0.0), ins.get("effects", {}),
                                tk.get("ticks", 1), tk.get("price", 0.0), tk.get("per_tick", {}),
                                tk.get("bonus", {})))
    if len(level["affordances"]) > level["grid_size"] ** 2:
        raise r.fail("level.affordances", "more affordances than grid cells")
    return WorldPack(
        name=name,
        grid_size=level["grid_size"],
        deployed=level["affordances"],
        observability=level["observability"],
        window_radius=level["window_radius"],
        temporal_mechanics=level["temporal_mechanics"],
        starting_money=level["starting_money"],
        max_steps=level["max_steps"],
        reward_mode=level["reward_mode"],
        layout_mode=level["layout_mode"],
        layout_seed=level["layout_seed"],
        random_start_hour=level["random_start_hour"],
        move_cost=move,
        wait_cost=wait,
        interact_cost=interact,
        initial={m: meters[m]["initial"] for m in METERS},
        depletion={m: meters[m]["depletion"] for m in METERS},
        modulation=modulation,
        interoception=interoception,
        cascade_threshold=_require(cascades, "threshold", r, "cascades."),
        cascade_groups=_require(cascades, "groups", r, "cascades."),
        affordances=tuple(built),
    )


def configure_pack(level: str, reward_mode: str | None = None, layout_mode: str | None = None,
                   layout_seed: int | None = None, max_steps: int | None = None,
                   layout_pool: str | None = None, start_spread: float = 0.0) -> WorldPack:
    """Load a level and apply the env constructor's overrides, checking each one
    (`max_steps`: e.g. lives longer than the level's limit, for evaluation; `start_spread`:
    episodes that start with lowered meters, for training)."""
    choices = {"reward_mode": (reward_mode, REWARD_MODES), "layout_mode": (layout_mode, LAYOUT_MODES),
               "layout_pool": (layout_pool, LAYOUT_POOLS)}
    counts = {"layout_seed": (layout_seed, 0, "a non-negative"), "max_steps": (max_steps, 1, "a positive")}
    overrides = {}
    for key, (value, allowed) in choices.items():
        if value is not None:
            if value not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
            overrides[key] = value
    for key, (value, lowest, kind) in counts.items():
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{key} must be {kind} integer, got {value!r}")
            overrides[key] = value
    if isinstance(start_spread, bool) or not isinstance(start_spread, (int, float)) or not 0.0 <= start_spread <= 1.0:
        raise ValueError(f"start_spread must be a number in [0, 1], got {start_spread!r}")
    if start_spread:
        overrides["start_spread"] = float(start_spread)
    return replace(load_pack(level), **overrides)
