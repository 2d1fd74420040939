"""The package as a user installs it: build the wheel, install it (not editable) into a
fresh virtual environment, and train and evaluate from a folder outside the checkout
through the console scripts (TRAPS 34: configs that only worked from the checkout).

The fresh environment borrows the dependencies (torch, hydra, gymnasium, ...) of the
interpreter running the tests through a path file, so nothing is downloaded; only the
distribution's own files come from the wheel. Folders named in a path file are not
scanned for path files of their own, so an editable install of Townlet in the borrowed
environment stays invisible to the fresh one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\nexit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _setuptools_major() -> int:
    if importlib.util.find_spec("setuptools") is None:
        return 0
    import setuptools

    return int(setuptools.__version__.split(".")[0])


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the built wheel; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", REPO]
    if _setuptools_major() >= 68:  # pyproject.toml's build requirement: use it, no download
        build.insert(4, "--no-build-isolation")
    _run(build, cwd=root)
    wheel = next((root / "dist").glob("townlet-*.whl"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    own_site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(own_site.stdout.strip()) / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], cwd=root)
    return env_dir / "bin"


def test_wheel_ships_the_configs_and_trains_from_any_folder(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([installed / "python", "-c",
                  "import townlet_agents.config as c; print(c.__file__); print(c.CONF_DIR)"], cwd=work)
    module_file, conf = where.stdout.split()
    venv_dir = installed.parent
    assert Path(module_file).is_relative_to(venv_dir), f"imported {module_file}, not the installed wheel"
    assert Path(conf) == Path(module_file).parent / "conf" and (Path(conf) / "experiment" / "pomdp.yaml").is_file()

    train = _run([installed / "townlet-train", "+experiment=minimal", "env.num_envs=4", "train.total_env_steps=2000",
                  "agent.learning_starts=500", "agent.hidden_size=16", "train.progress_bar=false",
                  "train.summary_episodes=5", "checkpoint.every_env_steps=1000"], cwd=work)
    assert "Greedy survival over 5 held-out towns" in train.stdout
    runs = list((work / "outputs").glob("*/*/checkpoints/latest.pt"))
    assert len(runs) == 1, "the run folder goes under the current folder"
    assert (runs[0].parents[1] / "wandb").is_dir()

    evaluated = _run([installed / "townlet-evaluate", f"checkpoint={runs[0]}", "episodes=3"], cwd=work)
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert result["level"] == "L0_minimal" and result["episodes"] == 3

    module = _run([installed / "python", "-m", "townlet_agents.evaluate", "policy=oracle", "episodes=2",
                   "env.level=L0_5_dual_resource"], cwd=work)
    assert json.loads(module.stdout.strip().splitlines()[-1])["mean_survival"] == 500.0


def test_every_package_of_the_checkout_is_in_the_wheel_list():
    """pyproject lists packages by hand (to map conf/); a new subpackage must be added there."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for top in ("townlet_env", "townlet_agents")
             for p in (REPO / top).rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
