"""mmrep's simulation: a PyBullet peg-insertion Gymnasium env with vision, touch and proprioception.

No torch here. Importing ``sim`` registers the env ids listed in ``ENV_IDS`` (``sim.registration``):
``mmrep/PegInsertion-v0`` (square peg unless configured) and ``mmrep/PegInsertion<Shape>-v0`` per shape.
"""

from typing import Any

from sim._quiet import import_pybullet_quietly

try:  # PyBullet prints its build time from C at import: noise in every worker
    import_pybullet_quietly()
except ImportError:  # a training-only machine (a GPU node fed collected data) needs no simulator
    pass

from sim.config import PEG_SHAPES, PHYSICS_PRESETS, EnvConfig  # noqa: E402
from sim.registration import env_id, register_envs  # noqa: E402

ENV_IDS: list[str] = register_envs()


def __getattr__(name: str) -> Any:
    # The env is imported on first use, so that sim's data layer imports where PyBullet is absent.
    if name == "PegInsertionEnv":
        from sim.env import PegInsertionEnv

        return PegInsertionEnv
    raise AttributeError(f"module 'sim' has no attribute {name!r}")

__all__ = ["ENV_IDS", "PEG_SHAPES", "PHYSICS_PRESETS", "EnvConfig", "PegInsertionEnv", "env_id"]
