"""Where metrics go: metrics.jsonl in the run dir (always), wandb (lazy, offline by
default), and a console progress bar. Names follow CleanRL (`charts/SPS`,
`losses/td_loss`, ...) and are logged against env steps (`global_step`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .run_errors import MetricsWriteError


class MetricsSink:
    def __init__(self, run_dir: Path, cfg, total_steps: int, initial_step: int = 0, job_name: str | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered bytes: each row reaches the file whole or, on a failed write, is
            # cut back off (`_write`), so the file never ends in a partial line.
            self._file = open(self.path, "ab", buffering=0)
        except OSError as e:
            raise MetricsWriteError(f"{self.path}: cannot write metrics: {e.strerror or e}") from None
        self._wandb = _start_wandb(run_dir, cfg, job_name)
        self._bar = None
        if cfg.train.progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", unit_scale=True,
                             dynamic_ncols=True, desc="train")
        self._last_step = initial_step

    def log(self, global_step: int, metrics: dict[str, Any]) -> None:
        row = {"global_step": int(global_step)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        self._write(row)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=int(global_step))
        if self._bar is not None:
            self._bar.update(max(0, int(global_step) - self._last_step))
            self._bar.set_postfix({
                "SPS": f"{metrics.get('charts/SPS', 0):.0f}",
                "episodes": metrics.get("charts/episodes", 0),
                "survival": f"{metrics.get('charts/episodic_length', float('nan')):.1f}",
                "stage": f"{metrics.get('curriculum/stage_mean', 0):.2f}",
            }, refresh=False)
        self._last_step = int(global_step)

    def event(self, global_step: int, kind: str, data: dict[str, Any]) -> None:
        """A discrete event (e.g. a curriculum stage change and its rationale)."""
        row = {"global_step": int(global_step), "event": kind, **{k: _plain(v) for k, v in data.items()}}
        self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        data = (json.dumps(row) + "\n").encode()
        fd = self._file.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise MetricsWriteError(f"{self.path}: cannot write metrics: {e.strerror or e} "
                                    "(rows written before are intact)") from None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _start_wandb(run_dir: Path, cfg, job_name: str | None):
    """Offline by default; WANDB_MODE wins; `disabled` (or wandb not installed) skips it."""
    mode = os.environ.get("WANDB_MODE") or cfg.wandb.mode.value
    if mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        print("wandb is not installed (pip install 'townlet[wandb]'); metrics go to metrics.jsonl only")
        return None
    from omegaconf import OmegaConf

    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=cfg.wandb.project, entity=cfg.wandb.entity, group=cfg.wandb.group,
        tags=list(cfg.wandb.tags), name=job_name, mode=mode, dir=str(run_dir),
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), reinit="finish_previous",
    )
