"""The environments a learned (RL) policy trains and is evaluated on, built in one place (numpy only: a
vector env's worker processes import this, not the learner's torch code), and the closed-loop
evaluation settings (``CLOSED_LOOP``).

``make_rl_env(env, perturbations, state)`` is a picklable factory argument set for
``SubprocVecEnv``: the peg-insertion env with the given options, perturbation wrappers
(``sim.wrappers.PerturbObservation``), optionally the privileged state observation
(``sim.wrappers.StateObservation``), and Gymnasium's episode statistics (``info["episode"]``, which
SB3 logs as rollout/ep_rew_mean and ep_len_mean; ``info["is_success"]`` is the env's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

import sim  # noqa: F401  (registers the env ids)
from sim.registration import BASE_ID
from sim.wrappers import (
    FINE_SCALE,
    CommandObservation,
    ExpertAdvice,
    PerturbObservation,
    Proprio8Observation,
    StateObservation,
    TareForce,
)


def make_rl_env(env: dict[str, Any] | None = None, perturbations: Sequence[str] = (), state: bool = False,
                    perturb_seed: int = 0, render_mode: str | None = None,
                    fine_scale: float = FINE_SCALE, proprio8: bool = False, command: bool = False,
                    ft_tare: bool = False, expert: str | None = None) -> gym.Env:
    """One env: ``gym.make(BASE_ID, **env)``, then perturbations (``"name:p"``), then, with ``ft_tare``,
    the F/T sensor zeroed at each reset (``sim.wrappers.TareForce``), then the state view
    (with ``fine_scale``, m: ``StateObservation``); ``proprio8`` adds the ``proprio8`` entry
    (``Proprio8Observation``), computed after the perturbations so it sees what the policy's sensors do;
    ``command`` adds the controller's ``command`` (``CommandObservation``), before them; ``expert``
    (a scripted expert's name) lets the env say what that expert would do (``ExpertAdvice``), for
    demonstrations."""
    e = gym.make(BASE_ID, render_mode=render_mode, **dict(env or {}))
    if expert:  # on the raw env: the expert reads the true sensors and the privileged info
        e = ExpertAdvice(e, expert)
    if command:
        e = CommandObservation(e)
    if perturbations:
        e = PerturbObservation(e, list(perturbations), seed=perturb_seed)
    if ft_tare:  # the robot's software, after the sensor's faults
        e = TareForce(e)
    if proprio8:
        e = Proprio8Observation(e)
    if state:
        e = StateObservation(e, fine_scale)
    return gym.wrappers.RecordEpisodeStatistics(e)


def _only(occluder: str = "off", push_hz: float = 0.0) -> dict[str, Any]:
    """Env overrides that set every in-simulation disturbance, so a setting means the same for a
    policy trained with disturbances in its own env options (an occluder in half its episodes)."""
    return {"occluder": {"mode": occluder, "probability": 1.0}, "push": {"rate_hz": push_hz}}


# Closed-loop evaluation settings: (env option overrides, sim.perturb settings "name:p").
CLOSED_LOOP: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "clean": (_only(), ()),
    "occluder": (_only(occluder="static"), ()),  # 0.1 m at 0.25 m: about 23% of the view, the whole block
    "occluder_after_contact": (_only(occluder="after_contact"), ()),  # the paper's video
    "pushes": (_only(push_hz=1.0), ()),  # 0.5 N s pushes on the arm, one a second on average
    "ft_noise": (_only(), ("force/gaussian_noise:0.5",)),  # sigma half the channel's std
    "ft_bias": (_only(), ("force/bias:1",)),  # 3 std per channel, random signs, constant per episode
    "ft_dead": (_only(), ("force/dead:1",)),  # the F/T sensor reads zeros
}


make_policy_env = make_rl_env  # its name before the scripted experts and the RL envs had a module each
