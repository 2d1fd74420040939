"""CUDA checks (marked `gpu`, skipped without a device): the native env gives the same
trajectories on the GPU as on the CPU, and neither the env step nor the training loop
synchronises with the host per step (torch's sync debug mode turns any sync into an error).
Run on a GPU machine with `pytest -m gpu tests/gpu`."""

from __future__ import annotations

import pytest
import torch

from townlet_agents.config import compose
from townlet_agents.trainer import Trainer
from townlet_env import TownletVectorEnv

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("level", ["L2_partial_observability", "L3_temporal_mechanics"])
def test_gpu_env_matches_the_cpu_env(level):
    n, gen = 256, torch.Generator().manual_seed(0)
    cpu = TownletVectorEnv(n, level, torch_output=True, autoreset_mode="SameStep")
    gpu = TownletVectorEnv(n, level, device="cuda", torch_output=True, autoreset_mode="SameStep")
    a, _ = cpu.reset(seed=3)
    b, _ = gpu.reset(seed=3)
    for _ in range(300):
        actions = torch.randint(0, 6, (n,), generator=gen)
        a, ra, ta, ua, _ = cpu.step(actions)
        b, rb, tb, ub, _ = gpu.step(actions.cuda())
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-5)
        assert torch.equal(tb.cpu(), ta) and torch.equal(ub.cpu(), ua)


def test_env_step_never_syncs():
    env = TownletVectorEnv(4096, "L3_temporal_mechanics", device="cuda", torch_output=True,
                           autoreset_mode="SameStep", validate_inputs=False)
    env.reset(seed=0)
    actions = torch.randint(0, 6, (4096,), device="cuda")
    env.step(actions)  # warm up allocations
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(50):
            env.set_difficulty(torch.rand(4096, device="cuda"))
            env.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_training_loop_never_syncs_between_log_intervals(tmp_path, monkeypatch):
    """Sync debug mode is on from the first action to the end of the loop; logging and
    checkpoints, which read values by design, switch it off while they run."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose("+experiment=temporal", "device=cuda", "env.num_envs=64", "agent.learning_starts=1024",
                  "exploration.rnd=true", "train.total_env_steps=20000", "train.log_every_env_steps=100000000",
                  "checkpoint.every_env_steps=100000000", "train.progress_bar=false")
    trainer = Trainer(cfg, tmp_path)

    def allowed_to_sync(method):
        def wrapped(*args, **kwargs):
            torch.cuda.set_sync_debug_mode("default")
            return method(*args, **kwargs)
        return wrapped

    act = trainer.actor.act

    def act_then_forbid(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        return act(*args, **kwargs)

    trainer.actor.act = act_then_forbid
    trainer.checkpoint = allowed_to_sync(trainer.checkpoint)
    trainer._log = allowed_to_sync(trainer._log)
    try:
        trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.learner.updates > 0
