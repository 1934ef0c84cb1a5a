"""Gymnasium wrappers of the peg-insertion env (numpy only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np

from sim.observation import PROPRIO8_DIM, proprio8_from_proprio13
from sim.perturb import SensorStats, Setting, apply_all


class PerturbObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Perturbs every observation with ``sim.perturb`` settings, in order, seeded.

    ``settings``: ``Setting`` objects or strings ``"name:p"`` (``"rgb/occlusion_mean:0.5"``,
    ``"force/bias:1"``, ``"force/dead:1@0.25"``: in a quarter of the episodes). The wrapper's generator
    is seeded by ``seed`` and, at each ``reset(seed=s)``, re-seeded from ``(seed, s)``, so a seeded
    episode is perturbed the same way every time. Faults of the episode (F/T bias signs, drift
    direction, a dead sensor, whether a setting with a share of episodes below 1 is drawn into it) are
    drawn once per episode; drift grows with the episode's time (steps / control_hz). Values are
    clipped to the observation space, which is unchanged.
    """

    def __init__(self, env: gym.Env, settings: Iterable[Setting | str], seed: int = 0,
                 stats: SensorStats | None = None) -> None:
        # recorded, so that env.spec (gymnasium's check_env, gym.make(spec)) can name and rebuild it
        gym.utils.RecordConstructorArgs.__init__(self, settings=[str(s) for s in settings], seed=seed, stats=stats)
        gym.ObservationWrapper.__init__(self, env)
        self.settings = [s if isinstance(s, Setting) else Setting.parse(s) for s in settings]
        self.stats = stats or SensorStats()
        self.seed = int(seed)
        self._rng = np.random.default_rng([self.seed])
        self._episode_seed = 0
        self._steps = 0
        self._active = [s for s in self.settings if s.episodes >= 1.0]  # before the first reset
        cfg = getattr(env.unwrapped, "cfg", None)
        self._control_dt = 1.0 / cfg.control_hz if cfg is not None else 0.05
        self._reading_dt = 1.0 / cfg.physics_hz if cfg is not None else 1e-3

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng([self.seed, int(seed)])
        self._episode_seed = int(self._rng.integers(2**62))
        self._steps = 0
        # whether each setting is in this episode: from the episode's seed, so settings in every episode
        # (share 1) draw nothing and perturb exactly as they did before shares existed
        self._active = [s for k, s in enumerate(self.settings)
                        if s.episodes >= 1.0 or np.random.default_rng([self._episode_seed, k]).random() < s.episodes]
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._steps += 1
        return super().step(action)

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = observation["force"].shape[0] if "force" in observation else 0
        # the first reading of this observation's window, in seconds since reset
        time_s = max(self._steps * self._control_dt - n * self._reading_dt, 0.0)
        out = apply_all(observation, self._active, self._rng, stats=self.stats,
                        episode_rng=np.random.default_rng(self._episode_seed), time_s=time_s,
                        reading_dt=self._reading_dt, batched=False)
        for key, space in self.observation_space.spaces.items():
            if key in out and out[key] is not observation[key] and isinstance(space, gym.spaces.Box):
                out[key] = np.clip(out[key], space.low, space.high).astype(space.dtype)
        return out


class ExpertAdvice(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """What a scripted expert of the task would do now: ``expert_action()`` -> (action_dim,) float32 in
    [-1, 1], the expert's ``act`` on the raw observation and info of the latest reset or step.

    For demonstrations in a learner's own env (``mmrep.rl.demos``): the learner sees its observation
    (a latent, perturbed sensors), the expert acts on what it always reads (the raw sensors and the
    privileged info: the hole estimate, the controller target). Wrap it directly around the base env.
    It changes nothing the env returns. The expert's noise stream is seeded from the last seeded
    reset and the episodes since (``SeedSequence([seed, k])``), so a seeded run repeats.
    """

    def __init__(self, env: gym.Env, expert: str, **kwargs: Any) -> None:
        from sim.task import make_expert

        gym.utils.RecordConstructorArgs.__init__(self, expert=expert, **kwargs)
        gym.Wrapper.__init__(self, env)
        self.expert = make_expert(expert, env.unwrapped.cfg, **kwargs)
        self._obs: dict[str, np.ndarray] | None = None
        self._info: dict[str, Any] = {}
        self._seed, self._episode = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._seed, self._episode = int(seed), 0
        expert_seed = int(np.random.SeedSequence([self._seed, self._episode]).generate_state(1)[0])
        self._episode += 1
        self.expert.reset(info, seed=expert_seed)
        self._obs, self._info = obs, info
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._obs, self._info = obs, info
        return obs, reward, terminated, truncated, info

    def expert_action(self) -> np.ndarray:
        if self._obs is None:
            raise RuntimeError("ExpertAdvice.expert_action: reset the env first")
        return np.asarray(self.expert.act(self._obs, self._info), dtype=np.float32)


class TareForce(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Zeroes the wrist F/T sensor at every reset, in free air, as a robot does before a contact task:
    the mean of the reset observation's readings, (6,) N and N m, is subtracted from every reading of
    the episode (``force``: (n, 6) float32, sensor frame), and the result clipped to the space.

    Why: a constant offset present when the episode starts (``force/bias``) is then gone, whatever its
    size or signs, while a live sensor's readings move by the mean of 50 readings of noise at rest
    (about 0.01 N: measured 2026-12 on the peg at its start pose). What it cannot remove: an offset that
    appears after the reset (``force/drift`` grows after it) or a dead sensor (zeros stay zeros). Wrap
    it after the perturbations: the tare is the robot's software, the fault is the sensor's.
    """

    KEY = "force"

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        if self.KEY not in getattr(env.observation_space, "spaces", {}):
            raise ValueError(f"TareForce: the observation has no {self.KEY!r} entry to tare")
        self._space = env.observation_space.spaces[self.KEY]
        self.offset = np.zeros(6, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        self.offset = observation[self.KEY].mean(axis=0, dtype=np.float64).astype(np.float32)
        return self.observation(observation), info

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(observation)
        tared = observation[self.KEY] - self.offset
        out[self.KEY] = np.clip(tared, self._space.low, self._space.high).astype(self._space.dtype)
        return out


class Proprio8Observation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Adds ``proprio8``, (8,) float32 PROPRIO8 (x, y, z m; yaw rad; vx, vy, vz m/s; yaw rate rad/s;
    ``sim.observation``), beside the env's 13-value ``proprio``, which stays for the encoder.

    Why: PROPRIO13 carries the peg's orientation quaternion, and on the compliant wrist the peg tilts
    towards the hole's side when it presses on the rim; a policy reading that tilt gets the hole's
    direction from proprioception, which is what the touch-needing setting wants to come from touch
    (``docs/results/touch_task.md``). PROPRIO8 keeps only the yaw of the orientation.
    """

    KEY = "proprio8"

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        spaces = dict(env.observation_space.spaces)
        limit = float(np.max(spaces["proprio"].high))
        spaces[self.KEY] = gym.spaces.Box(-limit, limit, (PROPRIO8_DIM,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(observation)
        out[self.KEY] = proprio8_from_proprio13(observation["proprio"])
        return out


class CommandObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Adds ``command``, (3,) float32, m, world frame: the controller's desired tip position minus the
    measured tip after the step (zeros at reset); ``kp_pos`` times it is the force the controller
    pushes with (2 N/mm, up to the lead bound).

    Why: with ``controller.action_origin`` "target" an action moves the desired position from where
    the previous ones left it, so the command a policy has built up is state it cannot see from its
    senses; a robot knows its own commanded pose. Wrap the env itself (before perturbations): the
    command is the controller's, not a sensor's.
    """

    KEY = "command"

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        spaces = dict(env.observation_space.spaces)
        spaces[self.KEY] = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(observation)
        tip = np.asarray(observation["proprio"][:3], dtype=np.float64)
        out[self.KEY] = (self.env.unwrapped.robot.target_pos - tip).astype(np.float32)
        return out


STATE_FIELDS = ("dx", "dy", "dz", "dx_fine", "dy_fine", "dz_fine", "vx", "vy", "vz", "fx", "fy", "fz", "contact")
FINE_FIELDS = ("dx_fine", "dy_fine", "dz_fine")
FINE_SCALE = 0.002  # m: the fine channels are tanh(offset / 2 mm), the hole's clearance


class StateObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The privileged low-dimensional state as the observation, for debugging policies and as a
    ceiling (a robot does not observe the hole's pose exactly).

    Observation: ``Box`` (13,) float32, ``STATE_FIELDS``: the peg tip relative to the hole's top
    centre (m, world), the same offset at millimetre resolution (``tanh(offset / fine_scale)``,
    unitless; left out with ``fine_scale=0``: 10 values), the tip's linear velocity (m/s), the mean
    wrist force of the last control step (N, sensor frame), and the fraction of its substeps in contact.

    A tip-to-hole vector rather than absolute positions: PPO on absolute positions near (0.6, 0, 0.04) m
    that vary by centimetres did not learn (measured 2026-11). The fine channels because the hole's clearance
    (2 mm) is a few hundredths of the offset's spread (centimetres): after normalisation the coarse
    offset alone hardly tells 1 mm from 3 mm, and policies stopped on the rim a few mm short.
    """

    def __init__(self, env: gym.Env, fine_scale: float = FINE_SCALE) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, fine_scale=fine_scale)
        gym.ObservationWrapper.__init__(self, env)
        self.fine_scale = float(fine_scale)
        self.fields = tuple(f for f in STATE_FIELDS if self.fine_scale > 0 or f not in FINE_FIELDS)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (len(self.fields),), np.float32)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        hole = self.env.unwrapped.task.goal_pos  # privileged: the task's goal point (the hole's top centre)
        proprio = observation["proprio"]
        force = observation["force"][:, :3].mean(0)
        contact = observation["contact"].mean(keepdims=True)
        offset = proprio[:3] - hole
        fine = [np.tanh(offset / self.fine_scale)] if self.fine_scale > 0 else []
        return np.concatenate([offset, *fine, proprio[7:10], force, contact]).astype(np.float32)
