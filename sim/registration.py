"""The env ids, built in one place: ``mmrep/PegInsertion-v0`` and ``mmrep/PegInsertion<Shape>-v0``.

Two ways to make an env, both documented in docs/guides/environment.md:

    gym.make("mmrep/PegInsertionRound-v0", max_steps=50)             # keyword arguments
    gym.make("mmrep/PegInsertion-v0", config=EnvConfig(peg_shape="round", max_steps=50))

A shape id fixes the peg shape; giving it a ``config`` of another shape is refused.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from sim.config import PEG_SHAPES

BASE_ID = "mmrep/PegInsertion-v0"


def env_id(shape: str | None = None) -> str:
    """The id of the env with peg ``shape`` (``None``: the base id, square unless configured)."""
    if shape is None:
        return BASE_ID
    if shape not in PEG_SHAPES:
        raise ValueError(f"peg shape must be one of {PEG_SHAPES}, got {shape!r}")
    return f"mmrep/PegInsertion{shape.capitalize()}-v0"


def register_envs() -> list[str]:
    """Register every id (once per process) and return them, the base id first."""
    ids = [BASE_ID] + [env_id(shape) for shape in PEG_SHAPES]
    # The env enforces its own step limit (option ``max_steps``) and says why it truncated
    # (info["truncation_reason"]); gym.make's max_episode_steps would add a TimeLimit that cannot say so.
    for id_, shape in zip(ids, (None, *PEG_SHAPES)):
        if id_ not in registry:
            register(id=id_, entry_point="sim.env:PegInsertionEnv",
                     kwargs={} if shape is None else {"peg_shape": shape})
    return ids
