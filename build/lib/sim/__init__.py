"""mmrep's simulation: a PyBullet peg-insertion Gymnasium env with vision, touch and proprioception.

No torch here. Importing ``sim`` registers the env ids listed in ``ENV_IDS`` (``sim.registration``):
``mmrep/PegInsertion-v0`` (square peg unless configured) and ``mmrep/PegInsertion<Shape>-v0`` per shape.
"""

from sim._quiet import import_pybullet_quietly

import_pybullet_quietly()  # PyBullet prints its build time from C at import: noise in every worker

from sim.config import PEG_SHAPES, PHYSICS_PRESETS, EnvConfig  # noqa: E402
from sim.env import PegInsertionEnv  # noqa: E402
from sim.registration import env_id, register_envs  # noqa: E402

ENV_IDS: list[str] = register_envs()

__all__ = ["ENV_IDS", "PEG_SHAPES", "PHYSICS_PRESETS", "EnvConfig", "PegInsertionEnv", "env_id"]
