"""Helpers for hand-built world states (world-mechanics tests).

`World` wraps either backend behind one small surface so a test can be run on both:
  - backend "numpy": the single env `townlet_env.TownletEnv` (one town);
  - backend "torch": the vector env `townlet_env.TownletVectorEnv` (N towns, torch state).
Test modules import these helpers as `from env_testkit import ...` (an alias this file
registers, so the import does not depend on which `conftest` module pytest loaded last).

A test puts an agent on an affordance or a cell, sets meters, the hour, the step count or
the interaction progress directly in `env.state`, then steps; the state is re-observed
(the cached mask refreshed) before every step.

The tables this file transcribes (docs/world.md, "Actions" and "Meters") are written out as
literals, not read from the world pack, so that the tests check the pack and the code
against the specification rather than against themselves.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from townlet_env import AFFORDANCES, METERS, TownletEnv, TownletVectorEnv

torch.set_num_threads(1)

L0, L2, L3 = "L0_minimal", "L2_partial_observability", "L3_temporal_mechanics"
UP, DOWN, LEFT, RIGHT, INTERACT, WAIT = range(6)
M = {m: i for i, m in enumerate(METERS)}  # energy 0, hygiene 1, satiation 2, money 3, mood 4, social 5, health 6, fitness 7
EMPTY = 14
TOL = 1e-6
PACKS_DIR = Path(__file__).resolve().parents[2] / "townlet_env" / "packs"

# --- docs/world.md tables, transcribed -------------------------------------------------

#: docs/world.md, "Actions": meter cost of each action per use.
MOVE_COST = {"energy": 0.005, "hygiene": 0.003, "satiation": 0.004}
WAIT_COST = {"energy": 0.001}
INTERACT_COST = {"energy": 0.001}  # as WAIT: standing at a counter is never cheaper
#: docs/world.md, "Meters": base depletion per step (scaled by the agent's multiplier).
DEPLETION = {"energy": 0.005, "hygiene": 0.003, "satiation": 0.004, "money": 0.0,
             "mood": 0.001, "social": 0.006, "health": 0.0, "fitness": 0.002}
THRESHOLD = 0.30
#: docs/world.md, "Cascades": groups in order, (source, target, strength).
CASCADE_GROUPS = (
    (("satiation", "health", 0.004), ("satiation", "energy", 0.005), ("mood", "energy", 0.005)),
    (("hygiene", "satiation", 0.002), ("hygiene", "fitness", 0.002), ("hygiene", "mood", 0.003),
     ("social", "mood", 0.004)),
    (("hygiene", "health", 0.0005), ("hygiene", "energy", 0.0005), ("social", "energy", 0.0008)),
)

#: docs/world.md, "Affordances", instant mode: price in dollars, effects.
INSTANT = {
    "Bed": (5.0, dict(energy=0.50, health=0.02)),
    "LuxuryBed": (11.0, dict(energy=0.75, health=0.05)),
    "Shower": (3.0, dict(hygiene=0.40)),
    "HomeMeal": (3.0, dict(satiation=0.45, health=0.03)),
    "FastFood": (10.0, dict(satiation=0.45, energy=0.15, social=0.01, fitness=-0.03, health=-0.02)),
    "Doctor": (8.0, dict(health=0.25)),
    "Hospital": (15.0, dict(health=0.40)),
    "Therapist": (15.0, dict(mood=0.40)),
    "Recreation": (6.0, dict(mood=0.25, energy=0.12)),
    "Bar": (15.0, dict(social=0.50, mood=0.25, satiation=0.30, energy=-0.20, hygiene=-0.15, health=-0.05)),
    "Job": (0.0, dict(money=0.225, energy=-0.15, social=0.02, health=-0.03)),
    "Labor": (0.0, dict(money=0.30, energy=-0.20, fitness=-0.05, health=-0.05, social=0.01)),
    "Gym": (8.0, dict(fitness=0.30, energy=-0.08)),
    "Park": (0.0, dict(fitness=0.20, social=0.15, mood=0.15, energy=-0.15)),
}


@dataclass(frozen=True)
class Ticked:
    ticks: int
    price: float            # dollars per tick
    per_tick: dict
    bonus: dict
    hours: tuple[int, int]  # [open, close), close > 24 wraps past midnight


#: docs/world.md, "Affordances", ticked mode (temporal mechanics on), and the open hours.
TICKED = {
    "Bed": Ticked(5, 1.0, dict(energy=0.075), dict(energy=0.125, health=0.02), (0, 24)),
    "LuxuryBed": Ticked(6, 1.83, dict(energy=0.09375), dict(energy=0.1875, health=0.05), (0, 24)),
    "Shower": Ticked(3, 1.0, dict(hygiene=0.10), dict(hygiene=0.10), (0, 24)),
    "HomeMeal": Ticked(3, 1.0, dict(satiation=0.1125), dict(satiation=0.1125, health=0.03), (0, 24)),
    "FastFood": Ticked(2, 5.0, dict(satiation=0.16875, energy=0.05625, fitness=-0.015, health=-0.01),
                       dict(satiation=0.1125, energy=0.0375, social=0.01), (0, 24)),
    "Doctor": Ticked(2, 4.0, dict(health=0.09375), dict(health=0.0625), (8, 18)),
    "Hospital": Ticked(3, 5.0, dict(health=0.10), dict(health=0.10), (0, 24)),
    "Therapist": Ticked(3, 5.0, dict(mood=0.10), dict(mood=0.10), (8, 18)),
    "Recreation": Ticked(2, 3.0, dict(mood=0.09375, energy=0.045), dict(mood=0.0625, energy=0.03), (8, 22)),
    "Bar": Ticked(2, 7.50, dict(social=0.1875, mood=0.09375, satiation=0.1125, energy=-0.10, hygiene=-0.075,
                                health=-0.025),
                  dict(social=0.125, mood=0.0625, satiation=0.075), (18, 28)),
    "Job": Ticked(4, 0.0, dict(money=0.05625, energy=-0.0375, health=-0.0075), dict(money=0.05625, social=0.02),
                  (8, 18)),
    "Labor": Ticked(4, 0.0, dict(money=0.075, energy=-0.05, fitness=-0.0125, health=-0.0125),
                    dict(money=0.075, social=0.01), (8, 18)),
    "Gym": Ticked(3, 2.67, dict(fitness=0.075, energy=-0.02667), dict(fitness=0.075), (6, 22)),
    "Park": Ticked(3, 0.0, dict(fitness=0.05, social=0.0375, mood=0.0375, energy=-0.05),
                   dict(fitness=0.05, social=0.0375, mood=0.0375), (6, 22)),
}


def vec(**values: float) -> np.ndarray:
    """An [8] float64 meter vector with the named entries set, the rest 0."""
    v = np.zeros(8, dtype=np.float64)
    for k, x in values.items():
        v[M[k]] = x
    return v


def meters(base: float = 0.5, **values: float) -> dict[str, float]:
    """A full meter dict: every meter `base`, with the named overrides."""
    d = {m: base for m in METERS}
    d.update(values)
    return d


def settle(m: np.ndarray, multiplier: float = 1.0) -> np.ndarray:
    """docs/world.md, "The step", steps 2-5 in float64, for meters as left by the action (step 1).

    base depletion x multiplier; health -= 0.001 (0.5 + 2.5 (1 - fitness)) with the
    fitness after depletion; the three cascade groups in order (each group reads the
    meters left by the previous one, every edge of a group the same snapshot); clamp.
    """
    m = np.asarray(m, dtype=np.float64).copy()
    for k, d in DEPLETION.items():
        m[M[k]] -= d * multiplier
    m[M["health"]] -= 0.001 * (0.5 + 2.5 * (1.0 - m[M["fitness"]]))
    for group in CASCADE_GROUPS:
        snap = m.copy()
        for src, dst, s in group:
            if snap[M[src]] < THRESHOLD:
                m[M[dst]] -= s * (THRESHOLD - snap[M[src]]) / THRESHOLD
    return np.clip(m, 0.0, 1.0)


def as_vector(d: dict[str, float]) -> np.ndarray:
    return np.array([d[m] for m in METERS], dtype=np.float64)


# --- the harness ------------------------------------------------------------------------

@dataclass
class StepResult:
    obs: Any
    reward: np.ndarray      # [N] float64
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray   # [N] bool
    masked: np.ndarray      # [N] bool, info["action_masked"]
    info: dict


def _np(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.atleast_1d(np.asarray(x))


class World:
    """One env of either backend with a hand-editable state (town dimension N)."""

    def __init__(self, level: str = L2, backend: str = "numpy", n: int = 1, seed: int = 0, **kwargs):
        self.backend = backend
        if backend == "numpy":
            assert n == 1, "the single env has one town"
            self.env = TownletEnv(level, **kwargs)
        elif backend == "torch":
            self.env = TownletVectorEnv(n, level, **kwargs)
        else:
            raise ValueError(backend)
        self.n = n
        self.env.reset(seed=seed)
        self.params = self.env.params
        self.g = self.params.grid_size
        # The town's cell codes [N, cells] (row-major, y * G + x).
        grid = _np(self.env.state.grid).reshape(self.n, -1)
        self.codes = grid[:, _np(self.params.cell_to_padded)].astype(np.int64)

    @property
    def state(self):
        return self.env.state

    # -- where things are

    def cell_of(self, name: str, town: int = 0) -> int:
        """Flat cell index of affordance `name` in town `town`'s layout."""
        hits = np.flatnonzero(self.codes[town] == AFFORDANCES.index(name))
        assert hits.size == 1, f"{name} is not deployed exactly once"
        return int(hits[0])

    def cell(self, x: int, y: int) -> int:
        return y * self.g + x

    def empty_cell(self, town: int = 0, interior: bool = False) -> int:
        """An EMPTY cell (optionally not on the border)."""
        for c in np.flatnonzero(self.codes[town] == EMPTY):
            x, y = c % self.g, c // self.g
            if not interior or (0 < x < self.g - 1 and 0 < y < self.g - 1):
                return int(c)
        raise AssertionError("no empty cell")

    # -- editing the state

    def _towns(self, town):
        return slice(None) if town is None else town

    def place(self, where, town=None) -> int:
        """Put the agent on affordance `where` (a name), cell index, or (x, y)."""
        if isinstance(where, str):
            cell = self.cell_of(where)
        elif isinstance(where, tuple):
            cell = self.cell(*where)
        else:
            cell = int(where)
        self.state.cell[self._towns(town)] = cell
        return cell

    def set_meters(self, town=None, **values: float) -> None:
        for k, v in values.items():
            self.state.meters[self._towns(town), M[k]] = float(v)

    def set(self, town=None, *, hour=None, steps=None, progress=None, current=None) -> None:
        t = self._towns(town)
        if hour is not None:
            self.state.hour[t] = hour
        if steps is not None:
            self.state.steps[t] = steps
        if progress is not None:
            self.state.progress[t] = progress
        if current is not None:
            self.state.current[t] = AFFORDANCES.index(current) if isinstance(current, str) else current

    def set_difficulty(self, multipliers) -> None:
        if self.backend == "numpy":
            self.env.set_difficulty(float(np.asarray(multipliers).reshape(-1)[0]))
        else:
            self.env.set_difficulty(np.asarray(multipliers, dtype=np.float32).reshape(self.n))

    def refresh(self):
        """Re-observe the edited state (refreshes the cached mask); returns (obs, info)."""
        return self.env._observe()

    # -- reading

    def meters(self) -> np.ndarray:
        """[N, 8] float64 copy of the meters."""
        return _np(self.state.meters).astype(np.float64).reshape(self.n, 8)

    def field(self, name: str) -> np.ndarray:
        return _np(getattr(self.state, name)).reshape(self.n)

    def mask(self) -> np.ndarray:
        self.refresh()
        return _np(self.env.action_masks()).reshape(self.n, 6)

    # -- stepping

    def step(self, *actions: int) -> StepResult:
        """Step with one action per town (refreshing the cached mask first)."""
        assert len(actions) == self.n
        self.refresh()
        if self.backend == "numpy":
            obs, r, term, trunc, info = self.env.step(int(actions[0]))
        else:
            obs, r, term, trunc, info = self.env.step(np.asarray(actions, dtype=np.int64))
        return StepResult(obs, _np(r).astype(np.float64), _np(term).astype(bool),
                          _np(trunc).astype(bool), _np(info["action_masked"]).astype(bool), info)


@pytest.fixture(params=["numpy", "torch"])
def backend(request) -> str:
    """Run a test on the single env (numpy) and on the vector env (torch)."""
    return request.param


def write_pack(tmp_path: Path, level: dict[str, Any], extra: str = "") -> str:
    """A world pack file over the shipped town.toml: a full [level] table plus extra TOML."""
    defaults = dict(grid_size=8, affordances="all", observability="full", window_radius=2,
                    temporal_mechanics=False, starting_money=50.0, max_steps=500,
                    reward_mode="survival", layout_mode="shared", layout_seed=0,
                    random_start_hour=False)
    defaults.update(level)

    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        return repr(v)

    body = f'base = "{(PACKS_DIR / "town.toml").as_posix()}"\n\n[level]\n'
    body += "".join(f"{k} = {lit(v)}\n" for k, v in defaults.items())
    body += "\n" + textwrap.dedent(extra)
    path = tmp_path / "custom_pack.toml"
    path.write_text(body)
    return str(path)


# Importable from test modules whatever `conftest` module pytest loaded last.
sys.modules["env_testkit"] = sys.modules[__name__]
