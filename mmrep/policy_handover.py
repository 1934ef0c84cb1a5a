"""Handing control to a policy that does not need a failed sense.

A fused policy leans on every sense it was trained with: on the touch setting a dead F/T sensor costs
the fused policy about half its clean success, while a policy trained without F/T (no_haptics) never
read it and does not care. ``HandoverPolicy`` acts with the ``primary`` policy until the primary's
reliability check says a watched sense (``watch``, e.g. ``("force",)``) has failed for ``patience``
consecutive control steps; from then on the ``fallback`` policy acts until the episode ends. This is
fault-tolerant control by reconfiguration, the policy-level counterpart of "Detect, Reject, Correct"
(Lee et al. 2021): detect with the flags, reject the policy that needs the sense, correct with the one
that does not.

While the primary acts, a fallback with camera memory encodes every observation too, so its memory and
odometry are current when it takes over (a fallback without memory is encoded only once it acts).
``trigger``: ``"flatline"`` (the F/T readings of the step do not change: a dead or stuck sensor,
``mmrep.models.reliability.flatlined``) or ``"flags"`` (the primary encoder's reliability flags:
thresholds on the expert's variance, and the flatline check).

Use it through ``mmrep policy eval fallback=RUN`` (``mmrep.policy_eval``), which steps the env under the
primary's latent observation and records, per episode, whether and when control was handed over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from mmrep.models.reliability import flatlined
from mmrep.policy import normalize_obs

TRIGGERS = ("flatline", "flags")


def check_options(trigger: str, patience: int) -> None:
    """``ValueError`` naming the option for an unknown ``fallback_trigger`` or a patience under one step."""
    if trigger not in TRIGGERS:
        raise ValueError(f"fallback_trigger must be one of {list(TRIGGERS)}, got {trigger!r}")
    if patience < 1:
        raise ValueError(f"fallback_patience must be >= 1 control step, got {patience!r}")


class HandoverPolicy:
    """A primary latent policy that hands control to a fallback when a watched sense fails (module doc).

    ``primary`` / ``fallback``: ``(model, latent venv, obs_rms)`` as ``mmrep.policy.load_policy`` returns
    them (the venv's ``codec`` is used; the fallback's env is never stepped); ``watch``: the modalities
    whose failure hands over; ``patience``: consecutive flagged control steps before the handover (>= 1);
    ``trigger``: ``"flatline"`` or ``"flags"``. ``predict`` takes the raw observation dict of the
    primary's env (a batch of one) and has SB3's signature, so ``mmrep.policy.run_episodes`` drives it;
    ``handover_step`` is the 1-based control step of the current episode at which the fallback took
    over, None while the primary acts."""

    def __init__(self, primary: tuple[Any, Any, Any], fallback: tuple[Any, Any, Any],
                 watch: Sequence[str] = ("force",), patience: int = 3, trigger: str = "flatline") -> None:
        check_options(trigger, patience)
        self.models = [primary[0], fallback[0]]
        self.codecs = [getattr(primary[1], "codec", None), getattr(fallback[1], "codec", None)]
        if any(c is None for c in self.codecs):
            raise ValueError("a handover needs two policies on a frozen latent (obs kind latent or latent_proprio)")
        self.rms = [primary[2], fallback[2]]
        self.watch = tuple(watch)
        primary_reads = self.codecs[0].encoder.cfg.modalities
        unread = [m for m in self.watch if m not in primary_reads]
        if unread:
            raise ValueError(f"fallback_on {unread}: the primary policy's encoder reads {list(primary_reads)}")
        space = getattr(getattr(primary[1], "venv", None), "observation_space", None)
        if trigger == "flatline" and space is not None:  # only a time series of readings can flatline
            still = [m for m in self.watch if m in space.spaces and len(space[m].shape) != 2]
            if still:
                raise ValueError(f"fallback_trigger=flatline watches time series of readings (force: (n, 6)); "
                                 f"{still} are not: use fallback_trigger=flags")
        needs = [m for m in self.watch if m in self.codecs[1].encoder.cfg.modalities]
        if needs:
            raise ValueError(f"the fallback policy's encoder reads {needs}, the senses it would take over for: "
                             "hand over to a policy trained without them (e.g. no_haptics for force)")
        self.reliability = self.codecs[0].encoder.require_reliability() if trigger == "flags" else None
        self.patience = patience
        self.states: list[Any] = [None, None]
        self.started = [False, False]
        self.step = self.run = 0
        self.handover_step: int | None = None

    def reset(self) -> None:
        """A new episode: the primary acts, both latents' memories are cleared."""
        for codec in self.codecs:
            codec.reset_memory()
        self.states = [None, None]
        self.started = [False, False]
        self.step = self.run = 0
        self.handover_step = None

    @torch.no_grad()
    def failed(self, obs: dict[str, np.ndarray]) -> bool:
        """Whether a watched sense looks failed in this (batch of one) observation."""
        inputs = {m: torch.as_tensor(np.asarray(obs[m])) for m in self.watch}
        if self.reliability is None:
            return any(bool(f[0]) for f in flatlined(inputs).values())
        encoder = self.codecs[0].encoder
        logvars = encoder.expert_logvars({m: obs[m] for m in encoder.cfg.modalities})
        flags = self.reliability.flags({m: lv.float().reshape(-1) for m, lv in logvars.items() if m in self.watch},
                                       inputs)
        return any(bool(f.reshape(-1)[0]) for f in flags.values())

    def predict(self, obs: dict[str, np.ndarray], state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """The action (1, action_dim) for a raw observation dict with a leading batch axis of one."""
        if episode_start is not None and bool(np.asarray(episode_start).reshape(-1)[0]):
            self.reset()
        self.step += 1
        if self.handover_step is None:  # once handed over, the fallback keeps the episode: no more checks
            self.run = self.run + 1 if self.failed(obs) else 0
            if self.run >= self.patience:
                self.handover_step = self.step
        k = 0 if self.handover_step is None else 1
        z = self.codecs[k].encode(obs)
        if k == 0 and self.codecs[1].memory is not None:  # a fallback with camera memory: keep it current
            self.codecs[1].encode(obs)
        starts = np.array([not self.started[k]])  # a recurrent policy's state starts where it takes over
        action, self.states[k] = self.models[k].predict(normalize_obs(z, self.rms[k]), state=self.states[k],
                                                        episode_start=starts, deterministic=deterministic)
        self.started[k] = True
        return action, None


# Env fields that may differ between the two policies' training: the in-simulation disturbances, which
# every evaluation setting sets for both (``sim.rl_env.CLOSED_LOOP``), and the reward's terms, which
# shape training and change nothing the policies see or do when evaluated.
MAY_DIFFER = ("occluder", "push", "completion_bonus", "action_change_penalty")


def check_same_task(primary_cfg, fallback_cfg, primary: str, fallback: str) -> None:
    """``ValueError`` naming the fields where the two policies' training envs differ (but ``MAY_DIFFER``):
    the fallback must have learned the task the primary acts on; its disturbances and sensor faults in
    training may differ."""
    a, b = asdict(primary_cfg.env), asdict(fallback_cfg.env)
    differ = sorted(k for k in set(a) | set(b) if k not in MAY_DIFFER and a.get(k) != b.get(k))
    if differ:
        raise ValueError(f"fallback {fallback} was trained on another env than {primary}: "
                         + "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in differ))


def check_fallback_inputs(codec, obs_space, fallback: str) -> None:
    """``ValueError`` unless the primary's env observes everything the fallback's latent reads."""
    keys = list(codec.encoder.cfg.modalities) + list(codec.extra_keys)
    missing = [k for k in keys if k not in obs_space.spaces]
    if missing:
        raise ValueError(f"fallback {fallback} reads {missing}, which the primary policy's env does not observe "
                         f"(keys {sorted(obs_space.spaces)})")
