"""mmrep's simulation: a PyBullet peg-insertion Gymnasium env with vision, touch and proprioception.

No torch here. Importing ``sim`` registers the env ids listed in ``ENV_IDS``:
``mmrep/PegInsertion-v0`` (square peg) and ``mmrep/PegInsertion<Shape>-v0`` per peg shape.
"""

from gymnasium.envs.registration import register, registry

from sim._quiet import import_pybullet_quietly

import_pybullet_quietly()  # PyBullet prints its build time from C at import: noise in every worker

from sim.config import PEG_SHAPES, PHYSICS_PRESETS, EnvConfig  # noqa: E402
from sim.env import PegInsertionEnv  # noqa: E402

ENV_IDS: list[str] = ["mmrep/PegInsertion-v0"]

# The env enforces its own step limit (option ``max_steps``) and says why it truncated
# (info["truncation_reason"]); gym.make's max_episode_steps would add a TimeLimit that cannot say so.
if "mmrep/PegInsertion-v0" not in registry:
    register(id="mmrep/PegInsertion-v0", entry_point="sim.env:PegInsertionEnv",
             kwargs={"peg_shape": "square"})
for _shape in PEG_SHAPES:
    _env_id = f"mmrep/PegInsertion{_shape.capitalize()}-v0"
    ENV_IDS.append(_env_id)
    if _env_id not in registry:
        register(id=_env_id, entry_point="sim.env:PegInsertionEnv", kwargs={"peg_shape": _shape})

__all__ = ["ENV_IDS", "PEG_SHAPES", "PHYSICS_PRESETS", "EnvConfig", "PegInsertionEnv"]
