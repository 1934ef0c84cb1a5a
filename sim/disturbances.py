"""Disturbances inside the simulation (env options, off by default): an occluding body the camera
renders, and external pushes on the peg that the wrist sensor feels. F/T bias and drift live in
``sim.sensors``. Every random draw comes from the env's seeded generator, and only when the option is
on, so episodes with the options off are unchanged."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from sim.config import OccluderConfig, PushConfig
from sim.detmath import matmul

HIDDEN_POS = (0.0, 0.0, -50.0)  # m: far below the floor, outside every view


class Occluder:
    """A thin visual-only box facing the camera (``OccluderConfig``); collides with nothing.

    ``reset(rng)`` places it for a new episode (hidden in mode "after_contact"), ``update(t, contact)``
    moves or reveals it before each render (``t`` s since reset, ``contact``: the step touched).
    """

    THICKNESS = 0.004  # m

    def __init__(self, client: int, cfg: OccluderConfig, view: np.ndarray) -> None:
        self.client, self.cfg = client, cfg
        rot = view[:3, :3]  # rows: camera right, up, backward, in world coordinates
        self.right, self.up, back = rot[0], rot[1], rot[2]
        self.eye = -matmul(rot.T, view[:3, 3])
        self.centre = self._centre = self.eye - cfg.distance * back
        # box axes: x along right, y along up, z along the optical axis
        m = np.stack([self.right, self.up, back], axis=1)
        self.quat = _quat_from_matrix(m)
        half = [cfg.size[0] / 2, cfg.size[1] / 2, self.THICKNESS / 2]
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=list(cfg.color) + [1.0],
                                  physicsClientId=client)
        self.uid = p.createMultiBody(0.0, -1, vis, basePosition=HIDDEN_POS, physicsClientId=client)
        self.offset = np.asarray(cfg.offset, dtype=float)
        self.visible = False
        self.active = True  # whether this episode has the occluder at all (OccluderConfig.probability)

    def reset(self, rng: np.random.Generator) -> None:
        c = self.cfg
        jitter = rng.uniform(-c.offset_range, c.offset_range, size=2) if c.offset_range > 0 else np.zeros(2)
        self.offset = np.asarray(c.offset, dtype=float) + jitter
        self.active = c.probability >= 1.0 or bool(rng.random() < c.probability)
        self.visible = self.active and c.mode in ("static", "moving")
        self.update(0.0, False)

    def move_with_camera(self, shift: np.ndarray) -> None:
        """Keep the box in front of a camera moved by ``shift`` (3,) m from where it was built."""
        self.centre = self._centre + shift
        self.update(0.0, False)

    def update(self, t: float, contact: bool) -> None:
        c = self.cfg
        if c.mode == "after_contact" and contact and self.active:
            self.visible = True
        dx = c.amplitude * math.sin(2 * math.pi * t / c.period) if c.mode == "moving" else 0.0
        pos = (self.centre + (self.offset[0] + dx) * self.right + self.offset[1] * self.up
               if self.visible else np.asarray(HIDDEN_POS))
        p.resetBasePositionAndOrientation(self.uid, pos.tolist(), self.quat, physicsClientId=self.client)

    @property
    def position(self) -> np.ndarray:
        """(3,) m, world position of the box's centre (``HIDDEN_POS`` while hidden)."""
        return np.asarray(p.getBasePositionAndOrientation(self.uid, physicsClientId=self.client)[0])


class Pushes:
    """External pushes (``PushConfig``) on a link: scheduled per control step, applied per substep.

    ``begin_step(rng, n_substeps, substep_dt)`` decides whether a push starts during this step and
    when; ``force_at(i)`` is the world-frame force (3,) N of substep ``i`` (zeros when none).
    """

    def __init__(self, cfg: PushConfig, control_dt: float) -> None:
        self.cfg = cfg
        self.prob = 1.0 - math.exp(-cfg.rate_hz * control_dt)  # at least one arrival in a step
        self._force = np.zeros(3)
        self._start = self._stop = 0
        self.count = 0

    @property
    def enabled(self) -> bool:
        return self.cfg.rate_hz > 0 and self.cfg.impulse > 0

    def reset(self) -> None:
        self._start = self._stop = 0
        self.count = 0

    def begin_step(self, rng: np.random.Generator, n_substeps: int, substep_dt: float) -> None:
        self._start = self._stop = 0
        if not self.enabled or rng.random() >= self.prob:
            return
        c = self.cfg
        length = max(1, int(round(c.duration / substep_dt)))
        self._start = int(rng.integers(0, max(n_substeps - length, 0) + 1))
        self._stop = self._start + length
        az = math.radians(rng.uniform(*c.azimuth_range))
        el = math.radians(rng.uniform(*c.elevation_range))
        direction = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        self._force = direction * (c.impulse / (length * substep_dt))
        self.count += 1

    def force_at(self, i: int) -> np.ndarray | None:
        return self._force if self._start <= i < self._stop else None


def _quat_from_matrix(m: np.ndarray) -> list[float]:
    """(x, y, z, w) quaternion of a rotation matrix (3, 3) (columns: the body axes in world)."""
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return [x, y, z, w]
