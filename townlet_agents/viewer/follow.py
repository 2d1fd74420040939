"""Following a training run by reading its files, never touching the training process.

The trainer writes checkpoints atomically (temp file + rename) into RUN_DIR/checkpoints
and appends one JSON line per log interval to RUN_DIR/metrics.jsonl; reading both from
another process is safe and costs the trainer nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint
from .sim import WatchError

#: The learning curve the page draws: mean survival of episodes finished per log interval.
CURVE_METRIC = "charts/episodic_length"
_STEP_FILE = re.compile(r"step_(\d+)\.pt$")


class RunFollower:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise WatchError(f"run: {self.run_dir} is not a folder")
        self.checkpoints = self.run_dir / "checkpoints"
        self.metrics = self.run_dir / "metrics.jsonl"
        if not self.checkpoints.is_dir() and not self.metrics.is_file():
            raise WatchError(f"run: {self.run_dir} holds neither checkpoints/ nor metrics.jsonl "
                             "(is it a training run's output folder?)")
        self.loaded: tuple[Path, int] | None = None  # (file, mtime_ns) of the checkpoint in use
        self.error: str | None = None                # why the newest checkpoint could not be used
        self._offset = 0
        self._partial = b""

    def newest(self) -> Path | None:
        """The checkpoint with the highest step number (latest.pt when there are none)."""
        if not self.checkpoints.is_dir():
            return None
        steps = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP_FILE.search(p.name))]
        if steps:
            return max(steps)[1]
        latest = self.checkpoints / "latest.pt"
        return latest if latest.is_file() else None

    def poll_checkpoint(self) -> tuple[Path, dict] | None:
        """(path, payload) of a checkpoint newer than the one in use, else None."""
        path = self.newest()
        if path is None:
            return None
        try:
            key = (path, path.stat().st_mtime_ns)
        except FileNotFoundError:  # pruned by the trainer between listing and stat
            return None
        if key == self.loaded:
            return None
        try:
            payload = load_checkpoint(path)
        except CheckpointError as e:
            if path.exists():  # else pruned by the trainer mid-read: a newer one is there
                self.error = str(e)
                self.loaded = key  # a bad file is not read again every poll
            return None
        self.loaded = key
        self.error = None
        return path, payload

    def poll_curve(self) -> tuple[list[list[float]], bool]:
        """New (global_step, value) points of the curve since the last call, and whether
        the file was restarted (the page then drops what it had)."""
        try:
            size = self.metrics.stat().st_size
        except FileNotFoundError:
            return [], False
        restarted = size < self._offset
        if restarted:
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return [], restarted
        with open(self.metrics, "rb") as f:
            f.seek(self._offset)
            data = self._partial + f.read(size - self._offset)
        self._offset = size
        *lines, self._partial = data.split(b"\n")  # the last piece may be a line still being written
        points = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            value = row.get(CURVE_METRIC) if isinstance(row, dict) else None
            if isinstance(value, (int, float)) and "global_step" in row:
                points.append([int(row["global_step"]), float(value)])
        return points, restarted
