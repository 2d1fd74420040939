"""scripts/plot_held_out.py: picks one trained-from-the-start row per seed by experiment,
commit and overrides, turns their checkpoint curves into fractions of the oracle and draws
a PNG; no matching row is a clean user error."""

from __future__ import annotations

import json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(seed, curve, **extra):
    return {"experiment": "pomdp_random_layout", "seed": seed, "commit": "abc", "overrides": [], "target": 0.95,
            "oracle_mean": 500.0, "checkpoint_curve": [[s, 10 * s, m] for s, m in curve], **extra}


ROWS = [
    _row(0, [(1000, 100.0), (2000, 400.0)]),
    _row(1, [(1000, 200.0), (2000, 500.0)]),
    _row(1, [(1000, 0.0), (2000, 0.0)], commit="old"),                 # another commit
    _row(2, [(1000, 0.0), (2000, 0.0)], overrides=["agent.lr=1"]),     # other overrides
    _row(3, [(1000, 0.0)], resumed_from="/r/step_7.pt"),                # resumed: its curve starts late
    _row(4, [(1000, 0.0)], at_step=1000),                               # read at an earlier step
    {"experiment": "pomdp_random_layout", "summary": True, "seeds": [0, 1]},
]


def test_rows_are_chosen_per_seed_and_read_as_fractions_of_the_oracle(load_script):
    plot = load_script("plot_held_out")
    chosen = plot.select(ROWS, "pomdp_random_layout", "abc", [])
    assert [r["seed"] for r in chosen] == [0, 1]
    assert plot.curves(chosen) == [([1000, 2000], [0.2, 0.8]), ([1000, 2000], [0.4, 1.0])]
    assert [r["seed"] for r in plot.select(ROWS, "pomdp_random_layout", None, [])] == [0, 1]
    assert plot.select(ROWS, "pomdp_random_layout", None, [])[1]["commit"] == "old"  # the last row of a seed
    assert [r["seed"] for r in plot.select(ROWS, "pomdp_random_layout", None, ["agent.lr=1"])] == [2]


def test_draws_a_png_and_prints_the_last_checkpoints(load_script, tmp_path, capsys):
    results = tmp_path / "learning.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "img" / "curve.png"
    plot = load_script("plot_held_out")
    assert plot.main(["pomdp_random_layout", "--results", str(results), "--commit", "abc", "--mark", "1500",
                      "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "seeds [0, 1], last checkpoint mean 0.900, min 0.800" in capsys.readouterr().out


def test_no_matching_rows_is_a_clean_error(load_script, tmp_path, capsys):
    results = tmp_path / "learning.jsonl"
    results.write_text(json.dumps(ROWS[0]) + "\n")
    code = load_script("plot_held_out").main(["temporal", "--results", str(results), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "no temporal rows" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_one_seed_draws_without_a_band(load_script, tmp_path):
    out = tmp_path / "one.png"
    load_script("plot_held_out").plot(ROWS[:1], out)
    assert out.read_bytes()[:8] == PNG_MAGIC
