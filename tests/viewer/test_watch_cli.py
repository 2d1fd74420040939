"""`python -m townlet_agents.watch`: arguments, one-line refusals before the server starts,
and the real command serving the page and frames on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from townlet_agents import watch
from townlet_agents.checkpoint import CheckpointError
from townlet_agents.config import ConfigError
from townlet_agents.viewer.sim import WatchError

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "townlet_agents.watch", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *named: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in named:
        assert text in lines[0], lines[0]
    assert "Townlet viewer: http" not in proc.stdout  # refused before serving


def test_arguments_are_key_value_over_the_defaults():
    cfg = watch.parse_args(["towns=4", "env.level=L0_minimal", "port=0", "fps=30"])
    assert (cfg.towns, cfg.env.level, cfg.port, cfg.fps, cfg.host) == (4, "L0_minimal", 0, 30.0, "127.0.0.1")
    assert cfg.policy is None and cfg.checkpoint is None and cfg.run is None


@pytest.mark.parametrize("args, named", [
    (["townz=4"], "townz"),
    (["towns=many"], "towns"),
    (["env.lvl=L0"], "env.lvl"),
    (["towns"], "expected key=value"),
])
def test_bad_arguments_name_the_key(args, named):
    with pytest.raises(ConfigError, match=named):
        watch.parse_args(args)


@pytest.mark.parametrize("args, named", [
    (["policy=smart"], "policy: 'smart' is not one of checkpoint, oracle, random"),
    (["towns=0"], "towns: must be >= 1"),
    (["port=70000"], "port: must be in 0..65535"),
    (["fps=0"], "fps: must be > 0"),
    (["poll_seconds=0"], "poll_seconds"),
    (["torch_threads=0"], "torch_threads"),
    (["checkpoint=a.pt", "run=b"], "give one of them"),
    (["policy=oracle", "checkpoint=a.pt"], "plays without a checkpoint"),
    (["policy=checkpoint"], "needs checkpoint=PATH"),
    (["checkpoint=/no/such.pt"], "no such checkpoint file"),
    (["env.level=L9"], "unknown level 'L9'"),
    (["device=tpu"], "device"),
])
def test_bad_values_are_refused_before_serving(args, named):
    with pytest.raises((ConfigError, CheckpointError, WatchError), match=named):
        watch.build(watch.parse_args(args))


def test_policies_and_levels_are_chosen_from_the_arguments(checkpoint):
    assert watch.build(watch.parse_args(["towns=2"])).sim.policy.label == "oracle"
    hub = watch.build(watch.parse_args(["towns=2", "policy=random", "env.level=L0_minimal"]))
    assert hub.sim.policy.label == "random" and hub.sim.meta()["level"] == "L0_minimal"
    hub = watch.build(watch.parse_args(["towns=3", f"checkpoint={checkpoint}"]))
    assert hub.sim.meta()["level"] == "L3_temporal_mechanics"  # the checkpoint's own level
    assert hub.sim.q is not None and hub.follower is None and hub.sim.env.num_envs == 3
    with pytest.raises(CheckpointError, match="different observation layout"):
        watch.build(watch.parse_args([f"checkpoint={checkpoint}", "env.level=L0_minimal"]))


def test_a_run_with_an_unreadable_newest_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_000000000100.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="step_000000000100.pt"):
        watch.build(watch.parse_args([f"run={tmp_path}"]))


def test_a_port_in_use_or_a_bad_host_is_one_line(monkeypatch):
    sock = watch.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"port: 127.0.0.1:{port} is already in use"):
            watch.listen("127.0.0.1", port)
    finally:
        sock.close()
    with pytest.raises(ConfigError, match="host: cannot listen"):
        watch.listen("192.0.2.1", 0)  # TEST-NET: no interface has it

    def unresolvable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    with pytest.raises(ConfigError, match="host: cannot resolve 'nowhere'"):
        watch.listen("nowhere", 0)


def test_help_and_missing_packages(capsys, monkeypatch):
    assert watch.main(["--help"]) == 0
    assert "townlet_agents.watch" in capsys.readouterr().out
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name))
    with pytest.raises(SystemExit) as stop:
        watch.main(["towns=2"])
    assert stop.value.code == 2 and "pip install 'townlet[viewer]'" in capsys.readouterr().err


def test_main_serves_until_stopped(monkeypatch, capsys):
    made = []
    real = watch.make_server

    def recording(hub):
        made.append(real(hub))
        return made[-1]

    monkeypatch.setattr(watch, "make_server", recording)
    thread = threading.Thread(target=watch.main, args=(["towns=2", "port=0", "fps=30"],), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (made and made[0].started):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    url = capsys.readouterr().out.split("Townlet viewer: ")[1].split()[0]
    assert url.startswith("http://127.0.0.1:") and "Townlet viewer" in urllib.request.urlopen(url).read().decode()
    made[0].should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


# --- the real command -------------------------------------------------------------------------

def test_the_command_refuses_a_missing_checkpoint_in_one_line():
    assert_one_line_error(cli("checkpoint=/no/such/file.pt"), "/no/such/file.pt", "no such checkpoint file")


def test_the_command_refuses_an_unknown_level_in_one_line():
    assert_one_line_error(cli("env.level=L7_flying"), "unknown level 'L7_flying'")


def test_the_command_refuses_a_port_in_use_in_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert_one_line_error(cli(f"port={port}", "towns=2"), f"{port} is already in use")


def test_the_command_prints_its_url_and_streams_frames():
    import websockets

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "townlet_agents.watch", "port=0", "towns=3", "fps=30"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Townlet viewer: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        assert "viewer.js" in urllib.request.urlopen(url, timeout=10).read().decode()

        async def frames():
            async with websockets.connect(url.replace("http", "ws") + "ws") as ws:
                got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
            return got

        got = asyncio.run(frames())
        assert got[0]["type"] == "meta" and got[0]["towns"] == 3
        assert [m["type"] for m in got[1:]] == ["frame"] * 3 and got[-1]["tick"] > got[1]["tick"]
        proc.send_signal(signal.SIGINT)  # Ctrl+C: a clean stop
        assert proc.wait(timeout=20) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_pyproject_installs_the_command_and_ships_the_page():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["townlet-watch"] == "townlet_agents.watch:main"
    setuptools = project["tool"]["setuptools"]
    assert "townlet_agents.viewer" in setuptools["packages"]
    assert "static/*" in setuptools["package-data"]["townlet_agents.viewer"]
    extras = project["project"]["optional-dependencies"]
    for dep in extras["viewer"]:
        assert dep in extras["dev"]
    assert any(d.startswith("playwright") for d in extras["dev"])
