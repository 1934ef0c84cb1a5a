"""``PegInsertionEnv``: one PyBullet client owning a Robot, a task (``sim.task``; the peg-in-hole one by
default) and a Camera behind one Env."""

from __future__ import annotations

import copy
import math
import os
import sys
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p
import pybullet_data
from gymnasium import spaces

from sim.assets import peg_hull, robot_urdf
from sim.camera import Camera, Frame
from sim.config import IN_HOLE_DEPTH, IN_HOLE_PRESS_ACTION, EnvConfig
from sim.detmath import norm
from sim.disturbances import Occluder, Pushes
from sim.flow import body_link_poses, optical_flow
from sim.modalities import FORCE_LIMIT, MODALITY_REGISTRY, PROPRIO_LIMIT, import_plugins, modality  # noqa: F401  (re-exported)
from sim.observation import PROPRIO13_DIM, tool_down_quat
from sim.robot import PEG_LINK, Robot
from sim.sensors import ForceTorqueSensor
from sim.task import make_task

PROPRIO_DIM = PROPRIO13_DIM  # the old name of the env's proprioception size (sim.observation)
ENV_MODALITIES = ("rgb", "depth", "force", "proprio")  # the registered modalities this env observes


def _has_display() -> bool:
    """Whether PyBullet's GUI can open a window (it blocks forever on a headless Linux machine)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY"))


class PegInsertionEnv(gym.Env):
    """Insert a peg held by a KUKA iiwa into a hole, seeing RGB-D and feeling a wrist F/T sensor.

    Observation (``gymnasium.spaces.Dict``; rgb and depth absent when ``use_camera=False``):
        rgb: (S, S, 3) uint8, fixed camera.
        depth: (S, S, 1) float32, metres along the optical axis.
        force: (n_substeps, 6) float32, F/T readings of the last control step, one per physics
            substep (N, N m), sensor frame (+z along the peg, away from the flange), tared for the
            peg's weight: a surface pushing back on the peg tip reads as +z force.
        proprio: (13,) float32, peg-tip position (m, world), orientation quaternion (x, y, z, w),
            linear velocity (m/s), angular velocity (rad/s).
        contact: (n_substeps,) int8, 1 where the peg touched the block during that substep.

    Action: (3,) or (4,) float32 in [-1, 1]: displacement of the desired tip position, times
    ``action_scale`` metres, from the previous step's desired position (``controller.action_origin``
    "target", the default) or from the measured tip ("tip"); and a yaw change times
    ``action_scale_yaw`` radians. The desired position never leads the measured tip by more than
    ``controller.max_contact_force / kp_pos``.

    Keyword arguments are the fields of ``sim.config.EnvConfig`` (nested sections as dicts), plus
    ``physics_preset`` ("accurate": 1 kHz, "fast": 240 Hz). A bad value raises ``ValueError``.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __getstate__(self) -> None:
        # a copy would share (or, unpickled elsewhere, lose) this env's PyBullet connection
        raise TypeError("a PegInsertionEnv holds a PyBullet connection and cannot be copied or pickled; build "
                        "another from its config (gym.make(env.spec.id, config=copy.deepcopy(env.unwrapped.cfg))); "
                        "vector envs take a factory (SubprocVecEnv([partial(make_rl_env, ...)]))")

    def __init__(self, render_mode: str | None = None, config: EnvConfig | None = None,
                 **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                             f"got {render_mode!r}")
        if config is not None:
            shape = kwargs.pop("peg_shape", config.peg_shape)  # a shape id passes its shape
            if shape != config.peg_shape:
                raise ValueError(f"this env id is for peg_shape={shape!r} but config.peg_shape="
                                 f"{config.peg_shape!r}; use gym.make('mmrep/PegInsertion-v0', config=...) "
                                 f"or the shape's id with keyword arguments")
            if kwargs:
                raise ValueError(f"pass either config or keyword arguments, not both (got config and "
                                 f"{sorted(kwargs)})")
        # a copy: the caller's config changed later (or shared by two envs) must not change this env
        self.cfg = copy.deepcopy(config) if config is not None else EnvConfig.from_kwargs(**kwargs)
        self.cfg.validate()
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.cfg.control_hz}
        cfg = self.cfg
        n, s = cfg.n_substeps, cfg.image_size

        import_plugins(cfg.plugins)  # they register tasks and modalities
        obs_spaces: dict[str, spaces.Space] = {
            key: MODALITY_REGISTRY[key].space(s, n) for key in ENV_MODALITIES
            if cfg.use_camera or not MODALITY_REGISTRY[key].camera}
        for key in cfg.extra_observations:  # built-in keys are observed already; a plug-in must say how
            if key in obs_spaces or key == "contact" or modality(key).observe is None:
                raise ValueError(f"extra_observations: {key!r} is not a plug-in modality the env can observe "
                                 f"(built-in ones are always observed; a plug-in registers an observe function)")
        obs_spaces.update({key: modality(key).space(s, n) for key in cfg.extra_observations})
        obs_spaces["contact"] = spaces.MultiBinary(n)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (cfg.action_dim,), np.float32)

        gui = render_mode == "human" and _has_display()
        if render_mode == "human" and not gui:
            warnings.warn("render_mode='human' needs a display (DISPLAY is unset); running headless",
                          stacklevel=2)
        self._client: int | None = p.connect(p.GUI if gui else p.DIRECT)
        c = self._client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / cfg.physics_hz, numSubSteps=0,
                                    deterministicOverlappingPairs=1, physicsClientId=c)
        self._plane = p.loadURDF("plane.urdf", physicsClientId=c)
        self.robot = Robot(c, robot_urdf(cfg.peg_shape, cfg.peg_width, cfg.peg_length),
                           peg_hull(cfg.peg_shape, cfg.peg_width, cfg.peg_length), cfg.peg_length,
                           cfg.controller, 1.0 / cfg.physics_hz)
        self.task = make_task(c, cfg)  # cfg.task: what the robot must do (sim.task)
        self.camera = (Camera(c, s, cfg.camera_target, cfg.camera_distance, cfg.camera_yaw,
                              cfg.camera_pitch, cfg.camera_fov) if cfg.use_camera or render_mode else None)
        if self.camera is not None and not gui:
            self.camera.cull_links(self.robot.uid)
            self.camera.cache_backdrop(self._plane)
        self.camera_shift = np.zeros(3)  # m, this episode's camera calibration error (camera_target_error)
        if gui:
            p.resetDebugVisualizerCamera(cfg.camera_distance * 2, cfg.camera_yaw, cfg.camera_pitch,
                                         list(cfg.camera_target), physicsClientId=c)
        self.ft_sensor = ForceTorqueSensor(cfg.ft_sensor, cfg.physics_hz)
        self.occluder = (Occluder(c, cfg.occluder, self.camera.view) if cfg.occluder.mode != "off" else None)
        self.pushes = Pushes(cfg.push, 1.0 / cfg.control_hz)
        # Restoring this snapshot at every reset makes episodes independent of what came before
        # (contact caches, solver warm starts), which is what seeded replays need.
        self._snapshot = p.saveState(physicsClientId=c)
        self._steps = 0
        self._prev_action = np.zeros(3)
        self._yaw = 0.0
        self._last_obs: dict[str, np.ndarray] | None = None
        self._frame: Frame | None = None
        self._prev_frame: Frame | None = None
        self._poses: dict[int, np.ndarray] | None = None

    # ---------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._require_open()
        c, cfg, rng = self._client, self.cfg, self.np_random
        p.restoreState(self._snapshot, physicsClientId=c)
        self.task.reset(rng)  # the task samples and places its scene
        start = self.task.start_tip(rng)
        self._yaw = 0.0
        q = self.robot.solve_ik(start, tool_down_quat(self._yaw))
        self.robot.reset(q)
        self.robot.target_quat = tool_down_quat(self._yaw)
        self.ft_sensor.reset()
        self._steps = 0
        self._prev_action = np.zeros(3)
        # Disturbances draw after everything else, so episodes with them off stay as they were.
        self.pushes.reset()
        if self.occluder is not None:
            self.occluder.reset(rng)
        if cfg.randomization.camera_target_error > 0 and self.camera is not None:  # drawn last, as the above
            self._aim_camera(rng.uniform(0.0, 2.0 * np.pi))
        n = cfg.n_substeps
        tip = self.robot.tip_state()
        obs = self._observation(tip, None, np.zeros(n, dtype=np.int8))
        if cfg.compute_flow:
            self._poses = body_link_poses(c, self._moving_bodies())
        self._last_obs = obs
        return obs, self._info(tip)

    def _aim_camera(self, heading: float) -> None:
        """Move the camera (and the occluder in front of it) ``randomization.camera_target_error`` m
        along ``heading`` rad (world frame, from +x) from where ``camera_target`` puts it."""
        shift = self.cfg.randomization.camera_target_error * np.array([np.cos(heading), np.sin(heading), 0.0])
        self.camera.aim(np.asarray(self.cfg.camera_target) + shift)
        self.camera_shift = shift
        if self.occluder is not None:
            self.occluder.move_with_camera(shift)

    def step(self, action):
        self._require_open()
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.cfg.action_dim,):
            raise ValueError(f"action must have shape ({self.cfg.action_dim},), got {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {action!r}")
        a = np.clip(a, -1.0, 1.0)
        cfg, robot, c = self.cfg, self.robot, self._client
        tip = robot.tip_state()
        self._set_target(tip.pos, a)

        n = cfg.n_substeps
        raw = np.zeros((n, 6))
        contact = np.zeros(n, dtype=np.int8)
        box, arm = self.task.uid, robot.uid
        robot.begin_step()
        state, _ = robot.substep_state()
        pushes = self.pushes if self.pushes.enabled else None
        if pushes is not None:
            pushes.begin_step(self.np_random, n, 1.0 / cfg.physics_hz)
        pushed = False
        for i in range(n):
            robot.control_substep(state)
            force = pushes.force_at(i) if pushes is not None else None
            if force is not None:  # at the peg's centre of mass, below the wrist sensor
                com = p.getLinkState(robot.uid, PEG_LINK, physicsClientId=c)[0]
                p.applyExternalForce(robot.uid, PEG_LINK, force.tolist(), com, p.WORLD_FRAME, physicsClientId=c)
                pushed = True
            p.stepSimulation(physicsClientId=c)
            state, raw[i] = robot.substep_state()
            if p.getContactPoints(arm, box, PEG_LINK, -1, physicsClientId=c):
                contact[i] = 1
        # A NaN propagates through the rest of the step, so one check at the end catches it.
        broken = not np.isfinite(state).all()
        self._steps += 1
        reason = None
        if broken or not np.isfinite(raw).all():
            reason = "nan"
        else:
            tip = robot.tip_state()
            if not all(np.isfinite(v).all() for v in (tip.pos, tip.quat, tip.lin_vel, tip.ang_vel)):
                reason = "nan"
            elif norm(tip.lin_vel) > cfg.max_ee_speed:
                reason = "runaway"
            elif np.any(tip.pos < cfg.workspace_low) or np.any(tip.pos > cfg.workspace_high):
                reason = "workspace"
        if reason == "nan":
            # Never let a NaN reach the agent: repeat the last valid observation.
            obs = self._last_obs
            info = {"is_success": False, "truncation_reason": reason}
            return obs, 0.0, False, True, info

        obs = self._observation(tip, raw, contact)
        terms = self.task.reward_terms(tip.pos)
        success = self.task.is_success(tip.pos)
        reward = float(sum(terms.values()))
        if cfg.action_change_penalty:
            reward -= cfg.action_change_penalty * float(np.sum((a[:3] - self._prev_action) ** 2))
        self._prev_action = a[:3].copy()
        if success:
            # Finishing must always beat hovering just short of success for the remaining steps.
            reward += cfg.completion_bonus + self.task.max_step_reward * (cfg.max_steps - self._steps)
        if reason is None and self._steps >= cfg.max_steps and not success:
            reason = "time_limit"
        info = self._info(tip, terms)
        info["raw_force"] = raw.astype(np.float32)
        info["peg_block_contact"] = bool(contact.any())  # the simulator's: the peg touched the block this step
        info["pushed"] = pushed
        if cfg.compute_flow:
            info["flow"] = self._flow()
        truncated = reason is not None and not success
        if truncated:
            info["truncation_reason"] = reason
        self._last_obs = obs
        return obs, reward, bool(success), truncated, info

    def render(self):
        """rgb_array: the camera image (S, S, 3) uint8 of the current state; human: the GUI shows it."""
        if self.render_mode != "rgb_array":
            return None
        self._require_open()
        if self.cfg.use_camera and self._last_obs is not None:
            return self._last_obs["rgb"].copy()
        return self.camera.render().rgb

    def close(self) -> None:
        if self._client is not None:
            try:
                p.disconnect(physicsClientId=self._client)
            except p.error:
                pass
            self._client = None

    # ---------------------------------------------------------------------------------------- helpers
    @property
    def client(self) -> int:
        """The PyBullet client id this env owns (for queries with ``physicsClientId``)."""
        self._require_open()
        return self._client

    def _require_open(self) -> None:
        if self._client is None:
            raise RuntimeError("the environment is closed")

    def _set_target(self, tip_pos: np.ndarray, a: np.ndarray) -> None:
        cfg, robot = self.cfg, self.robot
        origin = tip_pos if cfg.controller.action_origin == "tip" else robot.target_pos
        press_below = cfg.controller.press_in_hole
        if press_below is not None and tip_pos[2] < cfg.box_height - press_below:
            a = a.copy()
            a[2] = IN_HOLE_PRESS_ACTION
        target = origin + a[:3] * cfg.action_scale
        target = np.clip(target, cfg.workspace_low, cfg.workspace_high)
        lead = target - tip_pos
        dist = norm(lead)
        max_lead = cfg.controller.max_lead
        separate = cfg.controller.max_lateral_lead
        if separate is not None:  # vertical and lateral bounded each on its own
            lateral = math.hypot(lead[0], lead[1])
            if lateral > separate:
                lead[:2] *= separate / lateral
            lead[2] = min(max(lead[2], -max_lead), max_lead)
            target = tip_pos + lead
        elif dist > max_lead:  # the lead bound is what caps the contact force
            target = tip_pos + lead * (max_lead / dist)
        lateral_max = cfg.controller.max_lateral_lead_in_hole
        if lateral_max is not None and tip_pos[2] < cfg.box_height - IN_HOLE_DEPTH:
            lateral = math.hypot(*(target[:2] - tip_pos[:2]))
            if lateral > lateral_max:  # a lateral push held against the wall tilts the peg and wedges it
                target[:2] = tip_pos[:2] + (target[:2] - tip_pos[:2]) * (lateral_max / lateral)
        robot.target_pos = target
        if cfg.action_dim == 4:
            limit = getattr(self.task, "yaw_limit", math.pi / 4)  # rad: the task's, else a quarter turn
            self._yaw = float(np.clip(self._yaw + a[3] * cfg.action_scale_yaw, -limit, limit))
            robot.target_quat = tool_down_quat(self._yaw)

    def _observation(self, tip, raw: np.ndarray | None, contact: np.ndarray) -> dict:
        offset = self.robot.peg_weight_in_sensor(tip.quat)
        if raw is None:  # at reset the arm is at rest: the sensor feels the peg's weight only
            raw = np.tile(offset, (self.cfg.n_substeps, 1))
        dt = 1.0 / self.cfg.physics_hz
        t0 = ((self._steps - 1) * self.cfg.n_substeps + 1) * dt if self._steps else 0.0
        force = np.clip(self.ft_sensor.process(raw, offset, self.np_random, t0, dt if self._steps else 0.0),
                        -FORCE_LIMIT, FORCE_LIMIT)
        obs: dict[str, np.ndarray] = {}
        if self.occluder is not None:
            self.occluder.update(self._steps / self.cfg.control_hz, bool(contact.any()))
        if self.cfg.use_camera:
            frame = self.camera.render(segmentation=self.cfg.compute_flow)
            self._prev_frame, self._frame = self._frame, frame
            obs["rgb"] = frame.rgb
            obs["depth"] = frame.depth
        obs["force"] = force.astype(np.float32)
        proprio = np.concatenate([tip.pos, tip.quat, tip.lin_vel, tip.ang_vel])
        obs["proprio"] = np.clip(proprio, -PROPRIO_LIMIT, PROPRIO_LIMIT).astype(np.float32)
        obs["contact"] = contact.astype(np.int8)
        for key in self.cfg.extra_observations:  # plug-in modalities observe themselves
            obs[key] = np.asarray(MODALITY_REGISTRY[key].observe(self), dtype=self.observation_space[key].dtype)
            if obs[key].shape != self.observation_space[key].shape:  # a plug-in's observe against its space
                raise ValueError(f"modality {key!r}: observe() returned shape {obs[key].shape}, its space is "
                                 f"{self.observation_space[key].shape}")
        return obs

    def _moving_bodies(self) -> list[int]:
        """Bodies whose motion the flow follows: the arm, and the occluder when there is one."""
        return [self.robot.uid] + ([self.occluder.uid] if self.occluder is not None else [])

    def _flow(self) -> np.ndarray:
        poses = body_link_poses(self._client, self._moving_bodies())
        prev = self._prev_frame
        flow = optical_flow(prev.depth, prev.seg, self._poses, poses, self.camera.view, self.camera.proj)
        self._poses = poses
        return flow

    def _info(self, tip, terms: dict[str, float] | None = None) -> dict[str, Any]:
        state, _ = self.robot.substep_state()
        return {
            "is_success": self.task.is_success(tip.pos),
            "tip_pos": tip.pos.copy(),
            "target_pos": self.robot.target_pos.copy(),
            "target_yaw": self._yaw,
            **self.task.info(tip.pos, terms),  # the task's entries (peg in hole: the hole's pose, depth, ...)
            "joint_pos": state[:7].astype(np.float32),
            "joint_vel": state[7:].astype(np.float32),
            "occluder_visible": self.occluder is not None and self.occluder.visible,
        }

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
