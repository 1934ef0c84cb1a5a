"""Extending mmrep, example (b): a second task, pressing on a plate to a force threshold, without
editing ``sim/env.py`` (docs/extending.md). This one file is the whole task; ``register_task`` is its
registration line, and ``EnvConfig.task="press"`` (``env.task=press`` on a command line) chooses it.
Its options are its own dataclass, set with ``"env.task_options={target_force: 15}"``; ``mmrep collect``
records its expert (``env.task=press "env.plugins=[press_task]"``, with this folder on PYTHONPATH).

Run it: ``python docs/examples/press_task.py`` (one expert episode, about 5 s without camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p

import sim  # noqa: F401  (registers the env ids)
from sim.config import EnvConfig
from sim.experts import ScriptedExpert, run_episode
from sim.task import register_task, task_options

PLATE_HALF = (0.06, 0.06, 0.01)  # m, half extents of the plate


@dataclass
class PressOptions:
    """The press task's options (``env.task_options``)."""

    target_force: float = 10.0  # N, the normal force on the plate that counts as success
    plate_xy_range: float = 0.03  # m, the plate centre is (0.6, 0) +- this on x and y


class PressDown(ScriptedExpert):
    """Go above the plate centre (the task's ``info["plate_pos"]``), then push down."""

    name = "press_down"

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        goal, tip = info["plate_pos"], info["tip_pos"]
        if np.hypot(*(tip[:2] - goal[:2])) > 0.005:
            return self._toward(info, goal + np.array([0.0, 0.0, 0.03]))
        return self._toward(info, np.array([goal[0], goal[1], goal[2] - 0.02]))


class PressTask:
    """Press the peg tip on a plate until it feels ``target_force`` newtons (``sim.task.Task``)."""

    name = "press"
    max_step_reward = 2.0  # reach (<= 1) + press (<= 1)

    def __init__(self, client: int, cfg: EnvConfig) -> None:
        self.client, self.cfg, self.options = client, cfg, task_options(cfg, PressOptions)
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=PLATE_HALF, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=PLATE_HALF, rgbaColor=(0.8, 0.5, 0.2, 1),
                                  physicsClientId=client)
        self.uid = p.createMultiBody(0.0, col, vis, basePosition=[0.6, 0, PLATE_HALF[2]], physicsClientId=client)
        self.plate = np.array([0.6, 0.0, 2 * PLATE_HALF[2]])

    def reset(self, rng: np.random.Generator) -> None:
        r = self.options.plate_xy_range
        xy = np.array([0.6, 0.0]) + rng.uniform(-r, r, size=2)
        self.plate = np.array([xy[0], xy[1], 2 * PLATE_HALF[2]])
        p.resetBasePositionAndOrientation(self.uid, [xy[0], xy[1], PLATE_HALF[2]], [0, 0, 0, 1],
                                          physicsClientId=self.client)

    def start_tip(self, rng: np.random.Generator) -> np.ndarray:
        return self.plate + np.array([*rng.uniform(-0.03, 0.03, size=2), 0.08])

    @property
    def goal_pos(self) -> np.ndarray:
        return self.plate.copy()

    def pressing_force(self) -> float:
        """N, the normal force the plate feels now (PyBullet's contact points with it)."""
        return float(sum(c[9] for c in p.getContactPoints(bodyA=self.uid, physicsClientId=self.client)))

    def reward_terms(self, tip: np.ndarray) -> dict[str, float]:
        return {"reach": 1.0 - math.tanh(10.0 * float(np.linalg.norm(tip - self.plate))),
                "press": min(self.pressing_force() / self.options.target_force, 1.0)}

    def is_success(self, tip: np.ndarray) -> bool:
        return self.pressing_force() >= self.options.target_force

    def info(self, tip: np.ndarray, terms: dict[str, float] | None = None) -> dict[str, Any]:
        return {"plate_pos": self.plate.copy(), "pressing_force": self.pressing_force(),
                "reward_terms": terms or self.reward_terms(tip)}

    @staticmethod
    def experts() -> dict[str, type[ScriptedExpert]]:
        return {PressDown.name: PressDown}


register_task("press", PressTask, replace=True)  # the one registration line (replace: re-importable)


def main(seed: int = 0) -> dict[str, Any]:
    """One episode of the task's expert in the env (no camera); returns ``run_episode``'s summary."""
    cfg = EnvConfig(task="press", use_camera=False, max_steps=60, physics_hz=240.0)
    env = gym.make("mmrep/PegInsertion-v0", config=cfg)
    try:
        expert = PressTask.experts()["press_down"](cfg)
        return run_episode(env, expert, seed=seed)
    finally:
        env.close()


if __name__ == "__main__":
    print(main())
