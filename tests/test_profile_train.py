"""scripts/profile_train.py: a tiny run times and prints every component."""

from __future__ import annotations


def test_profile_train_prints_every_component(load_script, capsys):
    profile = load_script("profile_train")
    result = profile.main(["--steps", "256", "--repeats", "1", "env.num_envs=8", "agent.learning_starts=128",
                           "agent.batch_size=4", "agent.replay_capacity=64", "checkpoint.every_env_steps=100000"])
    out = capsys.readouterr().out
    for row in profile.ROWS:
        assert f"\n{row} " in out
        assert result["ms"][row] == result["ms"][row]  # a number, not NaN
    assert "env-steps/s" in out
    # the rows are exclusive times: they add up to the iteration (the last row is the rest)
    assert abs(sum(result["ms"].values()) - result["total"]) < 1e-6 * max(1.0, result["total"])
    # the learner's module functions are restored after the run
    from townlet_agents import learner
    assert learner.unroll.__name__ == "unroll"
