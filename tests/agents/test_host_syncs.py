"""No host syncs on the hot path, proven on the CPU.

A `TorchDispatchMode` sees every aten op. The ops that make the host wait for a device
(reading a value back: `_local_scalar_dense` behind `.item()`/`bool()`/`int()`; shapes that
depend on values: `nonzero`, `masked_select`, boolean indexing, `unique`...) are counted
while the env steps and while the trainer runs between two logging intervals, with every
CPU-only shortcut that reads a flag switched to its GPU branch. The test fails naming the
op and the project lines that called it. (What it cannot see: `.cpu()`/`.numpy()` of a
CPU tensor, which never reach the dispatcher; the project's hot path has none.)
"""

from __future__ import annotations

import traceback
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from townlet_agents.config import compose
from townlet_agents.trainer import Trainer
from townlet_env import TownletVectorEnv

aten = torch.ops.aten
SYNCING = {aten._local_scalar_dense, aten.is_nonzero, aten.equal, aten.allclose, aten.nonzero, aten.argwhere,
           aten.masked_select, aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.bincount,
           aten.repeat_interleave}


def _project_lines() -> tuple[str, ...]:
    frames = [f for f in traceback.extract_stack() if "townlet_" in f.filename and "/tests/" not in f.filename]
    return tuple(f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[-3:])


def _host_counter(func, args) -> bool:
    """torch.optim keeps the step counters of a non-capturable optimiser as 0-dim host
    tensors even for device parameters, so reading one is no device sync."""
    if func is not aten._local_scalar_dense.default or not args or args[0].dim() != 0:
        return False
    return any("torch/optim/" in f.filename for f in traceback.extract_stack()[-12:])


class SyncCounter(TorchDispatchMode):
    """Records (op, calling project lines) for every syncing op while `counting`."""

    def __init__(self):
        super().__init__()
        self.counting = False
        self.hits: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.counting and func.overloadpacket in SYNCING and not _host_counter(func, args):
            if not (func.overloadpacket is aten.repeat_interleave and kwargs.get("output_size") is not None):
                self.hits[(str(func), _project_lines())] += 1
        return func(*args, **kwargs)

    def report(self) -> str:
        return "\n".join(f"{n} x {op} from {' <- '.join(reversed(where))}" for (op, where), n in self.hits.items())


def test_counter_sees_a_flag_read_back():
    """The detector itself: the CPU shortcut of the env reads flags, and is caught."""
    env = TownletVectorEnv(8, "L3_temporal_mechanics", torch_output=True, validate_inputs=False)
    env.reset(seed=0)
    counter = SyncCounter()
    with counter:
        counter.counting = True
        env.step(torch.full((8,), 5))
    assert counter.hits and all(op == "aten._local_scalar_dense.default" for op, _ in counter.hits)
    assert any("backend.py" in line for _, where in counter.hits for line in where)


@pytest.mark.parametrize("landmarks", [False, True])
def test_env_steps_in_torch_mode_never_sync(landmarks):
    n = 64
    env = TownletVectorEnv(n, "L3_temporal_mechanics", torch_output=True, autoreset_mode="SameStep",
                           validate_inputs=False, layout_mode="per_episode", landmarks=landmarks)
    env.ops.read_flags = False  # the GPU branch
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    counter = SyncCounter()
    with counter:
        counter.counting = True
        for _ in range(50):
            env.set_difficulty(torch.rand(n, generator=gen))
            env.step(torch.randint(0, 6, (n,), generator=gen))
    assert not counter.hits, "the env step syncs with the host:\n" + counter.report()


def test_training_iterations_between_logging_intervals_never_sync(tmp_path):
    """From the first action to the end of the loop, with logging and checkpoints (which
    read values by design) excluded; curriculum, RND and prioritized replay on."""
    cfg = compose("+experiment=temporal", "env.num_envs=16", "agent.learning_starts=256", "agent.batch_size=8",
                  "agent.hidden_size=16", "agent.encoder_size=8", "agent.prioritized=true", "exploration.rnd=true",
                  "curriculum.enabled=true", "curriculum.multipliers=[1.0,1.0]", "train.total_env_steps=3200",
                  "train.log_every_env_steps=100000000",
                  "checkpoint.every_env_steps=100000000", "train.progress_bar=false", "wandb.mode=disabled")
    trainer = Trainer(cfg, tmp_path)
    trainer.env.ops.read_flags = False  # the GPU branches: no flag reads, no per-step events
    trainer.replay.read_flags = False
    trainer.events_each_step = False
    trainer.guard.check_every_update = False  # the divergence flag is read at logs and checkpoints only
    counter = SyncCounter()
    act = trainer.actor.act

    def act_and_count(*args, **kwargs):
        counter.counting = True
        return act(*args, **kwargs)

    def uncounted(method):
        def wrapped(*args, **kwargs):
            counter.counting = False
            return method(*args, **kwargs)
        return wrapped

    trainer.actor.act = act_and_count
    trainer.checkpoint = uncounted(trainer.checkpoint)
    trainer._log = uncounted(trainer._log)
    with counter:
        trainer.train()
    assert trainer.learner.updates > 0 and int(trainer.curriculum.filled.sum()) > 0  # it learned; episodes ended
    assert not counter.hits, "the training loop syncs with the host:\n" + counter.report()
