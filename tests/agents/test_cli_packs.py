"""The broken-pack corpus (tests/data/broken_packs) through the trainer's command line:
each ends in one line naming the file and the key, exit 2, no traceback.

The level name `L0_minimal` is pointed at each broken file (by patching where packs are
looked up), and the real entry point runs in process as `python -m townlet_agents.train
+experiment=minimal` would."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from test_cli_fuzz import run_cli

import townlet_env.pack as pack_mod

CORPUS = Path(__file__).resolve().parents[1] / "data" / "broken_packs"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_broken_pack_through_the_cli_is_one_line(tmp_path, monkeypatch, name):
    real = pack_mod.pack_path
    broken = CORPUS / f"{name}.toml"
    monkeypatch.setattr(pack_mod, "pack_path", lambda level: broken if level == "L0_minimal" else real(level))
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    stderr, outcome = run_cli(["+experiment=minimal", "env.num_envs=2", "train.progress_bar=false"], tmp_path)
    lines = stderr.strip().splitlines()
    assert outcome == 2 and len(lines) == 1, stderr
    key, problem = EXPECTED[name]["key"], EXPECTED[name]["problem"]
    assert lines[0].startswith("error: ") and f"{CORPUS}/" in lines[0], stderr  # the file at fault
    assert key in lines[0] and problem in lines[0], stderr
    assert not (tmp_path / "checkpoints").exists()
