"""The peg-in-hole task: a block with a through-hole, its randomised pose, the staged reward, its
scripted experts and its hindsight label. The one module that knows the hole: the env, the wrappers,
the probe and the dataset ask the task (``sim.task.Task``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as p

from sim.assets import BOX_MARGIN, block_visual_mesh, hole_wall_boxes
from sim.config import EnvConfig
from sim.detmath import norm
from sim.hindsight import insertion_point
from sim.peg_hole_experts import DEFAULT_MIXTURE, PEG_HOLE_EXPERTS

BOX_COLOR = (0.25, 0.45, 0.75, 1.0)
MAX_STEP_REWARD = 4.0  # reach (<= 1) + align (<= 1) + insertion (<= 2)


@dataclass
class HolePose:
    """Hole centre at the block's top surface (m, world) and yaw (rad)."""

    pos: np.ndarray
    yaw: float


class PegHoleTask:
    """Owns the block (one static multibody made of wall boxes) and scores the peg tip against it
    (the ``sim.task.Task`` protocol)."""

    name = "peg_hole"
    max_step_reward = MAX_STEP_REWARD
    default_mixture = DEFAULT_MIXTURE  # collection's expert mixture when none is given
    hindsight_label = staticmethod(insertion_point)

    def __init__(self, client: int, cfg: EnvConfig) -> None:
        if cfg.task_options:
            raise ValueError(f"task_options: the peg-in-hole task has none (got {sorted(cfg.task_options)}); its "
                             f"options are EnvConfig's clearance, box_height, insertion_depth and randomization")
        self.client = client
        self.cfg = cfg
        walls = hole_wall_boxes(cfg.peg_shape, cfg.peg_width, cfg.clearance, cfg.box_height)
        halves = [w[0].tolist() for w in walls]
        quats = [p.getQuaternionFromEuler([0, 0, w[1]]) for w in walls]
        centres = [w[2].tolist() for w in walls]
        col = p.createCollisionShapeArray([p.GEOM_BOX] * len(walls), halfExtents=halves,
                                          collisionFramePositions=centres,
                                          collisionFrameOrientations=quats, physicsClientId=client)
        mesh = block_visual_mesh(cfg.peg_shape, cfg.peg_width, cfg.clearance, cfg.box_height)
        vis = p.createVisualShape(p.GEOM_MESH, fileName=str(mesh), rgbaColor=BOX_COLOR,
                                  physicsClientId=client)
        self.uid = p.createMultiBody(0.0, col, vis, basePosition=[0.6, 0, 0], physicsClientId=client)
        # Softer contact halves the single-substep impact spikes (DESIGN.md, prototype facts).
        # A small collision margin keeps the rim's edge sharp: Bullet rounds box edges by the margin,
        # which acts like a 1 mm chamfer and lets pegs landing on the rim slide in by themselves.
        p.changeDynamics(self.uid, -1, contactStiffness=1e5, contactDamping=1e3, lateralFriction=0.5,
                         collisionMargin=BOX_MARGIN, physicsClientId=client)
        self.hole = HolePose(np.array([0.6, 0.0, cfg.box_height]), 0.0)
        self.hole_estimate = np.zeros(3)

    # ------------------------------------------------------------------------------ the Task protocol
    def reset(self, rng: np.random.Generator) -> None:
        """Draw and place this episode's hole, and draw its estimate."""
        self.place(self.sample_pose(rng))
        self.hole_estimate = self.sample_estimate(rng)

    def start_tip(self, rng: np.random.Generator) -> np.ndarray:
        """(3,) m, where the peg tip starts: above the nominal hole centre, randomised."""
        cfg, r = self.cfg, self.cfg.randomization
        return np.array([
            r.hole_xy_center[0] + rng.uniform(-r.start_xy_range, r.start_xy_range),
            r.hole_xy_center[1] + rng.uniform(-r.start_xy_range, r.start_xy_range),
            cfg.box_height + rng.uniform(*r.start_height)])

    @property
    def goal_pos(self) -> np.ndarray:
        """(3,) m, where the tip must go (the hole's top centre): privileged, for state observations
        and probes."""
        return self.hole.pos.copy()

    def reward_terms(self, tip: np.ndarray) -> dict[str, float]:
        return self.stage_reward(tip)

    def info(self, tip: np.ndarray, terms: dict[str, float] | None = None) -> dict:
        """The task's entries of the env's ``info``."""
        dist, depth = self.insertion(tip)
        return {"hole_pos": self.hole.pos.copy(), "hole_yaw": self.hole.yaw,
                "hole_estimate": self.hole_estimate.copy(), "insertion_depth": depth, "hole_distance": dist,
                "reward_terms": terms or self.stage_reward(tip)}

    @staticmethod
    def experts() -> dict:
        """The task's scripted experts by name (``sim.peg_hole_experts``)."""
        return dict(PEG_HOLE_EXPERTS)

    @property
    def yaw_limit(self) -> float:
        """rad, how far 4-D actions may turn the peg: the hole's yaw range plus a quarter turn."""
        return self.cfg.randomization.hole_yaw_range + math.pi / 4

    def sample_pose(self, rng: np.random.Generator) -> HolePose:
        """Draw a hole pose from the configured ranges."""
        r = self.cfg.randomization
        xy = np.asarray(r.hole_xy_center) + rng.uniform(-r.hole_xy_range, r.hole_xy_range, size=2)
        yaw = float(rng.uniform(-r.hole_yaw_range, r.hole_yaw_range)) if r.hole_yaw_range > 0 else 0.0
        return HolePose(np.array([xy[0], xy[1], self.cfg.box_height]), yaw)

    def place(self, hole: HolePose) -> None:
        """Move the block so that its hole is at ``hole``."""
        self.hole = hole
        p.resetBasePositionAndOrientation(self.uid, [hole.pos[0], hole.pos[1], 0.0],
                                          p.getQuaternionFromEuler([0, 0, hole.yaw]),
                                          physicsClientId=self.client)

    def sample_estimate(self, rng: np.random.Generator) -> np.ndarray:
        """A hole-position estimate as a camera would give: the true top centre (3,) plus a horizontal
        error of length ``hole_estimate_error`` in a uniformly random direction."""
        err = self.cfg.randomization.hole_estimate_error
        angle = rng.uniform(0, 2 * math.pi)
        return self.hole.pos + np.array([err * math.cos(angle), err * math.sin(angle), 0.0])

    def insertion(self, tip: np.ndarray) -> tuple[float, float]:
        """Horizontal distance (m) of the tip from the hole axis, and depth (m) below the block top."""
        d = tip - self.hole.pos
        return float(math.hypot(d[0], d[1])), float(-d[2])

    def is_success(self, tip: np.ndarray) -> bool:
        """The peg tip is inside the hole at least ``insertion_depth`` below the top."""
        dist, depth = self.insertion(tip)
        return depth >= self.cfg.insertion_depth and dist < self.cfg.peg_width / 2

    def stage_reward(self, tip: np.ndarray) -> dict[str, float]:
        """Staged reward terms (paper: reaching, alignment, insertion), each in [0, its maximum].

        reach: 1 - tanh(10 |tip - hole top|), always on.
        align: 1 - tanh(|tip_xy - hole_xy| / 5 mm), once the tip is within 2 cm above the top.
        insert: 2 x depth / insertion_depth (capped at 2), once the tip is inside the hole.
        """
        dist, depth = self.insertion(tip)
        reach = 1.0 - math.tanh(10.0 * norm(tip - self.hole.pos))
        align = 1.0 - math.tanh(dist / 0.005) if depth > -0.02 else 0.0
        inside = dist < self.cfg.peg_width / 2 and depth > 0
        insert = 2.0 * min(depth / self.cfg.insertion_depth, 1.0) if inside else 0.0
        return {"reach": reach, "align": align, "insert": insert}
