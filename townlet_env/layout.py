"""Observation layout: which slice of the flat observation vector holds which part.

Networks and tools read offsets from here; no module hardcodes an observation size.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import NUM_AFFORDANCES, NUM_CELL_CODES, NUM_METERS

#: One-hot grid channels: one per affordance, then one marking OUTSIDE; EMPTY is all zeros.
GRID_CHANNELS = NUM_AFFORDANCES + 1
OUTSIDE_CHANNEL = NUM_AFFORDANCES


@dataclass(frozen=True)
class ObsPart:
    """One named part of the observation: a contiguous slice with a logical shape."""

    name: str
    start: int
    shape: tuple[int, ...]
    #: 0 for real values; k > 0 for integer category codes 0..k-1 stored as floats.
    categories: int = 0

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True, eq=True)
class ObsLayout:
    """Ordered parts of the flat observation vector.

    Parts (always present, in this order), default (code) encoding:
      grid       (cells,)   cell code of each observed cell, row-major from the top-left
                            (schema: an affordance's index, EMPTY_CODE, OUTSIDE_CODE)
      position   (2,)       agent x, y normalised to [0, 1]
      meters     (meters,)  the meters in schema.METERS order
      affordance (1,)       code of the affordance under the agent; EMPTY_CODE = none
      time       (3,)       sin(hour), cos(hour), interaction progress in [0, 1];
                            all zero when temporal mechanics are off
    With `town_cells` > 0 (the env's `landmarks=True`), two more parts (townlet_env.landmarks):
      landmarks  (affordances, 3) per affordance: seen this episode (0/1), dx, dy to it
      seen_cells (town_cells,)    1 where the agent has seen that town cell this episode
    With `one_hot=True`, grid is (cells, GRID_CHANNELS) (channel k = affordance k, the last
    channel = outside, empty = all zeros) and affordance is (affordances + 1,) (the last
    index = none).
    """

    parts: tuple[ObsPart, ...]
    one_hot: bool = False

    @classmethod
    def build(cls, cells: int, one_hot: bool = False, town_cells: int = 0) -> "ObsLayout":
        if one_hot:
            grid, here = ((cells, GRID_CHANNELS), 0), ((NUM_AFFORDANCES + 1,), 0)
        else:
            grid, here = ((cells,), NUM_CELL_CODES), ((1,), NUM_AFFORDANCES + 1)
        specs = (
            ("grid",) + grid,
            ("position", (2,), 0),
            ("meters", (NUM_METERS,), 0),
            ("affordance",) + here,
            ("time", (3,), 0),
        ) + ((("landmarks", (NUM_AFFORDANCES, 3), 0), ("seen_cells", (town_cells,), 0)) if town_cells else ())
        parts, start = [], 0
        for name, shape, categories in specs:
            part = ObsPart(name, start, shape, categories)
            parts.append(part)
            start = part.stop
        return cls(tuple(parts), one_hot)

    @property
    def size(self) -> int:
        return self.parts[-1].stop

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parts})

    def __getitem__(self, name: str) -> ObsPart:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no observation part named {name!r}; parts: {self.names()}") from None

    def names(self) -> list[str]:
        return [p.name for p in self.parts]
