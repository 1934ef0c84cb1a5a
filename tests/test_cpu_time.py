"""``mmrep.rl.cpu_time``: the CPU seconds of a training's own process and its env workers."""

import time
from functools import partial

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from mmrep.rl.cpu_time import CpuMeter, process_cpu_seconds, worker_pids
from mmrep.rl.subproc import WatchedSubprocVecEnv


class BusyEnv(gym.Env):
    """An env whose every step burns ``cpu`` CPU seconds in its process (a render or a physics step)."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, cpu: float = 0.0) -> None:
        self.cpu = cpu

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        start = time.process_time()
        while time.process_time() - start < self.cpu:
            pass
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_worker_pids_are_found_through_the_wrappers():
    venv = WatchedSubprocVecEnv([partial(BusyEnv) for _ in range(2)])
    try:
        assert worker_pids(VecNormalize(venv)) == [p.pid for p in venv.processes] != []
    finally:
        venv.close()
    assert worker_pids(VecNormalize(DummyVecEnv([BusyEnv]))) == []  # the envs step in this process


def test_the_meter_counts_what_the_workers_spend_and_keeps_it_after_they_end():
    venv = WatchedSubprocVecEnv([partial(BusyEnv, 0.2) for _ in range(2)])
    meter = CpuMeter(venv, prior=10.0)
    try:
        venv.reset()
        before = meter.seconds - time.process_time()  # prior and the workers' start-up
        for _ in range(2):
            venv.step(np.zeros((2, 1), np.float32))
        workers = meter.seconds - time.process_time() - before
        # 2 workers x 2 steps x 0.2 s, burnt in the workers while this process waited on their pipes
        assert 0.75 <= workers <= 1.5
        assert before >= 10.0
    finally:
        venv.close()
    after = meter.seconds - time.process_time()
    assert after >= before + workers - 1e-3  # the ended workers count with their last reading


def test_the_meter_reads_none_where_a_part_is_not_known():
    dummy = DummyVecEnv([BusyEnv])
    assert CpuMeter(dummy, prior=None).seconds is None  # a run resumed from a checkpoint older than the record
    meter = CpuMeter(dummy, prior=2.0)  # no workers: the prior and this process alone
    assert abs(meter.seconds - 2.0 - time.process_time()) < 0.05


def test_a_process_cpu_reading_is_this_process_own_time():
    import os

    assert abs(process_cpu_seconds(os.getpid()) - time.process_time()) < 0.1  # /proc ticks are 10 ms
