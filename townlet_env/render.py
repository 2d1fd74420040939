"""Pictures of one town for people: a text grid (`render_ansi`) and an RGB image (`render_rgb`).

Both read a single town's row of the state (numpy or torch arrays, any device) and never
touch the other towns, so rendering town 3 of 16384 costs the same as rendering a single
env. Nothing here needs a display: the image is drawn with Pillow in memory.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .params import MONEY, WorldParams
from .schema import AFFORDANCES, DOLLARS_PER_UNIT, EMPTY_CODE, METERS, NUM_AFFORDANCES
from .state import WorldState

#: Two-letter labels of the text grid, in AFFORDANCES order.
ANSI_LABELS = ("Bd", "Lx", "Sh", "Ml", "Ff", "Dr", "Ho", "Th", "Re", "Ba", "Jb", "Lb", "Gy", "Pk")
#: Short names drawn on the image tiles, in AFFORDANCES order.
TILE_LABELS = ("Bed", "LuxBed", "Shower", "Meal", "FastFd", "Doctor", "Hosp",
               "Therap", "Recr", "Bar", "Job", "Labor", "Gym", "Park")
#: Tile colours (RGB), in AFFORDANCES order: rest blues, care greens, food oranges, fun purples, work browns.
TILE_COLOURS = (
    (66, 110, 190), (40, 70, 150), (80, 170, 210), (235, 150, 60), (220, 90, 40),
    (60, 160, 90), (30, 120, 60), (150, 110, 200), (190, 90, 190), (120, 60, 150),
    (150, 110, 70), (110, 80, 50), (200, 60, 80), (110, 180, 60),
)
assert len(ANSI_LABELS) == len(TILE_LABELS) == len(TILE_COLOURS) == NUM_AFFORDANCES
assert len({a.lower() for a in ANSI_LABELS}) == NUM_AFFORDANCES  # closed = lowercase, still unique

TILE = 48          # pixels per grid cell
MARGIN = 8         # pixels around the grid and the panel
PANEL_WIDTH = 250  # pixels of the side panel
BAR_WIDTH = 110
_BAR = 20          # characters of a text meter bar

_BACKGROUND = (24, 24, 28)
_FLOOR = (58, 58, 64)
_GRID_LINE = (36, 36, 40)
_TEXT = (235, 235, 235)
_DIM_TEXT = (160, 160, 165)
_WINDOW = (250, 220, 80)


def _np(x) -> np.ndarray:
    """A numpy copy of an array or tensor (torch tensors on any device)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _town(params: WorldParams, state: WorldState, town: int) -> dict[str, Any]:
    """The one town's fields as numpy / Python values (converts only that row)."""
    n = int(state.cell.shape[0])
    if not 0 <= town < n:
        raise ValueError(f"town must be in 0..{n - 1}, got {town}")
    g = params.grid_size
    grid = _np(state.grid[town]).astype(np.int64)[_np(params.cell_to_padded)].reshape(g, g)
    hour = int(_np(state.hour[town]))
    open_at = _np(params.open_hours)[:, hour]
    current = int(_np(state.current[town]))
    progress = int(_np(state.progress[town]))
    return {
        "grid": grid,                                    # [G, G] codes, row y, column x
        "open": open_at,                                 # [codes] open now
        "x": int(_np(state.cell[town])) % g,
        "y": int(_np(state.cell[town])) // g,
        "meters": _np(state.meters[town]).astype(np.float64),
        "hour": hour,
        "progress": progress,
        "current": current,
        "ticks": int(_np(params.ticks)[current]) if progress > 0 else 0,
        "steps": int(_np(state.steps[town])),
        "multiplier": float(_np(state.multiplier[town])),
    }


def _meter_text(name: str, value: float) -> str:
    if name == "money":
        return f"${value * DOLLARS_PER_UNIT:.2f}"
    return f"{value:.2f}"


def _status_lines(params: WorldParams, t: dict) -> list[str]:
    lines = [f"step {t['steps']} / {params.max_steps}", f"difficulty x{t['multiplier']:.2f}"]
    if params.temporal:
        lines.append(f"hour {t['hour']:02d}:00")
        if t["progress"] > 0:
            lines.append(f"interaction {AFFORDANCES[t['current']]} {t['progress']}/{t['ticks']}")
        else:
            lines.append("interaction none")
    return lines


def render_ansi(params: WorldParams, state: WorldState, town: int = 0) -> str:
    """Town `town` as text: the grid, a legend, the eight meters as bars, clock and step.

    Grid cells: ' . ' floor, ' Bd' an affordance (two-letter label, lowercase while it is
    closed), ' @ ' the agent on the floor, '@Bd' the agent standing on an affordance.
    """
    t = _town(params, state, town)
    g = params.grid_size
    rows = [f"Townlet {params.pack.name}  town {town}"]
    for y in range(g):
        cells = []
        for x in range(g):
            code = int(t["grid"][y, x])
            agent = (x, y) == (t["x"], t["y"])
            if code == EMPTY_CODE:
                cells.append(" @ " if agent else " . ")
            else:
                label = ANSI_LABELS[code] if t["open"][code] else ANSI_LABELS[code].lower()
                cells.append(("@" if agent else " ") + label)
        rows.append("".join(cells))
    deployed = sorted({int(c) for c in t["grid"].reshape(-1) if c != EMPTY_CODE})
    legend = [f"{ANSI_LABELS[c]}={AFFORDANCES[c]}" for c in deployed]
    rows.append("legend: @=agent .=floor " + " ".join(legend))
    if params.temporal:
        rows.append("        lowercase = closed at this hour")
    here = int(t["grid"][t["y"], t["x"]])
    rows.append(f"agent at (x={t['x']}, y={t['y']}) on {AFFORDANCES[here] if here != EMPTY_CODE else 'floor'}")
    for i, name in enumerate(METERS):
        v = float(t["meters"][i])
        filled = int(round(v * _BAR))
        rows.append(f"{name:<9} [{'#' * filled}{'-' * (_BAR - filled)}] {_meter_text(name, v)}")
    rows.extend(_status_lines(params, t))
    return "\n".join(rows) + "\n"


@lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _meter_colour(v: float) -> tuple[int, int, int]:
    """Red at 0, amber at 0.5, green at 1."""
    v = min(max(v, 0.0), 1.0)
    if v < 0.5:
        return (220, int(60 + 300 * v), 50)
    return (int(220 - 340 * (v - 0.5)), 210, 60)


def _dim(c: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(0.35 * v + 0.65 * f) for v, f in zip(c, _FLOOR))


def render_rgb(params: WorldParams, state: WorldState, town: int = 0) -> np.ndarray:
    """Town `town` as an RGB image, uint8 [H, W, 3].

    Left: the grid, one coloured, labelled tile per affordance (faded while closed), the
    agent as a white circle and, under partial observability, its observation window
    outlined in yellow. Right: the eight meters as labelled bars, money in dollars, the
    step, the clock and interaction progress when temporal mechanics are on.
    """
    from PIL import Image, ImageDraw

    t = _town(params, state, town)
    g = params.grid_size
    grid_px = g * TILE
    lines = _status_lines(params, t)
    panel_h = MARGIN + 18 * (1 + len(lines)) + 8 + 20 * len(METERS) + MARGIN
    width = MARGIN + grid_px + MARGIN + PANEL_WIDTH + MARGIN
    height = max(MARGIN + grid_px + MARGIN, panel_h)
    img = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    font, small = _font(12), _font(10)

    # The grid.
    for y in range(g):
        for x in range(g):
            x0, y0 = MARGIN + x * TILE, MARGIN + y * TILE
            box = (x0, y0, x0 + TILE - 1, y0 + TILE - 1)
            code = int(t["grid"][y, x])
            if code == EMPTY_CODE:
                draw.rectangle(box, fill=_FLOOR, outline=_GRID_LINE)
                continue
            is_open = bool(t["open"][code])
            colour = TILE_COLOURS[code] if is_open else _dim(TILE_COLOURS[code])
            draw.rectangle(box, fill=colour, outline=_GRID_LINE)
            draw.text((x0 + TILE // 2, y0 + 3), TILE_LABELS[code], fill=_TEXT if is_open else _DIM_TEXT,
                      font=small, anchor="mt")
            if not is_open:
                draw.text((x0 + TILE // 2, y0 + TILE - 3), "closed", fill=_DIM_TEXT, font=small, anchor="mb")
    if params.pad > 0:  # partial observability: outline the window, clipped to the town
        r = params.pad
        lo_x, lo_y = max(t["x"] - r, 0), max(t["y"] - r, 0)
        hi_x, hi_y = min(t["x"] + r, g - 1), min(t["y"] + r, g - 1)
        draw.rectangle((MARGIN + lo_x * TILE, MARGIN + lo_y * TILE,
                        MARGIN + (hi_x + 1) * TILE - 1, MARGIN + (hi_y + 1) * TILE - 1),
                       outline=_WINDOW, width=2)
    cx, cy = MARGIN + t["x"] * TILE + TILE // 2, MARGIN + t["y"] * TILE + TILE * 5 // 8
    rad = TILE // 4
    draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=(250, 250, 250), outline=(0, 0, 0), width=2)

    # The side panel.
    px = MARGIN + grid_px + MARGIN
    py = MARGIN
    draw.text((px, py), f"{params.pack.name}  town {town}", fill=_TEXT, font=font)
    for line in lines:
        py += 18
        draw.text((px, py), line, fill=_TEXT, font=font)
    py += 18 + 8
    for i, name in enumerate(METERS):
        v = float(t["meters"][i])
        draw.text((px, py + 2), name, fill=_TEXT, font=font)
        bx = px + 70
        draw.rectangle((bx, py + 2, bx + BAR_WIDTH, py + 14), outline=_DIM_TEXT, fill=_BACKGROUND)
        filled = int(round(min(max(v, 0.0), 1.0) * BAR_WIDTH))
        if filled > 0:
            colour = (90, 170, 90) if i == MONEY else _meter_colour(v)
            draw.rectangle((bx, py + 2, bx + filled, py + 14), fill=colour)
        draw.text((bx + BAR_WIDTH + 6, py + 2), _meter_text(name, v), fill=_TEXT, font=font)
        py += 20
    return np.asarray(img, dtype=np.uint8).copy()
