"""Graceful stop on SIGTERM (what SLURM and most schedulers send before killing a job)
and SIGINT (Ctrl-C).

The first signal only sets a flag: the training loop finishes the iteration it is in,
writes a checkpoint, logs and flushes its metrics and wandb, and exits with a line saying
where it stopped and how to continue. A second signal exits at once (status 128 + signal
number, as a shell reports a killed job), without a checkpoint; the previous one is intact
because checkpoints are written to a temporary file and renamed.
"""

from __future__ import annotations

import os
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """Context manager installing the handlers (main thread only); `requested` is the
    name of the first signal received, or None."""

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            print(f"\n{name} again: exiting now without a checkpoint (the previous one is intact)",
                  file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.requested = name
        print(f"\n{name} received: finishing this iteration, then writing a checkpoint "
              f"({name} again exits at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> GracefulStop:
        for s in self.signals:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave the defaults
                pass
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


class StoppedBySignal(Exception):
    """Raised after a clean stop so the CLI exits with 128 + signal number."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.signal_name = name
        self.exit_status = 128 + int(signal.Signals[name])
