"""`resume=auto`: continue from the newest checkpoint of the run folder that loads cleanly.

Candidates are `checkpoints/step_*.pt`, newest step first, then `checkpoints/latest.pt`
(which holds the same payload as the newest step file unless that one was removed by
hand). A candidate that is truncated or corrupt is skipped with a warning naming it; a
checkpoint that loads but does not fit the run (another level, world or network) is the
user's to sort out and stops the run, as an explicit `resume=PATH` does. No checkpoint at
all starts a new run, so one command line serves the first start and every requeue.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from .checkpoint import TEMP_SUFFIX, CheckpointError, load_checkpoint

AUTO = "auto"


def candidates(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    steps = []
    for p in folder.glob("step_*.pt"):
        m = re.fullmatch(r"step_(\d+)\.pt", p.name)
        if m:
            steps.append((int(m.group(1)), p))
    found = [p for _, p in sorted(steps, reverse=True)]
    latest = folder / "latest.pt"
    return found + ([latest] if latest.exists() else [])


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Temporary files of checkpoint writes that a killed trainer never renamed. Only
    call this while holding the run lock: then no other writer can own them."""
    removed = []
    for p in (Path(run_dir) / "checkpoints").glob(f".*{TEMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def find_resumable(run_dir: Path, map_location: Any = "cpu") -> tuple[Path, dict] | None:
    """The newest loadable checkpoint and its payload, or None when the folder has none.
    Raises CheckpointError when checkpoints exist but none of them loads."""
    skipped = []
    for path in candidates(run_dir):
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except CheckpointError as e:
            print(f"warning: resume=auto: skipping {e}", file=sys.stderr)
            skipped.append(path.name)
    if skipped:
        raise CheckpointError(f"{Path(run_dir) / 'checkpoints'}: resume=auto found checkpoints but none loads "
                              f"({', '.join(skipped)}); move them away to start afresh")
    return None
