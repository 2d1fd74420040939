"""Learning smoke test (slow): the `minimal` experiment, trained for one minute in process,
must beat always-WAIT (164 steps on L0) by a wide margin under greedy evaluation at full
difficulty. Not a benchmark (scripts/bench_learning.py is): it catches a learner that
silently stopped learning, as the one before `agent.reward_scale` had (greedy = WAIT).

Run with `pytest -m slow tests/agents/test_learning_smoke.py` (63 s measured on 2 cores).
"""

from __future__ import annotations

import pytest

from townlet_agents.config import compose
from townlet_agents.trainer import Trainer

ALWAYS_WAIT_L0 = 164


@pytest.mark.slow
def test_minimal_learns_to_use_the_bed(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose("+experiment=minimal", "seed=0", "train.max_wall_minutes=1.0", "train.total_env_steps=100000000",
                  "train.progress_bar=false", "train.final_eval_episodes=100")
    survival = Trainer(cfg, tmp_path).train()
    assert survival > ALWAYS_WAIT_L0 + 60, f"greedy survival {survival:.1f} is not far above always-WAIT"
