"""Graceful stop on SIGTERM (what SLURM and most schedulers send before killing a job)
and SIGINT (Ctrl-C).

The first signal only sets a flag: the training loop finishes the iteration it is in,
writes a checkpoint, logs and flushes its metrics and wandb, and exits with a line saying
where it stopped and how to continue. A second signal exits at once (status 128 + signal
number, as a shell reports a killed job), without a checkpoint; the previous one is intact
because checkpoints are written to a temporary file and renamed.

Schedulers that catch a signal of their own in the training process (submitit takes
SIGUSR2 for preemption and time limits, then requeues the job and exits) keep working:
when such a Python handler is already installed for SIGUSR1 or SIGUSR2, the signal is
treated as a stop too, and `hand_over()` calls the scheduler's handler after the clean
checkpoint instead of before it.
"""

from __future__ import annotations

import os
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Taken over only when a Python handler (a scheduler's) is already installed for them.
HANDED_OVER = (signal.SIGUSR1, signal.SIGUSR2)


class GracefulStop:
    """Context manager installing the handlers (main thread only); `requested` is the
    name of the first signal received, or None."""

    def __init__(self, signals=SIGNALS, handed_over=HANDED_OVER):
        self.signals = tuple(signals)
        self.handed_over = tuple(handed_over)
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
        for s in self.signals + tuple(s for s in self.handed_over if callable(signal.getsignal(s))):
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave the defaults
                pass
        return self

    def hand_over(self) -> None:
        """After a clean stop on SIGUSR1/2: run the handler that was there before ours
        (submitit's checkpoint-and-requeue, which then exits)."""
        if self.requested is None:
            return
        signum = signal.Signals[self.requested]
        previous = self._previous.get(signum)
        if signum in self.handed_over and callable(previous):
            previous(signum, None)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class StoppedBySignal(Exception):
    """Raised after a clean stop so the CLI exits with 128 + signal number."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.signal_name = name
        self.exit_status = 128 + int(signal.Signals[name])
