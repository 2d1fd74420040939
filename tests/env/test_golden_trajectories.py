"""Recorded env trajectories: seeded random play on every level, hashed, must match the
golden file. A change meant to alter the world regenerates the file with
`python scripts/fingerprint.py golden` (and says so); any other change must leave it as is."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _fingerprint():
    spec = importlib.util.spec_from_file_location("fingerprint", ROOT / "scripts" / "fingerprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_env_trajectories_match_the_golden_file():
    torch.set_num_threads(1)
    fp = _fingerprint()
    golden = json.loads(fp.GOLDEN.read_text())
    assert fp.golden_records() == golden, \
        "regenerate with `python scripts/fingerprint.py golden` only if the world changed on purpose"
