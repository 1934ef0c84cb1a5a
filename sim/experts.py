"""Scripted experts: their interface (``ScriptedExpert``) and the one rollout loop (``run_episode``).
Each task brings its own (``Task.experts()``; the peg-in-hole task's are in ``sim.peg_hole_experts``),
found and built by name with ``sim.task.task_experts`` and ``sim.task.make_expert``.

"Expert" here means a scripted controller that reads the env's ``info``; the learned policies (RL on
the latent) are ``mmrep.policy``'s, and the envs they train on are ``sim.rl_env``'s.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from sim.config import EnvConfig


class StepRecord(NamedTuple):
    """What one env step gave: the new observation, the action taken (as the policy returned it),
    the reward, whether the episode terminated (success) or was truncated, and the step's info."""

    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class ScriptedExpert:
    """Base class of a task's scripted experts: ``reset(info, seed)`` at the start of an episode, then
    ``act(obs, info)`` -> action in [-1, 1]. ``name`` is the expert's name in its task's ``experts()``."""

    name = "scripted"

    def __init__(self, cfg: EnvConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng()

    def reset(self, info: dict[str, Any], seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor's parameters (besides the env config), for dataset attributes."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n not in ("self", "cfg")]
        return {"name": self.name, **{n: getattr(self, n) for n in names if hasattr(self, n)}}

    def _toward(self, info: dict[str, Any], goal: np.ndarray, speed: float = 1.0,
                yaw_goal: float | None = None) -> np.ndarray:
        """Action moving the controller target toward ``goal`` (3,) m by at most ``speed`` x scale."""
        delta = (goal - info["target_pos"]) / self.cfg.action_scale
        norm = float(np.max(np.abs(delta)))
        if norm > speed:
            delta = delta * (speed / norm)
        action = list(delta)
        if self.cfg.action_dim == 4:
            yaw = 0.0 if yaw_goal is None else (yaw_goal - info["target_yaw"]) / self.cfg.action_scale_yaw
            action.append(yaw)
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)


def run_episode(env, policy: ScriptedExpert, seed: int, policy_seed: int | None = None,
                on_reset: Callable[[dict, dict], None] | None = None,
                on_step: Callable[[StepRecord], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run one episode of the scripted expert ``policy`` in ``env`` (a ``PegInsertionEnv``, possibly
    wrapped): the one
    rollout loop of mmrep (the recorder, the demo and the benchmarks use it).

    ``on_reset(obs, info)`` is called after the reset, ``on_step(StepRecord)`` after each step;
    ``should_stop()``, asked after each step, aborts the episode with ``InterruptedError`` (workers
    whose parent died). Returns ``{"success", "steps", "return", "truncation_reason",
    "force_step_peak", "force_substep_peak"}``: the force peaks are the largest control-step-mean |F|
    and the largest single-substep |F| (N), from the tared readings.
    """
    obs, info = env.reset(seed=seed)
    policy.reset(info, seed=seed if policy_seed is None else policy_seed)
    if on_reset is not None:
        on_reset(obs, info)
    total, steps, step_peak, sub_peak = 0.0, 0, 0.0, 0.0
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.asarray(policy.act(obs, info), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
        mag = np.linalg.norm(obs["force"][:, :3], axis=1)
        step_peak = max(step_peak, float(mag.mean()))
        sub_peak = max(sub_peak, float(mag.max()))
        if on_step is not None:
            on_step(StepRecord(obs, action, float(reward), bool(terminated), bool(truncated), info))
        if should_stop is not None and should_stop():
            raise InterruptedError("episode stopped")
    return {"success": bool(terminated), "steps": steps, "return": total,
            "truncation_reason": info.get("truncation_reason"), "force_step_peak": step_peak,
            "force_substep_peak": sub_peak}
