"""Fuzzed command lines (hypothesis): random overrides go through the trainer's real
command-line path in process (Hydra's argument parsing and composition, its error
reporting, `check_config`, device and seed set-up, everything the trainer does before
it builds the environment). Every one either reaches the environment or exits with a
non-zero status and a message, never a Python traceback."""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import string
import sys
from dataclasses import fields, is_dataclass
from typing import get_type_hints

import hydra._internal.utils as hydra_utils
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import townlet_agents.trainer as trainer_mod
from townlet_agents.config import Config

#: Examples per property; TOWNLET_FUZZ_EXAMPLES=2000 for a deep run (about 0.4 s each).
EXAMPLES = int(os.environ.get("TOWNLET_FUZZ_EXAMPLES", "40"))


class Reached(BaseException):
    """Raised where the trainer would build its environment: the config path is done."""


def _leaf_keys(schema=Config, prefix="") -> list[str]:
    hints, keys = get_type_hints(schema), []
    for f in fields(schema):
        if is_dataclass(hints[f.name]):
            keys += _leaf_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


KEYS = _leaf_keys()
GROUPS = sorted({k.split(".")[0] for k in KEYS if "." in k})
token = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=12)
value = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["null", "true", "false", "''", "[]", "[1,2]", "{a: 1}", "auto", "cpu", "cuda", "cuda:7",
                     "meta", "L0_minimal", "L9", "survival", "baseline_relative", "per_episode", "recurrent",
                     "cells", "huber", "offline", "${seed}", "${nope}", "${agent.lr}", "???", "'${env}'", "1e39", "-0.0", "nan", "inf", "0x10",
                     "'a b'", "[0.2, 0.5]", "[-1]", "/no/such/checkpoint.pt"]),
    token,
    st.text(max_size=8),
)
key = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + "x"),
                st.builds(lambda g, t: f"{g}.{t}", st.sampled_from(GROUPS), token), token)
override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", key, value),
    st.builds(lambda p, k, v: f"{p}{k}={v}", st.sampled_from(["+", "++", "~"]), key, value),
    st.builds(lambda k: f"~{k}", key),
    st.sampled_from(["+experiment=pomdp", "+experiment=minimal", "+experiment=nope", "experiment=pomdp"]),
    st.text(max_size=20),
)


def run_cli(argv: list[str], run_dir) -> tuple[str, object]:
    """Hydra's real entry point with these arguments; returns (stderr, outcome), where
    outcome is "reached", an exit status, or "returned: <stdout>" (`--help`, `--info`)."""
    err, out = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = ["townlet_agents.train", *argv, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null",
                "hydra/job_logging=none", "hydra/hydra_logging=none"]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            runpy.run_module("townlet_agents.train", run_name="__main__")  # as `python -m` runs it
        outcome: object = f"returned: {out.getvalue()[:200]}"
    except Reached:
        outcome = "reached"
    except SystemExit as e:
        outcome = e.code if e.code else f"returned: {out.getvalue()[:200]}"
    finally:
        sys.argv = old_argv
    return err.getvalue(), outcome


@pytest.fixture
def no_env(monkeypatch):
    def reached(*args, **kwargs):
        raise Reached()

    monkeypatch.setattr(trainer_mod, "make_env", reached)
    # Hypothesis traces the code when it explains a failure; Hydra takes a tracer for a
    # debugger and then re-raises instead of reporting. Keep the CLI's behaviour.
    monkeypatch.setattr(hydra_utils, "is_under_debugger", lambda: False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")


def check(stderr: str, outcome: object) -> None:
    assert "Traceback" not in stderr, stderr
    if isinstance(outcome, str) and outcome.startswith("returned: "):
        assert outcome.strip() != "returned:", "a command that neither trains nor refuses must print something"
    elif outcome != "reached":
        assert isinstance(outcome, int) and outcome != 0, (outcome, stderr)
        assert stderr.strip(), "a refusal must say why"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(override, min_size=1, max_size=4))
def test_random_overrides_never_end_in_a_traceback(no_env, tmp_path, overrides):
    check(*run_cli(overrides, tmp_path))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), value), min_size=1, max_size=3))
def test_random_values_for_known_keys_reach_the_env_or_are_refused_in_one_line(no_env, tmp_path, overrides):
    """Known keys with random values: refusals come from composition (Hydra's own
    message) or from check_config (`error: key: problem`, one line, exit 2)."""
    stderr, outcome = run_cli(overrides, tmp_path)
    check(stderr, outcome)
    if outcome == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr


def test_the_harness_reaches_the_env_with_no_overrides_and_refuses_a_bad_key(no_env, tmp_path):
    assert run_cli([], tmp_path)[1] == "reached"
    stderr, outcome = run_cli(["agent.lrr=1"], tmp_path)
    assert outcome == 1 and "lrr" in stderr


@pytest.mark.parametrize("argv", [
    ["seed=-1"], ["seed=1180591620717411303424"], ["train.torch_threads=100000000"], ["~seed"],
    ["env.layout_seed=1180591620717411303424"], ["seed=${seed}"], ["agent.lr=${nope}"], ["seed=???"],
])
def test_found_by_fuzzing(no_env, tmp_path, argv):
    """Examples the fuzzing above turned up (each was a traceback or a late failure),
    kept as plain cases: now one line from check_config, exit 2."""
    stderr, outcome = run_cli(argv, tmp_path)
    check(stderr, outcome)
    assert outcome == 2 and len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: "), stderr
