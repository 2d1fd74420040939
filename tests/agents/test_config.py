"""The trainer's Hydra configuration: composition per experiment, unknown keys and wrong
types refused naming the key, value ranges checked before training, devices."""

from __future__ import annotations


import pytest
import torch
from hydra.errors import ConfigCompositionException

from townlet_agents.config import (
    ConfigError,
    LayoutMode,
    NetworkKind,
    check_config,
    compose,
    resolve_device,
)

def compose_config(*overrides: str):
    return compose(*overrides)


# ------------------------------------------------------------------------- composition

EXPERIMENTS = {
    # experiment: (level, network, seq_len, burn_in)
    "minimal": ("L0_minimal", NetworkKind.feedforward, 16, 0),
    "full_obs": ("L1_full_observability", NetworkKind.feedforward, 16, 0),
    "pomdp": ("L2_partial_observability", NetworkKind.recurrent, 16, 4),
    "pomdp_random_layout": ("L2_partial_observability", NetworkKind.recurrent, 16, 4),
    "temporal": ("L3_temporal_mechanics", NetworkKind.recurrent, 16, 4),
    "temporal_random_layout": ("L3_temporal_mechanics", NetworkKind.recurrent, 16, 4),
}


def test_the_table_above_lists_every_shipped_experiment():
    from townlet_agents.config import CONF_DIR

    assert set(EXPERIMENTS) == {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_each_experiment_composes_with_its_level_and_network(experiment):
    level, network, seq_len, burn_in = EXPERIMENTS[experiment]
    cfg = compose_config(f"+experiment={experiment}")
    assert cfg.env.level == level
    assert cfg.agent.network == network
    assert (cfg.agent.seq_len, cfg.agent.burn_in) == (seq_len, burn_in)
    check_config(cfg)  # every shipped experiment is valid as it stands


@pytest.mark.parametrize("experiment, fixed_town", [("pomdp_random_layout", "pomdp"),
                                                 ("temporal_random_layout", "temporal")])
def test_random_layout_is_its_fixed_town_experiment_with_new_towns_lowered_starts_and_its_budget(experiment, fixed_town):
    random_layout, fixed = compose_config(f"+experiment={experiment}"), compose_config(f"+experiment={fixed_town}")
    assert random_layout.env.layout_mode == LayoutMode.per_episode
    assert random_layout.env.start_spread == 0.9 and fixed.env.start_spread == 0.0
    random_layout.env.layout_mode, random_layout.env.start_spread = fixed.env.layout_mode, fixed.env.start_spread
    # a random-layout experiment trains longer than its fixed town (the long lives need it)
    assert random_layout.train.total_env_steps > fixed.train.total_env_steps
    random_layout.train.total_env_steps = fixed.train.total_env_steps
    assert random_layout == fixed  # everything else inherited, so the two results compare


def test_defaults_without_experiment_are_the_schema_defaults():
    cfg = compose_config()
    assert cfg.env.level == "L0_5_dual_resource"  # the README's main command: a short run
    assert cfg.agent.network == NetworkKind.recurrent
    assert cfg.env.num_envs == 128
    assert cfg.wandb.mode.value == "offline"
    # the tuned learning settings live in the base config, not in each experiment
    a = cfg.agent
    assert (a.gamma, a.n_step, a.replay_ratio, a.target_update_every, a.average_decay) == (0.995, 10, 4.0, 100, 0.999)
    assert cfg.curriculum.enabled is False


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_experiment_names_its_level_and_budget(experiment):
    """The base config's level and budget are the default run's; an experiment that relied
    on them would change whenever the default run does."""
    base, cfg = compose_config(), compose_config(f"+experiment={experiment}")
    assert cfg.env.level != base.env.level
    assert cfg.train.total_env_steps != base.train.total_env_steps


def test_command_line_values_override_the_experiment():
    cfg = compose_config("+experiment=temporal", "agent.lr=3e-4", "env.num_envs=256", "agent.network=feedforward")
    assert cfg.agent.lr == pytest.approx(3e-4)
    assert cfg.env.num_envs == 256
    assert cfg.agent.network == NetworkKind.feedforward
    assert cfg.env.level == "L3_temporal_mechanics"


# --------------------------------------------------------------------- unknown keys

def test_misspelt_key_fails_at_composition_naming_it():
    with pytest.raises(ConfigCompositionException, match=r"agent\.lrr"):
        compose_config("+experiment=pomdp", "agent.lrr=1")


def test_key_under_the_wrong_section_fails_at_composition():
    # A setting under the wrong section must not be silently ignored.
    with pytest.raises(ConfigCompositionException, match=r"env\.lr"):
        compose_config("env.lr=1e-3")


def test_appended_unknown_key_is_refused_naming_it():
    # Hydra lets `+key=value` insert a key into a structured config, so composition alone
    # cannot catch it; check_config (run before any training) refuses it by name.
    try:
        cfg = compose_config("+experiment=pomdp", "+agent.foo=1")
    except ConfigCompositionException as e:  # a future Hydra may refuse it already
        assert "agent.foo" in str(e)
        return
    with pytest.raises(ConfigError, match=r"agent\.foo"):
        check_config(cfg)


def test_appended_unknown_top_level_key_is_refused():
    cfg = compose_config("+lr=1e-3")
    with pytest.raises(ConfigError, match=r"^lr: unknown key"):
        check_config(cfg)


# -------------------------------------------------------------------------- wrong types

@pytest.mark.parametrize("override, key", [
    ("agent.lr=abc", "agent.lr"),
    ("env.num_envs=1.5", "env.num_envs"),
    ("agent.network=transformer", "agent.network"),
    ("agent.prioritized=maybe", "agent.prioritized"),
])
def test_wrong_type_fails_at_composition_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("+experiment=pomdp", override)
    message = str(info.value) + str(info.value.__cause__ or "")
    assert key in message


# ----------------------------------------------------------------------- value ranges

@pytest.mark.parametrize("override, key", [
    ("env.level=L9_bogus", "env.level"),
    ("env.num_envs=0", "env.num_envs"),
    ("agent.gamma=0", "agent.gamma"),
    ("agent.gamma=1.5", "agent.gamma"),
    ("agent.epsilon_start=1.5", "agent.epsilon_start"),
    ("agent.epsilon_end=-0.1", "agent.epsilon_end"),
    ("agent.epsilon_hold=1.0", "agent.epsilon_hold"),  # zeta needs an exponent above 1
    ("agent.epsilon_hold=-2", "agent.epsilon_hold"),
    ("agent.burn_in=16", "agent.burn_in"),      # pomdp seq_len is 16: burn_in must be < 16
    ("agent.burn_in=20", "agent.burn_in"),
    ("agent.seq_len=15", "agent.seq_len"),      # odd: sequences overlap by half
    ("agent.lr=0", "agent.lr"),
    ("agent.replay_ratio=0", "agent.replay_ratio"),
    ("agent.tau=2", "agent.tau"),
    ("agent.learning_starts=-1", "agent.learning_starts"),
    ("curriculum.multipliers=[0.5,0]", "curriculum.multipliers"),
    ("curriculum.window=1", "curriculum.window"),
    ("curriculum.advance_survival=0.2", "curriculum.retreat_survival"),
    ("exploration.anneal_decay=0", "exploration.anneal_decay"),
    ("train.total_env_steps=0", "train.total_env_steps"),
    ("train.summary_episodes=-1", "train.summary_episodes"),
    ("env.max_steps=0", "env.max_steps"),
    ("env.start_spread=1.5", "env.start_spread"),
    ("env.start_spread=-0.1", "env.start_spread"),
    ("train.final_eval_max_steps=0", "train.final_eval_max_steps"),
])
def test_out_of_range_values_are_refused_naming_the_key(override, key):
    cfg = compose_config("+experiment=pomdp", override)  # types are fine: composition passes
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value).startswith(f"{key}:"), str(info.value)


def test_boundary_values_are_accepted():
    cfg = compose_config("+experiment=pomdp", "agent.gamma=1.0", "agent.epsilon_start=1.0", "agent.epsilon_end=0.0",
                         "agent.burn_in=15", "agent.seq_len=16", "env.num_envs=1", "agent.tau=1.0")
    check_config(cfg)


# ---------------------------------------------------------------------------- devices

def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=r"^device:.*no CUDA device"):
            resolve_device(spec)


@pytest.mark.parametrize("spec", ["tpu", "bogus", "meta"])
def test_unknown_or_unsupported_devices_are_refused(spec):
    with pytest.raises(ConfigError, match=rf"^device: .*{spec}"):
        resolve_device(spec)


def test_auto_and_cpu_resolve():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_device_in_config_is_refused_before_training():
    cfg = compose_config("+experiment=minimal", "device=tpu")
    with pytest.raises(ConfigError, match=r"^device:"):
        check_config(cfg)


# ----------------------------------------------------------------------- custom packs

_LEVEL = """base = "town.toml"
[level]
grid_size = {grid}
affordances = ["Bed"]
observability = "full"
window_radius = 2
temporal_mechanics = false
starting_money = 25.0
max_steps = 100
reward_mode = "survival"
layout_mode = "shared"
layout_seed = 0
random_start_hour = false
"""


def test_a_pack_path_is_a_level(tmp_path):
    pack = tmp_path / "pricey_bed.toml"
    pack.write_text(_LEVEL.format(grid=4) + "[affordances.Bed.instant]\nprice = 7.0\n")
    cfg = compose_config("+experiment=minimal", f"env.level={pack}")
    check_config(cfg)
    from townlet_agents.factories import make_env

    env = make_env(cfg, "cpu", num_envs=2)
    assert env.pack.name == "pricey_bed" and env.pack.affordances[0].price == 7.0


def test_a_bad_pack_is_refused_before_training_naming_file_and_key(tmp_path):
    pack = tmp_path / "broken.toml"
    pack.write_text(_LEVEL.format(grid=1000))
    cfg = compose_config("+experiment=minimal", f"env.level={pack}")
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    message = str(info.value)
    assert message.startswith("env.level: ") and str(pack) in message and "level.grid_size" in message
    assert "\n" not in message


def test_a_missing_pack_file_is_refused(tmp_path):
    cfg = compose_config("+experiment=minimal", f"env.level={tmp_path / 'nowhere.toml'}")
    with pytest.raises(ConfigError, match=r"^env\.level: .*nowhere\.toml.*not found"):
        check_config(cfg)
