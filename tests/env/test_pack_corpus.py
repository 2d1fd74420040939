"""A corpus of broken world packs (tests/data/broken_packs): each fails to load with the
file and the dotted key at fault named (the line, for TOML syntax), through `load_pack`
and through every env constructor. tests/test_cli_reliability.py runs the same corpus
through the trainer's command line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import gymnasium as gym
import pytest

from townlet_env import PackError, TownletEnv, TownletVectorEnv, load_pack

CORPUS = Path(__file__).resolve().parents[1] / "data" / "broken_packs"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())


def test_every_corpus_file_has_an_expectation():
    packs = {p.stem for p in CORPUS.glob("*.toml")} - {"expected"}
    assert packs == set(EXPECTED)


def _check(message: str, name: str) -> None:
    key, problem = EXPECTED[name]["key"], EXPECTED[name]["problem"]
    assert ".toml" in message.split(":")[0], message  # the message starts with the file at fault
    assert key in message and problem in message, message
    assert "\n" not in message, message  # one line


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_pack_fails_naming_file_and_key(name):
    path = CORPUS / f"{name}.toml"
    with pytest.raises(PackError) as e:
        load_pack(str(path))
    _check(str(e.value), name)
    file_at_fault = str(e.value).split(": ")[0]
    assert Path(file_at_fault).parent == CORPUS, "the file named is the corpus file (or its base beside it)"


@pytest.mark.parametrize("make", [
    lambda p: TownletEnv(level=p),
    lambda p: TownletVectorEnv(2, level=p),
    lambda p: gym.make("Townlet-v0", level=p),
    lambda p: gym.make_vec("Townlet-v0", num_envs=2, level=p),
], ids=["single", "vector", "gym.make", "gym.make_vec"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_env_constructor_reports_the_same_error(name, make):
    with pytest.raises(PackError) as e:
        make(str(CORPUS / f"{name}.toml"))
    _check(str(e.value), name)


def test_a_chain_of_bases_merges_in_order(tmp_path):
    """Bases may have bases; each file overrides the one below it."""
    shipped = Path(load_pack.__globals__["pack_path"]("L0_minimal"))
    (tmp_path / "middle.toml").write_text('base = "town.toml"\n[meters]\nenergy = { initial = 0.9, depletion = 0.004 }\n')
    level = shipped.read_text().replace('base = "town.toml"', 'base = "middle.toml"')
    (tmp_path / "top.toml").write_text(level)
    pack = load_pack(str(tmp_path / "top.toml"))
    assert pack.initial["energy"] == 0.9 and pack.depletion["energy"] == 0.004
    assert pack.depletion["hygiene"] == load_pack("L0_minimal").depletion["hygiene"]  # from town.toml
