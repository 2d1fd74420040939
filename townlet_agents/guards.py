"""Divergence guard: a non-finite loss, gradient norm or parameter stops the run.

After every gradient update the guard folds "is anything non-finite?" into a flag on the
device, with the env step and update of the first failure. On the CPU reading it costs
nothing, so it is read after every update and the run stops at that update. On a GPU it is
read at each log row and before every checkpoint (reading it forces a sync), so the run
stops at the next of those and the message names the step where it first happened. Either
way no checkpoint is ever written from diverged weights: the last good one stays the
newest.
"""

from __future__ import annotations

import torch

from .run_errors import DivergenceError


class DivergenceGuard:
    def __init__(self, device: torch.device, check_every_update: bool):
        self.check_every_update = check_every_update
        # [bad loss, bad grad norm, bad parameter, env step, update] of the first failure
        self.first = torch.zeros(5, dtype=torch.float64, device=device)
        self._zero = torch.zeros((), dtype=torch.bool, device=device)
        self._where = torch.zeros(2, dtype=torch.float64, device=device)

    def observe(self, metrics: dict, parameters, global_step: int, update: int) -> None:
        """Fold one update's loss, gradient norm and parameters into the flag."""
        bad_loss = ~torch.isfinite(metrics["td_loss"]) if "td_loss" in metrics else self._zero
        bad_grad = ~torch.isfinite(metrics["grad_norm"]) if "grad_norm" in metrics else self._zero
        # One multi-tensor norm instead of an isfinite per parameter: a NaN or inf entry makes
        # its tensor's norm non-finite. (So would an entry beyond ~1e19, whose square
        # overflows float32: weights that large have diverged anyway.)
        bad_param = ~torch.isfinite(torch.stack(torch._foreach_norm(list(parameters)))).all()
        now = torch.stack([bad_loss, bad_grad, bad_param]).to(torch.float64)
        # Written as fills (a scalar kernel argument), not torch.tensor(list, device=...):
        # a copy from host memory would wait for the device on every update.
        self._where[0], self._where[1] = float(global_step), float(update)
        row = torch.cat([now, self._where])
        fresh = (self.first[:3].sum() == 0) & (now.sum() > 0)  # keep the first failure only
        self.first = torch.where(fresh, row, self.first)
        if self.check_every_update:
            self.check()

    def check(self) -> None:
        """Raise DivergenceError if any update so far produced a non-finite value."""
        bad_loss, bad_grad, bad_param, step, update = self.first.tolist()
        if not (bad_loss or bad_grad or bad_param):
            return
        what = [name for flag, name in ((bad_loss, "loss"), (bad_grad, "gradient"), (bad_param, "parameter"))
                if flag]
        raise DivergenceError(
            f"training diverged: non-finite {' and '.join(what)} at env step {int(step)} (update {int(update)}); "
            "stopped without writing a checkpoint from it, so the newest checkpoint is the last good one "
            "(try a lower agent.lr, agent.grad_clip or agent.reward_scale)")

    def tripped(self) -> bool:
        return bool(self.first[:3].sum() > 0)
