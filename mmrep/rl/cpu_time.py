"""CPU seconds a policy training spends: its own process and its env worker processes.

On a machine that other jobs share, a training's wall time says more about the load than about the
training: the same row took 53 and 80 minutes on two cores depending on what ran beside it. The CPU
time (user + system) it used holds better, and is what a compute budget is counted in. Linux only (it
reads ``/proc/<pid>/stat`` for the workers); elsewhere, and for env workers this process cannot see
(Ray actors), the meter reads ``None``: unknown, never a number that leaves part out.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv


def worker_pids(venv: Any) -> list[int] | None:
    """The process ids of a (wrapped) vector env's worker processes: ``[]`` for a ``DummyVecEnv`` (its
    envs step in this process), ``None`` where the workers are not local processes (Ray)."""
    while not hasattr(venv, "processes") and not isinstance(venv, DummyVecEnv) and hasattr(venv, "venv"):
        venv = venv.venv
    if getattr(venv, "remote_workers", False):
        return None
    if isinstance(venv, DummyVecEnv):
        return []
    processes = getattr(venv, "processes", None)
    return None if processes is None else [p.pid for p in processes]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``; ``OSError`` once it
    has ended and been reaped, or without ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime in clock ticks


class CpuMeter:
    """CPU seconds of a training so far: ``prior`` (its earlier sessions, from the checkpoint) plus
    this process's (every thread: the learner, an evaluation env, an encoder in the main process) and
    its env workers'. A worker that has ended counts with the last value read from it. ``seconds`` is
    ``None`` where any part cannot be read (``prior`` unknown, no ``/proc``, Ray workers)."""

    def __init__(self, venv: Any, prior: float | None = 0.0) -> None:
        self.prior, self.pids = prior, worker_pids(venv)
        self.last: dict[int, float] = {}
        self.readable = self.pids is not None and Path("/proc/self/stat").exists()

    @property
    def seconds(self) -> float | None:
        if self.prior is None or not self.readable:
            return None
        for pid in self.pids:
            try:
                self.last[pid] = process_cpu_seconds(pid)
            except OSError:
                pass  # ended: its last reading stands
        return self.prior + time.process_time() + sum(self.last.values())
