"""What a collection is and the pieces both backends run: its config (``CollectConfig``), the plan of
episode ``i`` (a function of ``(seed, i)`` only), the recorder that runs and records episodes, the order
they are handed out in, and the progress bar. ``sim.collect`` (local worker processes, and the entry
point ``collect``) and ``sim.collect_ray`` (Ray actors) both build on it; neither imports the other at
module level."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim.config import PEG_SHAPES, EnvConfig
from sim.dataset_format import ArraySpec
from sim.modalities import import_plugins
from sim.peg_hole_experts import DEFAULT_MIXTURE as DEFAULT_POLICY_MIXTURE  # noqa: F401  (its old name here)
from sim.recording import COMPRESSIONS, record_episode, specs_for_env
from sim.registration import env_id
from sim.task import make_expert, task_experts, task_factory

COLLECT_ENV_DEFAULTS: dict[str, Any] = {"max_steps": 100, "compute_flow": True}
"""Where collection's env differs from ``EnvConfig``'s defaults: short episodes, exact flow on (the
training labels need the camera and the flow)."""


BACKENDS = ("local", "ray")
DEFAULT_POLICY_KWARGS: dict[str, dict[str, Any]] = {"noisy_expert": {"noise_std": 0.3}}
"""The peg-in-hole noisy expert's noise; ignored for a task without an expert of that name."""


def _collect_env() -> EnvConfig:
    return EnvConfig(**COLLECT_ENV_DEFAULTS)


@dataclass
class CollectConfig:
    """What ``mmrep collect`` collects (Hydra: ``configs/collect.yaml``)."""

    episodes: int = 20
    shapes: list[str] = field(default_factory=lambda: list(PEG_SHAPES))  # episode i gets shapes[i % len]
    # mixture weights over the task's scripted experts (``Task.experts()``; empty: the task's
    # ``default_mixture``, or all its experts alike); a value given replaces the mixture, it is not
    # merged into it (an empty default makes Hydra's ``policies={random:1.0}`` an assignment)
    policies: dict[str, float] = field(default_factory=dict)
    policy_kwargs: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_POLICY_KWARGS))
    seed: int = 0
    out: str = "data/sim"
    workers: int | None = None  # None: all cores (ray: all the cluster's CPUs); one PyBullet client each
    backend: str = "local"  # local: processes on this machine | ray: Ray actors (pip install 'mmrep[ray]')
    ray_address: str | None = None  # backend=ray: None starts a local Ray instance; "auto" or "host:6379" joins one
    compression: str = "lzf"  # lzf | gzip | none
    valid_fraction: float = 0.2  # of episodes, for the train/valid split
    progress: bool = True  # progress bar
    env: EnvConfig = field(default_factory=_collect_env)  # peg_shape is set per episode from ``shapes``

    def validate(self) -> None:
        """Raise ValueError naming the field (``env.*`` for the env section)."""
        if isinstance(self.env, dict):  # built by hand with a dict of env arguments
            self.env = EnvConfig.from_kwargs(**{**COLLECT_ENV_DEFAULTS, **self.env})
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes must be a positive int, got {self.episodes!r}")
        if not self.shapes or any(s not in PEG_SHAPES for s in self.shapes):
            raise ValueError(f"shapes must be a non-empty list of {PEG_SHAPES}, got {list(self.shapes)!r}")
        import_plugins(self.env.plugins)  # they may register the task
        try:
            experts = task_experts(self.env.task)
        except ValueError as err:
            raise ValueError(f"env.task: {err}") from None
        if not experts:
            raise ValueError(f"env.task={self.env.task!r} has no scripted experts (Task.experts()): nothing to "
                             f"collect with")
        mixture = self.mixture()
        unknown = [p for p in mixture if p not in experts]
        if unknown:
            raise ValueError(f"policies: unknown {unknown} for task {self.env.task!r}; choose from {sorted(experts)}")
        if any(w < 0 for w in mixture.values()) or sum(mixture.values()) <= 0:
            raise ValueError(f"policies weights must be >= 0 with a positive sum, got {dict(mixture)!r}")
        unknown = [p for p in self.policy_kwargs if p not in experts and p not in DEFAULT_POLICY_KWARGS]
        if unknown:
            raise ValueError(f"policy_kwargs: unknown policies {unknown} for task {self.env.task!r}; choose from "
                             f"{sorted(experts)}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError("backend=ray needs Ray: pip install 'mmrep[ray]' (or pip install ray)")
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError(f"ray_address={self.ray_address!r} needs backend=ray (backend is {self.backend!r})")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be a positive int or None, got {self.workers!r}")
        if self.env.peg_shape != EnvConfig.peg_shape:
            raise ValueError(f"env.peg_shape={self.env.peg_shape!r} would be overwritten: collection draws "
                             f"each episode's shape from shapes (e.g. shapes=[{self.env.peg_shape}])")
        try:
            self.env.validate()
        except ValueError as err:
            raise ValueError(f"env.{err}") from None
        for name, kwargs in self.policy_kwargs.items():  # a bad policy argument fails now, not in a worker
            if name not in experts:
                continue  # a default entry for another task's expert
            try:
                make_expert(name, self.env, **kwargs)
            except TypeError as err:
                raise ValueError(f"policy_kwargs.{name}: {err}") from None

    def mixture(self) -> dict[str, float]:
        """The expert mixture's weights: ``policies``, or when it is empty the task's ``default_mixture``
        (the peg-in-hole task's: ``sim.peg_hole_experts.DEFAULT_MIXTURE``), or all its experts alike."""
        if self.policies:
            return dict(self.policies)
        default = getattr(task_factory(self.env.task), "default_mixture", None)
        return dict(default) if default else {name: 1.0 for name in task_experts(self.env.task)}

    def env_config(self, shape: str) -> EnvConfig:
        """The env settings of an episode with peg ``shape``."""
        return dataclasses.replace(self.env, peg_shape=shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``collect_config.json``, the manifest)."""
        d = asdict(self)
        d["env"] = self.env.to_dict()  # (its own rules: a default task is left out)
        d["policies"] = self.mixture()
        return json.loads(json.dumps(d))


def plan_episode(cfg: CollectConfig, index: int) -> tuple[int, str, str]:
    """``(env seed, peg shape, policy name)`` of episode ``index``: a function of (seed, index) only."""
    rng = np.random.default_rng([cfg.seed, index])
    mixture = cfg.mixture()
    names = sorted(mixture)
    weights = np.array([mixture[n] for n in names], dtype=float)
    policy = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    shape = cfg.shapes[index % len(cfg.shapes)]
    return int(rng.integers(0, 2**31 - 1)), shape, policy


class EpisodeRecorder:
    """Records a collection's episodes by index, keeping one env (one PyBullet client) per peg shape.

    A local worker process holds one; a Ray actor is one (``sim.collect_ray``)."""

    def __init__(self, cfg: CollectConfig) -> None:
        self.cfg = cfg
        self._envs: dict[str, Any] = {}

    def record(self, index: int, should_stop=None) -> tuple[dict[str, np.ndarray], dict[str, Any], list[ArraySpec]]:
        """Episode ``index``'s arrays, attributes and array specs (``sim.recording.record_episode``)."""
        seed, shape, policy_name = plan_episode(self.cfg, index)
        env = self._envs.get(shape) or self._envs.setdefault(
            shape, gym.make(env_id(shape), config=self.cfg.env_config(shape)))
        policy = make_expert(policy_name, env.unwrapped.cfg, **self.cfg.policy_kwargs.get(policy_name, {}))
        arrays, attrs = record_episode(env, policy, seed, should_stop=should_stop)
        return arrays, attrs, specs_for_env(env)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def dispatch_order(cfg: CollectConfig, todo: list[int]) -> list[int]:
    """The order to hand episodes out in: long ones first (exploration policies run to the step limit;
    experts usually stop early on success), so the workers finish together instead of one idling."""
    return sorted(todo, key=lambda i: ("expert" in plan_episode(cfg, i)[2], i))


class Progress:
    """The progress bar of a collection run; ``tick(index, steps, success)`` after each episode."""

    def __init__(self, total: int, n_workers: int, backend: str, out: Path, enabled: bool, resumed: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="ep", desc=f"collect ({n_workers} {backend} workers)",
                        disable=not enabled or None, dynamic_ncols=True)
        if resumed:
            self.bar.write(f"resuming: {resumed} episodes already complete in {out}")
        self.start, self.steps = time.time(), 0

    def tick(self, index: int, n: int, success: bool) -> None:
        self.steps += n
        self.bar.update()
        self.bar.set_postfix(steps=self.steps, steps_per_s=f"{self.steps / max(time.time() - self.start, 1e-9):.0f}")

    def close(self) -> None:
        self.bar.close()
