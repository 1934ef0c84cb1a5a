"""``RayVecEnv``: SB3's vectorised env with each sub-env in a Ray actor, anywhere on a cluster.

``mmrep policy train vec_env=ray`` steps its sub-envs on Ray actors (one CPU each) while the learner,
the frozen encoder and the normaliser stay in this process (on its GPU, if any): env stepping then
scales past one machine's cores. Semantics are ``SubprocVecEnv``'s exactly, because they are its
code: each actor runs SB3's own sub-env loop (``subproc_vec_env._worker``: auto-reset,
``terminal_observation``, ``TimeLimit.truncated``, per-env seeds) on a thread, behind an in-process
pipe, and ``RayVecEnv`` is a ``SubprocVecEnv`` whose pipe ends are Ray calls. With the same seeds the
rollouts equal ``SubprocVecEnv``'s and ``DummyVecEnv``'s (tested).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnv
from stable_baselines3.common.vec_env.subproc_vec_env import _worker

from sim.collect_ray import import_ray, init_ray

NO_REPLY = ("close",)  # SB3's sub-env loop answers every command but this one


class _ClosedEnd:
    """Stands for the parent's pipe end that SB3's loop closes first in a child process."""

    def close(self) -> None:
        pass


class EnvActor:
    """One sub-env (``env_fn()``) running SB3's sub-env loop; ``call(cmd, data)`` is one pipe exchange."""

    def __init__(self, env_fn: Callable[[], gym.Env]) -> None:
        self._pipe, child = mp.Pipe()
        self._loop = threading.Thread(target=_worker, args=(child, _ClosedEnd(), CloudpickleWrapper(env_fn)),
                                      daemon=True)
        self._loop.start()

    def call(self, cmd: str, data: Any) -> Any:
        self._pipe.send((cmd, data))
        if cmd in NO_REPLY:
            self._loop.join(timeout=30)
            return None
        return self._pipe.recv()


class _ActorEnd:
    """The ``SubprocVecEnv`` side of a pipe, made of Ray calls: ``send`` starts one, ``recv`` waits."""

    def __init__(self, actor) -> None:
        self.actor = actor
        self._pending: list = []

    def send(self, message: tuple[str, Any]) -> None:
        self._pending.append(self.actor.call.remote(*message))

    def recv(self) -> Any:
        return import_ray().get(self._pending.pop(0))

    def close(self) -> None:
        ray = import_ray()
        ray.get(self._pending)  # the close command's completion
        self._pending.clear()
        ray.kill(self.actor)


class RayVecEnv(SubprocVecEnv):
    """``SubprocVecEnv`` on Ray actors (one per sub-env, ``num_cpus`` each).

    Args:
        env_fns: one picklable env factory per sub-env (as for ``SubprocVecEnv``).
        address: the Ray cluster to join (``"auto"``, ``"host:6379"``); None starts a local instance,
            shut down on ``close``. An instance this process already joined is used as it is.
        num_cpus: CPUs each actor reserves.
    """

    remote_workers = True  # the envs step in Ray's processes, which may be on other machines (mmrep.rl.cpu_time)

    def __init__(self, env_fns: list[Callable[[], gym.Env]], address: str | None = None,
                 num_cpus: float = 1.0) -> None:
        ray, self._started_ray = init_ray(address)
        actor_cls = ray.remote(num_cpus=num_cpus)(EnvActor)
        self.waiting, self.closed = False, False
        self.processes = []  # SubprocVecEnv joins these on close: the actors are not processes of ours
        self.remotes = [_ActorEnd(actor_cls.remote(fn)) for fn in env_fns]
        self.remotes[0].send(("get_spaces", None))
        observation_space, action_space = self.remotes[0].recv()
        VecEnv.__init__(self, len(env_fns), observation_space, action_space)

    def close(self) -> None:
        if self.closed:
            return
        super().close()  # sends close to every sub-env, then closes each end (waits, kills the actor)
        if self._started_ray:
            import_ray().shutdown()
