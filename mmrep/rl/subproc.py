"""A ``SubprocVecEnv`` that fails when an env worker dies, instead of waiting on its pipe forever.

SB3's workers do not catch exceptions: an exception in a worker's ``step`` (a non-finite latent, a
PyBullet error) prints its traceback and ends the process; the main process's ``step_wait`` gets an
``EOFError``, and then ``close()`` (a training's cleanup) reads every worker's pipe again for the
failed step's answers and blocks for good on a live worker that already gave its answer. A policy
training was measured sitting idle for half an hour that way. Here a dead worker raises
``EnvWorkerDied`` naming it, its exit code and where its traceback went (every wait on a pipe polls
and checks that the worker is alive), and ``close()`` does not wait on answers already read, so a
training stops with an error, its checkpoints kept, and the same command resumes.

``pin_cpus``: each worker bound to one CPU (``os.sched_setaffinity``, Linux), worker i to the i-th
(cyclically) of the CPUs the main process may use. Every vector step the main process wakes the
workers, which sleep on their pipes while it runs the policy. On this project's 2-core machine bound
workers stepped the fused row's loop 1.22x faster for about the same CPU per env step: they waited
less, for reasons not pinned down (measured 2026-12-08, ``docs/results/speed.md``). Leave it off
where other jobs share the machine's CPUs: every pinned training puts its worker i on the same CPU.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper
from stable_baselines3.common.vec_env.subproc_vec_env import _worker

POLL_SECONDS = 1.0  # how often a read that waits checks that the worker is alive; data arriving ends it at once


class EnvWorkerDied(RuntimeError):
    """An env worker process ended while the main process waited on it."""


def worker_cpus(n_workers: int, allowed: Sequence[int] | None = None) -> list[int]:
    """The CPU of each of ``n_workers`` pinned workers: worker i on the i-th of ``allowed`` (by default
    the CPUs this process may run on, ``os.sched_getaffinity``), cyclically where there are more
    workers than CPUs."""
    if allowed is None:
        if not hasattr(os, "sched_getaffinity"):
            raise OSError("pinning env workers to CPUs needs os.sched_setaffinity (Linux)")
        allowed = os.sched_getaffinity(0)
    cpus = sorted(allowed)
    return [cpus[i % len(cpus)] for i in range(n_workers)]


def _pinned(cpu: int, env_fn: Callable[[], gym.Env]) -> gym.Env:
    """Run in the worker: bind it to ``cpu``, then build its env (so the env's threads start there)."""
    os.sched_setaffinity(0, {cpu})
    return env_fn()


class WatchedPipe:
    """The main process's end of one worker's pipe: ``recv`` and ``send`` raise ``EnvWorkerDied``
    when the worker process has ended instead of blocking."""

    def __init__(self, conn: Any, process: Any, index: int) -> None:
        self.conn, self.process, self.index = conn, process, index

    def _died(self) -> EnvWorkerDied:
        self.process.join(timeout=5)  # its exit code, once it has finished exiting
        return EnvWorkerDied(f"env worker {self.index} (pid {self.process.pid}) ended with exit code "
                             f"{self.process.exitcode}; its traceback is on stderr above. A training keeps its "
                             f"checkpoints: the same command resumes")

    def recv(self) -> Any:
        while not self.conn.poll(POLL_SECONDS):
            if not self.process.is_alive():
                raise self._died()
        try:
            return self.conn.recv()
        except (EOFError, OSError):  # the worker closed its end as it died
            raise self._died() from None

    def send(self, obj: Any) -> None:
        if not self.process.is_alive():
            raise self._died()
        try:
            self.conn.send(obj)
        except OSError:  # it died between the check and the send (a broken pipe)
            raise self._died() from None

    def close(self) -> None:
        self.conn.close()


class WatchedSubprocVecEnv(SubprocVecEnv):
    """``SubprocVecEnv`` (same workers, same start method, same results) whose reads of a worker's
    pipe raise ``EnvWorkerDied`` once that worker has died, also while the envs are being built.
    ``pin_cpus``: bind worker i to CPU ``worker_cpus(len(env_fns))[i]`` (the module's docstring says when)."""

    def __init__(self, env_fns: list[Callable[[], gym.Env]], start_method: str | None = None,
                 pin_cpus: bool = False) -> None:
        # SubprocVecEnv.__init__ with the pipes watched before the first read (an env that fails to
        # build ends its worker before it answers "get_spaces")
        self.waiting = False
        self.closed = False
        self.cpus = worker_cpus(len(env_fns)) if pin_cpus else None
        if self.cpus is not None:
            env_fns = [partial(_pinned, cpu, fn) for cpu, fn in zip(self.cpus, env_fns, strict=True)]
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        remotes, work_remotes = zip(*[ctx.Pipe() for _ in range(len(env_fns))], strict=True)
        self.processes = []
        for work_remote, remote, env_fn in zip(work_remotes, remotes, env_fns, strict=True):
            process = ctx.Process(target=_worker, args=(work_remote, remote, CloudpickleWrapper(env_fn)), daemon=True)
            process.start()
            self.processes.append(process)
            work_remote.close()
        self.remotes = [WatchedPipe(r, p, i) for i, (r, p) in enumerate(zip(remotes, self.processes, strict=True))]
        self.work_remotes = work_remotes
        try:
            self.remotes[0].send(("get_spaces", None))
            observation_space, action_space = self.remotes[0].recv()
            VecEnv.__init__(self, len(env_fns), observation_space, action_space)  # asks every worker
        except EnvWorkerDied:
            self.close()  # the workers that did build stop too, not left waiting
            raise

    def step_wait(self):
        try:
            return super().step_wait()
        except BaseException:
            self.waiting = False  # the live workers' answers were read or will never come: close must not wait
            raise

    def close(self) -> None:
        """Close every worker; a dead one, or one that already answered a failed step, is not waited on
        (SB3's close read every worker's pipe after a failed step and blocked on one with nothing to send)."""
        if self.closed:
            return
        if self.waiting:  # a step sent and not read: read the answers, so the workers take "close" next
            for remote in self.remotes:
                try:
                    remote.recv()
                except EnvWorkerDied:
                    pass
        for remote in self.remotes:
            try:
                remote.send(("close", None))
            except EnvWorkerDied:
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        for remote in self.remotes:
            remote.close()
        self.waiting = False
        self.closed = True
