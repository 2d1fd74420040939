"""Fixtures of the viewer tests: a tiny real training run, and a viewer server running in
this process (a thread), so coverage sees the server's code while a client talks to it."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

# Sized so that some episodes finish (the run logs charts/episodic_length, the curve) and
# more than one periodic checkpoint exists.
TINY_RUN = ["+experiment=temporal", "env.num_envs=8", "agent.seq_len=8", "agent.burn_in=2", "agent.hidden_size=16",
            "agent.encoder_size=8", "agent.batch_size=4", "agent.learning_starts=400", "wandb.mode=disabled",
            "train.progress_bar=false", "train.total_env_steps=1600", "train.log_every_env_steps=200",
            "checkpoint.every_env_steps=400", "checkpoint.keep=2"]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    from townlet_agents.config import compose
    from townlet_agents.trainer import Trainer

    run = tmp_path_factory.mktemp("run")
    Trainer(compose(*TINY_RUN), run).train()
    return run


@pytest.fixture(scope="session")
def checkpoint(run_dir) -> Path:
    return run_dir / "checkpoints" / "latest.pt"


@contextmanager
def live_server(hub):
    """Serve `hub` on a free loopback port from a thread; yields the page's URL."""
    from townlet_agents.watch import listen, make_server

    sock = listen("127.0.0.1", 0)
    server = make_server(hub)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the viewer server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
