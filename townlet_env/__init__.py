"""Townlet: a vectorized "survive in a town" environment for Gymnasium.

    import gymnasium as gym, townlet_env
    env = gym.make("Townlet-v0")                      # one town, the complete level (L3)
    envs = gym.make_vec("Townlet-v0", num_envs=4096)  # the native batched env
    env = gym.make("Townlet-v0", level="L2_partial_observability")
"""

from gymnasium.envs.registration import register, registry

from . import schema
from .env import TownletEnv
from .layout import ObsLayout, ObsPart
from .oracle import OraclePolicy, OracleTuning
from .pack import PackError, WorldPack, load_pack
from .schema import ACTIONS, AFFORDANCES, LEVELS, METERS, NUM_ACTIONS
from .vector_env import TownletVectorEnv

__all__ = [
    "ACTIONS", "AFFORDANCES", "LEVELS", "METERS", "NUM_ACTIONS", "ObsLayout", "ObsPart", "OraclePolicy",
    "OracleTuning", "PackError", "TownletEnv", "TownletVectorEnv", "WorldPack", "load_pack", "schema",
]
__version__ = "0.1.0"

if "Townlet-v0" not in registry:
    register(
        id="Townlet-v0",
        entry_point="townlet_env.env:TownletEnv",
        vector_entry_point="townlet_env.vector_env:TownletVectorEnv",
        max_episode_steps=None,
        disable_env_checker=False,
    )
