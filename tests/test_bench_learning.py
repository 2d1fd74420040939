"""scripts/bench_learning.py: the summary statistics a README row is built from."""

from __future__ import annotations

import json

import pytest


def test_interquartile_mean_drops_the_lowest_and_highest_quarter(load_script):
    iqm = load_script("bench_learning").interquartile_mean
    # 5 seeds: the lowest (0.10) and the highest (1.00) go; (0.90 + 0.95 + 0.97) / 3
    assert iqm([0.95, 0.10, 1.00, 0.90, 0.97]) == pytest.approx(0.94)
    # 8 values: two go from each end; (3 + 4 + 5 + 6) / 4
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    assert iqm([0.5, 0.7]) == pytest.approx(0.6)  # too few to trim: the plain mean


def _run_dir(tmp_path, enabled, rows):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        f"curriculum:\n  enabled: {str(enabled).lower()}\n  multipliers: [0.2, 0.5, 1.0, 1.0]\n")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path)


def _stages(step, fractions):
    return {"global_step": step, "curriculum/stage_mean": 0.0,
            **{f"curriculum/stage_{k}": f for k, f in enumerate(fractions)}}


def _change(step, frm, to):
    return {"global_step": step, "event": "curriculum_stage_change", "from_stage": frm, "to_stage": to,
            "reason": "advance" if to > frm else "retreat"}


def test_curriculum_summary_counts_agents_at_the_largest_multiplier(load_script, tmp_path):
    summary = load_script("bench_learning").curriculum_summary
    rows = [_stages(100, [1.0, 0.0, 0.0, 0.0]), _change(150, 0, 1), _change(180, 1, 2), _change(190, 2, 1),
            _change(195, 1, 2), _change(199, 2, 3),
            _stages(200, [0.25, 0.25, 0.25, 0.25]),  # stages 2 and 3 both have multiplier 1.0
            _stages(300, [0.5, 0.25, 0.25, 0.0])]
    assert summary(_run_dir(tmp_path, True, rows)) == {
        "curriculum_at_full_end": 0.25, "curriculum_at_full_peak": 0.5, "curriculum_first_full_env_steps": 180,
        "curriculum_advances": 4, "curriculum_retreats": 1}


def test_curriculum_summary_is_empty_without_a_curriculum(load_script, tmp_path):
    summary = load_script("bench_learning").curriculum_summary
    assert summary(_run_dir(tmp_path, False, [{"global_step": 10}])) == {}


def test_an_earlier_run_keeps_the_overrides_it_was_trained_with(load_script, tmp_path):
    """A row of `--runs` says how the run was trained (a resume and a longer budget here),
    without the settings that only change what the run writes."""
    run = load_script("bench_learning").existing_run
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 4\n")
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        "- +experiment=pomdp\n- seed=4\n- resume=/r/step_7.pt\n- train.total_env_steps=12000000\n"
        "- checkpoint.every_env_steps=1000000\n- wandb.mode=disabled\n- agent.distress=1.0\n")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"global_step": 12000000}) + "\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.pt").write_bytes(b"")
    out = run(str(tmp_path))
    assert (out["seed"], out["env_steps"]) == (4, 12000000)
    assert out["overrides"] == ["resume=/r/step_7.pt", "train.total_env_steps=12000000", "agent.distress=1.0"]
    assert out["resumed_from"] == "/r/step_7.pt"  # its seconds count from the resume
    (tmp_path / ".hydra" / "overrides.yaml").unlink()  # a run folder from before Hydra wrote them
    assert run(str(tmp_path))["overrides"] == [] and run(str(tmp_path))["resumed_from"] is None


def test_time_to_oracle_is_the_first_checkpoint_at_the_fraction_unless_resumed(load_script, tmp_path):
    bench = load_script("bench_learning")
    (tmp_path / "checkpoints").mkdir()
    for step in (1000, 2000, 3000):
        (tmp_path / "checkpoints" / f"step_{step:012d}.pt").write_bytes(b"")
    scores = {1000: 300.0, 2000: 460.0, 3000: 480.0}  # 0.9 of an oracle at 500 is 450
    bench.evaluate = lambda policy, episodes, overrides: {
        "mean_survival": scores[int(overrides[0].split("step_")[1].split(".")[0])]}
    run = {"run_dir": str(tmp_path), "started": 0.0, "env_steps": 3000}
    fresh = bench.time_to_oracle(run, 4, 500.0, every=1000)
    assert [p[0] for p in fresh["checkpoint_curve"]] == [1000, 2000, 3000]
    assert fresh["to_oracle_env_steps"] == 2000
    resumed = bench.time_to_oracle({**run, "resumed_from": "/r/step_7.pt"}, 4, 500.0, every=1000)
    assert resumed["checkpoint_curve"] == fresh["checkpoint_curve"]  # the curve is still read
    assert resumed["to_oracle_env_steps"] is None and resumed["to_oracle_seconds"] is None
    earlier = bench.time_to_oracle({**run, "env_steps": 2000}, 4, 500.0, every=1000)  # a run read --at-step
    assert [p[0] for p in earlier["checkpoint_curve"]] == [1000, 2000] and earlier["to_oracle_env_steps"] == 2000


def test_an_earlier_run_is_read_at_the_checkpoint_of_a_given_step(load_script, tmp_path):
    run = load_script("bench_learning").existing_run
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 2\n")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"global_step": 17000064}) + "\n")
    (tmp_path / "checkpoints").mkdir()
    for name in ("step_000012000000.pt", "step_000017000064.pt", "latest.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    newest = run(str(tmp_path))
    assert newest["env_steps"] == 17000064 and newest["checkpoint"].endswith("latest.pt")
    earlier = run(str(tmp_path), at_step=12000000)
    assert earlier["env_steps"] == earlier["at_step"] == 12000000
    assert earlier["checkpoint"].endswith("step_000012000000.pt")
    with pytest.raises(SystemExit, match=r"no checkpoint of that step \(it has: 12,000,000, 17,000,064\)"):
        run(str(tmp_path), at_step=11000000)
