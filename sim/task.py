"""The task protocol: what an env asks of its task, and the registry that picks one by config.

``PegInsertionEnv`` owns the robot, the camera, the sensors and the control loop; everything about
*what* the robot must do is its task's (``EnvConfig.task`` names it; ``make_task`` builds it):

    name                     the registry name
    uid                      the PyBullet body whose contact with the peg counts (``obs["contact"]``)
    max_step_reward          the largest per-step reward (sizes the completion bonus)
    reset(rng)               sample and place this episode's scene (the env's rng, at reset)
    start_tip(rng) -> (3,)   m, where the peg tip starts
    goal_pos -> (3,)         m, the privileged goal point (state observations, probes)
    reward_terms(tip) -> {name: float}   the staged reward's terms (summed by the env)
    is_success(tip) -> bool
    info(tip, terms) -> dict the task's entries of the env's ``info``
    experts() -> {name: expert class}    its scripted experts (``sim.experts.ScriptedExpert``), a static
                                         method: collection asks the class before any env exists
    default_mixture (optional)           {expert name: weight}, collection's mixture when none is given
    yaw_limit (optional)                 rad, how far 4-D actions may turn the peg (default a quarter turn)
    hindsight_label(proprio, contact) -> (2,) or None   optional, a label from the robot's own sensing

The peg-in-hole task (``sim.peg_hole``) is the one built in; ``register_task`` adds others without
editing the env (``docs/extending.md``). Its old names (``PegHoleTask``, ``HolePose``,
``MAX_STEP_REWARD``) still import from here.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from sim.config import DEFAULT_TASK, EnvConfig
from sim.hindsight import insertion_point

# PyBullet is only imported when a task is built: training reads hindsight labels without it.
_OLD_NAMES = ("BOX_COLOR", "MAX_STEP_REWARD", "HolePose", "PegHoleTask")


def __getattr__(name: str) -> Any:
    """The peg-in-hole task's names, importable from here as before (``sim.peg_hole`` defines them)."""
    if name in _OLD_NAMES:
        import sim.peg_hole

        return getattr(sim.peg_hole, name)
    raise AttributeError(f"module 'sim.task' has no attribute {name!r}")


@runtime_checkable
class Task(Protocol):
    """What the env asks of its task (module doc)."""

    name: str
    uid: int
    max_step_reward: float

    def reset(self, rng: np.random.Generator) -> None: ...

    def start_tip(self, rng: np.random.Generator) -> np.ndarray: ...

    @property
    def goal_pos(self) -> np.ndarray: ...

    def reward_terms(self, tip: np.ndarray) -> dict[str, float]: ...

    def is_success(self, tip: np.ndarray) -> bool: ...

    def info(self, tip: np.ndarray, terms: dict[str, float] | None = None) -> dict[str, Any]: ...

    def experts(self) -> dict[str, Any]: ...


TaskFactory = Callable[[int, EnvConfig], Task]
Label = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]
TASKS: dict[str, TaskFactory | str] = {DEFAULT_TASK: "sim.peg_hole.PegHoleTask"}
"""Every task by name: a factory ``(client, cfg) -> Task`` (usually the class), or its dotted path."""
HINDSIGHT_LABELS: dict[str, Label] = {DEFAULT_TASK: insertion_point}
"""The tasks' hindsight labels ``(proprio (T, >=3), contact (T, ...)) -> (2,) or None``, by task name."""


def register_task(name: str, factory: TaskFactory | str, replace: bool = False,
                  hindsight_label: Label | None = None) -> TaskFactory | str:
    """Make ``EnvConfig.task = name`` build ``factory(client, cfg)`` (with its ``hindsight_label``, if
    it has one); a taken name raises ``ValueError`` unless ``replace``."""
    if name in TASKS and not replace:
        raise ValueError(f"task {name!r} is already registered")
    TASKS[name] = factory
    HINDSIGHT_LABELS.pop(name, None)
    if hindsight_label is not None:
        HINDSIGHT_LABELS[name] = hindsight_label
    return factory


def task_factory(name: str) -> TaskFactory:
    """The factory of task ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; registered: {sorted(TASKS)} (import the module that "
                         f"registers it first)") from None
    if isinstance(factory, str):
        module, _, attr = factory.rpartition(".")
        factory = getattr(importlib.import_module(module), attr)
    return factory


Options = TypeVar("Options")


def task_options(cfg: EnvConfig, options_class: type[Options]) -> Options:
    """``cfg.task_options`` as the task's own options dataclass ``options_class`` (its fields, units and
    defaults are the task's configuration; ``"env.task_options={field: value}"`` on a command line).
    A key that is not one of its fields raises ``ValueError`` naming it, the task and the known fields."""
    known = [f.name for f in dataclasses.fields(options_class)]
    unknown = sorted(set(cfg.task_options) - set(known))
    if unknown:
        raise ValueError(f"task_options: unknown {unknown} for task {cfg.task!r}; its options are {known}")
    return options_class(**cfg.task_options)


def make_task(client: int, cfg: EnvConfig) -> Task:
    """Build the task ``cfg.task`` in PyBullet client ``client``."""
    return task_factory(cfg.task)(client, cfg)


def task_experts(task: str) -> dict[str, Any]:
    """The scripted experts of task ``task`` (its factory's ``experts()``, asked of the class: no env is
    built); a task without any gives ``{}``. An unknown task raises ``ValueError`` listing the known ones."""
    experts = getattr(task_factory(task), "experts", None)
    return dict(experts()) if experts is not None else {}


def make_expert(name: str, cfg: EnvConfig, **kwargs: Any) -> Any:
    """Build the scripted expert ``name`` of the task ``cfg.task`` (the peg-in-hole task's: ``expert``,
    ``expert_moment``, ``expert_blind``, ``expert_tilt``, ``expert_oracle``, ``noisy_expert``, ``push_down``,
    ``random``, ``contact_seeking``); an unknown name raises ``ValueError`` listing the task's experts."""
    experts = task_experts(cfg.task)
    if name not in experts:
        raise ValueError(f"unknown policy {name!r} for task {cfg.task!r}; choose one of {sorted(experts)}")
    return experts[name](cfg, **kwargs)


def hindsight_label(task: str) -> Label | None:
    """The hindsight label function of task ``task`` (None when it has none)."""
    if task not in TASKS:
        task_factory(task)  # raises, naming the registered tasks
    return HINDSIGHT_LABELS.get(task)
