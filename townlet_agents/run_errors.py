"""Why a run stopped before its budget, as one line the CLIs print (exit 2, no traceback).

Each names the file or the step at fault: a metrics file that cannot be written, a
diverged network, another trainer on the same run folder."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run cannot go on; the message says why and what was kept."""


class MetricsWriteError(RunError):
    """metrics.jsonl cannot be written (full disk, unwritable folder)."""


class DivergenceError(RunError):
    """A loss, gradient or parameter became non-finite."""


class RunLockError(RunError):
    """Another trainer holds the run folder."""
