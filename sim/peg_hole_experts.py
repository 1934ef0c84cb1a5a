"""The peg-in-hole task's scripted experts (``sim.experts`` interface), for data collection and sanity
checks: the search experts the touch ablation compares, the noisy expert, push-down, random
exploration and contact seeking. ``PegHoleTask.experts()`` returns ``PEG_HOLE_EXPERTS``.

Every expert reads the observation and the env's ``info`` (for the hole-pose *estimate*, never the
true pose, and the controller's current target), and returns an action in [-1, 1]. Each plans in
target space: it commands where the desired tip position should go, not a correction of the measured
tip, because adding the tracking error back into the target makes a compliant arm limit-cycle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.config import EnvConfig
from sim.detmath import matmul, norm
from sim.experts import ScriptedExpert
from sim.robot import quat_to_matrix

SENSES: tuple[str, ...] = ("ft", "proprio")
"""What an expert feels contact with: the wrist F/T and contact flags, or proprioception alone."""
SEARCHES: tuple[str, ...] = ("spiral", "moment", "tilt")
"""How an expert searches for the hole on contact: a blind spiral, steps along the rim moment (F/T),
or steps along the peg's tilt (proprioception: the compliant wrist yields to the rim moment)."""


def rim_direction(force: np.ndarray, quat: np.ndarray, min_force: float = 3.0,
                  min_lever: float = 0.003) -> np.ndarray | None:
    """Unit (2,) world-frame horizontal direction from the peg axis toward the hole, read from a
    step's F/T window while the peg rests on the rim; None when the reading says nothing.

    A peg pressed down beside the hole rests on the block only on the side away from the hole, so
    the contact's centre of pressure, offset from the peg axis by about half the peg width, sits
    opposite the hole: the moment's sign is the direction, whatever the offset's size. With the
    vertical force F_z and the moments (tau_x, tau_y) of the window's mean, rotated to the world
    frame by the tip orientation ``quat`` (x, y, z, w), the centre of pressure is
    (-tau_y / F_z, tau_x / F_z) (lateral forces at the tip add a lever term; pressing straight down
    keeps it small). ``force``: (n, 6) N and N m, sensor frame; ``min_force`` N: below it the peg
    is not pressing; ``min_lever`` m: a centre of pressure closer to the axis than this is a flat
    landing (no direction).
    """
    R = quat_to_matrix(np.asarray(quat, dtype=np.float64))
    mean = np.asarray(force, dtype=np.float64).mean(axis=0)
    f, tau = matmul(R, mean[:3]), matmul(R, mean[3:])
    if abs(f[2]) < min_force:
        return None
    cop = np.array([-tau[1] / f[2], tau[0] / f[2]])
    lever = norm(cop)
    if lever < min_lever:
        return None
    return -cop / lever


def tilt_direction(quat: np.ndarray, min_tilt: float = 0.0005) -> np.ndarray | None:
    """Unit (2,) world-frame horizontal direction toward the hole read from the peg's tilt alone
    (proprioception), or None below ``min_tilt`` rad.

    The impedance controller holds the orientation with a finite stiffness, so the rim moment tilts
    the peg a little (about 1.5 mrad at the experts' press): its tip swings away from the contact,
    toward the hole, and the peg axis (sensor z, pointing from the flange to the tip) leans the other
    way at the top. Proprioception is noiseless here; a real arm's would not resolve this as well.
    """
    axis = quat_to_matrix(np.asarray(quat, dtype=np.float64))[:, 2]
    lean = np.array([axis[0], axis[1]])
    size = norm(lean)
    if size < min_tilt:
        return None
    return -lean / size


class ExpertPolicy(ScriptedExpert):
    """Go above the estimated hole, descend, and on contact search until the peg drops in.

    The hole estimate has the env's configured error (default 2 mm), so at 2 mm clearance most
    first landings hit the rim. Two choices make the variants the touch ablation compares:

    - ``sense="ft"`` (default): contact is the contact flags or a pushing F/T z force;
      ``sense="proprio"``: F/T and contact flags withheld, contact is the tip stopping while the
      controller target leads it downward (what joint encoders alone can tell).
    - ``search="spiral"`` (default): a spiral around the estimate, blind to where the hole is;
      ``search="moment"`` (needs ``sense="ft"``): step along the direction the rim moment points
      (``rim_direction``), halving the step whenever it reverses; a spiral when it says nothing;
      ``search="tilt"``: the same steps along the peg's tilt (``tilt_direction``, proprioception).

    Args:
        cfg: the env's config (action scaling, geometry).
        press_depth: m, how far below the tip the target sits while searching (force ~ kp x this).
        spiral_pitch: m, radial growth of the search spiral per turn.
        spiral_speed: m, arc length of the spiral target per control step.
        max_spiral_radius: m, the spiral restarts from the centre beyond this radius.
        sense: "ft" or "proprio" (see above).
        search: "spiral" or "moment" (see above).
        moment_step: m, the first lateral step of the moment search per control step.
        min_moment_step: m, the smallest step the halving goes down to.
    """

    name = "expert"

    def __init__(self, cfg: EnvConfig, press_depth: float = 0.004, spiral_pitch: float = 0.001,
                 spiral_speed: float = 0.0008, max_spiral_radius: float = 0.006, sense: str = "ft",
                 search: str = "spiral", moment_step: float = 0.001,
                 min_moment_step: float = 0.0002) -> None:
        super().__init__(cfg)
        if sense not in SENSES:
            raise ValueError(f"sense must be one of {SENSES}, got {sense!r}")
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
        if search == "moment" and sense != "ft":
            raise ValueError("search='moment' reads the F/T moment: it needs sense='ft'")
        self.press_depth = press_depth
        self.spiral_pitch = spiral_pitch
        self.spiral_speed = spiral_speed
        self.max_spiral_radius = max_spiral_radius
        self.sense = sense
        self.search = search
        self.moment_step = moment_step
        self.min_moment_step = min_moment_step

    def reset(self, info: dict[str, Any], seed: int | None = None) -> None:
        super().reset(info, seed)
        self.phase = "approach"
        self.theta = 0.0
        self.contact_z = -math.inf  # tip height when the search started (resting on the top)
        self.best_z = math.inf
        self.stalled = 0
        self.goal_xy = np.asarray(info["hole_estimate"][:2], dtype=np.float64).copy()
        self.step_xy = self.moment_step
        self.last_dir: np.ndarray | None = None

    def _touching(self, obs: dict[str, np.ndarray], info: dict[str, Any], tip: np.ndarray) -> bool:
        if self.sense == "ft":
            return bool(obs["contact"].any()) or float(obs["force"][:, 2].mean()) > 3.0
        # Proprioception only: near the block's (known) top, the target leads the tip downward by
        # more than 2 mm, yet the tip has (nearly) stopped. In free descent the tip moves at the
        # commanded 5 mm a step (0.1 m/s); the height guard keeps a slow start of the descent, 1 cm
        # above the top, from reading as a landing.
        lead = float(info["target_pos"][2]) - tip[2]
        near_top = tip[2] < info["hole_estimate"][2] + 0.003
        return near_top and lead < -0.002 and abs(float(obs["proprio"][9])) < 0.01

    def _moment_goal(self, obs: dict[str, np.ndarray], est: np.ndarray) -> np.ndarray | None:
        """The next lateral goal (2,) m of the directed search (rim moment or tilt), or None when
        the reading says nothing."""
        if self.search == "tilt":
            direction = tilt_direction(obs["proprio"][3:7])
        else:
            direction = rim_direction(obs["force"], obs["proprio"][3:7])
        if direction is None:
            return None
        if self.last_dir is not None and float((direction * self.last_dir).sum()) < 0.0:
            self.step_xy = max(self.step_xy / 2, self.min_moment_step)  # overshot: halve the step
        self.last_dir = direction
        goal = self.goal_xy + self.step_xy * direction
        # Stay within the spiral's reach of the estimate: a wild reading must not walk the peg off.
        off = goal - est[:2]
        if norm(off) > self.max_spiral_radius:
            goal = est[:2] + off * (self.max_spiral_radius / norm(off))
        self.goal_xy = goal
        return goal

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        est = info["hole_estimate"]
        yaw = info["hole_yaw"]
        tip = obs["proprio"][:3].astype(np.float64)
        top = est[2]
        depth = top - tip[2]
        touching = self._touching(obs, info, tip)
        # In the hole: well below the top, or 1 mm below where the peg rested while searching.
        # Searching on after that would push the peg sideways against the wall and jam it.
        dropped = depth > 0.004 or tip[2] < self.contact_z - 0.001
        if self.phase in ("approach", "descend", "search") and dropped:
            self.phase = "insert"
            self.best_z, self.stalled = tip[2], 0
        if self.phase == "approach":
            goal = np.array([est[0], est[1], top + 0.01])
            if np.all(np.abs(tip - goal) < [0.0015, 0.0015, 0.004]):
                self.phase = "descend"
            return self._toward(info, goal, yaw_goal=yaw)
        if self.phase == "descend":
            if touching and depth < 0.003:
                self.phase = "search"
                self.theta = 0.0
                self.contact_z = tip[2]
            goal = np.array([est[0], est[1], tip[2] - 0.006])
            return self._toward(info, goal, speed=0.5, yaw_goal=yaw)
        if self.phase == "search" and self.search != "spiral":
            goal_xy = self._moment_goal(obs, est)
            if goal_xy is not None:
                goal = np.array([goal_xy[0], goal_xy[1], tip[2] - self.press_depth])
                return self._toward(info, goal, yaw_goal=yaw)
        if self.phase == "search":
            radius = self.spiral_pitch * self.theta / (2 * math.pi)
            if radius > self.max_spiral_radius:
                self.theta = 0.0
                radius = 0.0
            self.theta += self.spiral_speed / max(radius, self.spiral_pitch)
            goal = np.array([est[0] + radius * math.cos(self.theta), est[1] + radius * math.sin(self.theta),
                             tip[2] - self.press_depth])
            return self._toward(info, goal, yaw_goal=yaw)
        # insert: keep the tip where the hole let it in, push down; if it stops going down while
        # still shallow, it was a false alarm (or a jam): lift a little and search again.
        if tip[2] < self.best_z - 0.0002:
            self.best_z, self.stalled = tip[2], 0
        else:
            self.stalled += 1
        if self.stalled > 10 and depth < 0.004:
            self.phase = "search"
            self.contact_z = tip[2]
        goal = np.array([tip[0], tip[1], tip[2] - 0.01])
        return self._toward(info, goal, yaw_goal=yaw)


class MomentExpert(ExpertPolicy):
    """The expert searching along the rim moment's direction (``search="moment"``): touch tells it
    where the hole is, not only that the peg landed."""

    name = "expert_moment"

    def __init__(self, cfg: EnvConfig, **kwargs: Any) -> None:
        kwargs.setdefault("search", "moment")
        super().__init__(cfg, **kwargs)


class BlindExpert(ExpertPolicy):
    """The expert with F/T and contact flags withheld (``sense="proprio"``): it feels a landing
    only as the tip stopping, and searches by the spiral."""

    name = "expert_blind"

    def __init__(self, cfg: EnvConfig, **kwargs: Any) -> None:
        kwargs.setdefault("sense", "proprio")
        super().__init__(cfg, **kwargs)


class TiltExpert(ExpertPolicy):
    """The expert with F/T withheld that reads the direction from the peg's tilt instead
    (``sense="proprio"``, ``search="tilt"``): how much of the rim moment proprioception leaks."""

    name = "expert_tilt"

    def __init__(self, cfg: EnvConfig, **kwargs: Any) -> None:
        kwargs.setdefault("sense", "proprio")
        kwargs.setdefault("search", "tilt")
        super().__init__(cfg, **kwargs)


class OracleExpert(ExpertPolicy):
    """The expert reading the true hole pose (``info["hole_pos"]``) where the others read the
    estimate with its error: it goes straight above the hole and, at the default 2 mm clearance,
    lands in it without a search.

    Why: a policy cloned from demonstrations (``mmrep.rl.demos``) sees the hole through the camera,
    not the estimate. The default expert's actions near the block follow the estimate's error, which
    nothing in the policy's observation shows, and its spiral's phase, which only its memory holds: a
    policy on the latent can only average them. The oracle's actions are a function of what the camera
    and proprioception tell, so cloning them is well posed (privileged-expert cloning, as in
    "Learning by Cheating", Chen et al. 2019)."""

    name = "expert_oracle"

    @staticmethod
    def _true(info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "hole_estimate": np.asarray(info["hole_pos"], dtype=np.float64)}

    def reset(self, info: dict[str, Any], seed: int | None = None) -> None:
        super().reset(self._true(info), seed)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return super().act(obs, self._true(info))


class PushDownPolicy(ScriptedExpert):
    """Go above the hole estimate and push straight down: no search, no force feedback.

    The baseline that shows whether the task needs touch: at 2 mm estimate error and 2 mm clearance
    it should mostly fail where the expert succeeds.
    """

    name = "push_down"

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        est = info["hole_estimate"]
        tip = obs["proprio"][:3].astype(np.float64)
        above = np.array([est[0], est[1], est[2] + 0.01])
        if norm(tip[:2] - est[:2]) > 0.0015 and tip[2] > est[2] + 0.003:
            return self._toward(info, above, yaw_goal=info["hole_yaw"])
        return self._toward(info, np.array([est[0], est[1], tip[2] - 0.01]), yaw_goal=info["hole_yaw"])


class RandomExplorer(ScriptedExpert):
    """Random actions held for 1 to ``max_hold`` steps, pulled back toward the hole estimate when the
    tip strays more than ``radius`` metres from it (so random data still shows the workspace)."""

    name = "random"

    def __init__(self, cfg: EnvConfig, max_hold: int = 5, radius: float = 0.08) -> None:
        super().__init__(cfg)
        self.max_hold = max_hold
        self.radius = radius

    def reset(self, info: dict[str, Any], seed: int | None = None) -> None:
        super().reset(info, seed)
        self.hold = 0
        self.action = np.zeros(self.cfg.action_dim, dtype=np.float32)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        tip = obs["proprio"][:3].astype(np.float64)
        centre = info["hole_estimate"] + np.array([0.0, 0.0, 0.05])
        if norm(tip - centre) > self.radius:
            return self._toward(info, centre, speed=0.7)
        if self.hold <= 0:
            self.action = self.rng.uniform(-1, 1, self.cfg.action_dim).astype(np.float32)
            self.hold = int(self.rng.integers(1, self.max_hold + 1))
        self.hold -= 1
        return self.action.copy()


class ContactSeekingPolicy(ScriptedExpert):
    """Pick a random point on the block near the hole estimate, press down until contact, slide in a
    random direction while pressing, lift, repeat: contact-rich data with insertions by chance."""

    name = "contact_seeking"

    def __init__(self, cfg: EnvConfig, spread: float = 0.03, slide_steps: int = 8) -> None:
        super().__init__(cfg)
        self.spread = spread
        self.slide_steps = slide_steps

    def reset(self, info: dict[str, Any], seed: int | None = None) -> None:
        super().reset(info, seed)
        self._new_goal(info)

    def _new_goal(self, info: dict[str, Any]) -> None:
        est = info["hole_estimate"]
        self.goal_xy = est[:2] + self.rng.uniform(-self.spread, self.spread, 2)
        self.phase = "move"
        self.count = 0
        angle = self.rng.uniform(0, 2 * math.pi)
        self.slide = np.array([math.cos(angle), math.sin(angle)])

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        tip = obs["proprio"][:3].astype(np.float64)
        top = info["hole_estimate"][2]
        touching = bool(obs["contact"].any())
        if self.phase == "move":
            goal = np.array([*self.goal_xy, top + 0.015])
            if norm(tip[:2] - self.goal_xy) < 0.003:
                self.phase = "press"
            return self._toward(info, goal)
        if self.phase == "press":
            if touching:
                self.phase = "slide"
            return self._toward(info, np.array([*self.goal_xy, tip[2] - 0.006]), speed=0.5)
        if self.phase == "slide":
            self.count += 1
            if self.count > self.slide_steps:
                self.phase = "lift"
            goal = np.array([*(tip[:2] + 0.004 * self.slide), tip[2] - 0.004])
            return self._toward(info, goal, speed=0.5)
        # lift, then pick a new point
        if tip[2] > top + 0.012:
            self._new_goal(info)
        return self._toward(info, np.array([tip[0], tip[1], top + 0.02]))


class NoisyExpert(ExpertPolicy):
    """The expert with Gaussian action noise (std ``noise_std``, in action units) added to every
    action: demonstrations that still mostly succeed but cover more of the state space."""

    name = "noisy_expert"

    def __init__(self, cfg: EnvConfig, noise_std: float = 0.3, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.noise_std = noise_std

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        action = super().act(obs, info)
        noise = self.rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action + noise, -1.0, 1.0).astype(np.float32)


PEG_HOLE_EXPERTS: dict[str, type[ScriptedExpert]] = {
    cls.name: cls for cls in (ExpertPolicy, MomentExpert, BlindExpert, TiltExpert, OracleExpert, NoisyExpert,
                              PushDownPolicy, RandomExplorer, ContactSeekingPolicy)
}
"""The peg-in-hole task's scripted experts by name (``PegHoleTask.experts()``)."""
DEFAULT_MIXTURE: dict[str, float] = {"noisy_expert": 0.4, "random": 0.3, "contact_seeking": 0.3}
"""The collection mixture when none is given (``PegHoleTask.default_mixture``): the paper collected
random and contact-seeking data; the noisy expert adds insertions."""
