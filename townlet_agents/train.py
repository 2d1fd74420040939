"""Entry point: `python -m townlet_agents.train [+experiment=NAME] [key=value ...]`.

Hydra composes conf/config.yaml over the dataclass schema in config.py (unknown keys and
wrong types fail at composition); values are range-checked before training starts.
Sweeps: `python -m townlet_agents.train -m seed=0,1 agent.lr=1e-3,3e-4`.
"""

from __future__ import annotations

import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig

from townlet_env import PackError

from .checkpoint import CheckpointError
from .cli_errors import user_error
from .config import CONF_DIR, ConfigError, register_configs
from .run_errors import RunError
from .stopping import GracefulStop, StoppedBySignal

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg) -> float:
    from pathlib import Path

    from .trainer import Trainer

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    job_name = None
    if hc.mode is not None and hc.mode.name == "MULTIRUN":
        if cfg.wandb.group is None:  # group a sweep's runs together in wandb
            cfg.wandb.group = Path(hc.sweep.dir).name
        job_name = f"{cfg.wandb.group}-{hc.job.num}"
    stop = GracefulStop()
    try:
        with stop:
            trainer = Trainer(cfg, run_dir, job_name)
            started = time.time()
            result = trainer.train(stop)
    except (ConfigError, CheckpointError, PackError, RunError) as e:
        user_error(e)
    except StoppedBySignal as e:  # a clean stop: checkpoint written, metrics flushed
        print(e, file=sys.stderr)
        stop.hand_over()  # a scheduler's own handler (submitit: requeue, exit) runs now
        raise SystemExit(e.exit_status) from None
    if cfg.train.summary_episodes > 0:
        from .summary import summarize

        print(summarize(trainer, (time.time() - started) / 60).text(), flush=True)
    if job_name is not None and "wandb" in sys.modules:
        # A sweep job: stop wandb's service now. Launchers that run jobs in worker processes
        # (ray, submitit) end them without running wandb's own exit hook cleanly.
        sys.modules["wandb"].teardown()
    return result


if __name__ == "__main__":
    sys.exit(main())
