"""``WatchedSubprocVecEnv``: a dead env worker stops the main process with an error naming it, and
closing returns, where SB3's ``SubprocVecEnv.close()`` after the failed step waited for good."""

import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from mmrep.rl.subproc import EnvWorkerDied, WatchedSubprocVecEnv, worker_cpus
from sim.rl_env import make_rl_env

ROOT = Path(__file__).resolve().parents[1]
FAST = {"use_camera": False, "physics_hz": 240.0, "max_steps": 50}


class FailsAtStep(gym.Wrapper):
    """The env, raising in ``step`` number ``at`` (as a non-finite latent did in a worker)."""

    def __init__(self, env: gym.Env, at: int) -> None:
        super().__init__(env)
        self.at, self.steps = at, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.at:
            raise ValueError(f"step {self.at} of this worker fails")
        return self.env.step(action)


def failing_env(at: int) -> gym.Env:
    return FailsAtStep(make_rl_env(FAST, state=True), at)


def test_steps_like_sb3s_subproc_vec_env_when_the_workers_live():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    fns = [partial(make_rl_env, FAST, (), True, i) for i in range(2)]
    watched, plain = WatchedSubprocVecEnv(fns), SubprocVecEnv(fns)
    try:
        watched.seed(5), plain.seed(5)
        np.testing.assert_array_equal(watched.reset(), plain.reset())
        actions = np.random.default_rng(0).uniform(-1, 1, (6, 2, 3)).astype(np.float32)
        for a in actions:
            for x, y in zip(watched.step(a)[:3], plain.step(a)[:3]):
                np.testing.assert_array_equal(x, y)
    finally:
        watched.close(), plain.close()


def test_worker_cpus_takes_the_allowed_cpus_in_order_and_cycles():
    assert worker_cpus(3, {5, 2}) == [2, 5, 2]
    assert worker_cpus(1, [7]) == [7]
    if hasattr(os, "sched_getaffinity"):  # by default, the CPUs this process may use (Linux)
        assert set(worker_cpus(4)) <= os.sched_getaffinity(0)
    else:
        with pytest.raises(OSError, match="needs os.sched_setaffinity"):
            worker_cpus(4)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_pinned_workers_run_on_their_cpu_and_step_as_unpinned_ones():
    fns = [partial(make_rl_env, FAST, (), True, i) for i in range(3)]
    pinned, free = WatchedSubprocVecEnv(fns, pin_cpus=True), WatchedSubprocVecEnv(fns)
    try:
        assert pinned.cpus == worker_cpus(3) and free.cpus is None
        for process, cpu in zip(pinned.processes, pinned.cpus):
            assert os.sched_getaffinity(process.pid) == {cpu}
        assert all(os.sched_getaffinity(p.pid) == os.sched_getaffinity(0) for p in free.processes)
        pinned.seed(5), free.seed(5)
        np.testing.assert_array_equal(pinned.reset(), free.reset())
        for a in np.random.default_rng(0).uniform(-1, 1, (6, 3, 3)).astype(np.float32):
            for x, y in zip(pinned.step(a)[:3], free.step(a)[:3]):
                np.testing.assert_array_equal(x, y)
    finally:
        pinned.close(), free.close()


def test_a_worker_that_dies_in_step_raises_naming_it_and_the_rest_close():
    venv = WatchedSubprocVecEnv([partial(make_rl_env, FAST, (), True, 0), partial(failing_env, 3)])
    venv.reset()
    action = np.zeros((2, 3), np.float32)
    venv.step(action), venv.step(action)
    t0 = time.time()
    with pytest.raises(EnvWorkerDied, match=r"env worker 1 \(pid \d+\) ended with exit code 1"):
        venv.step(action)
    assert time.time() - t0 < 30
    venv.close()
    assert venv.closed and not any(p.is_alive() for p in venv.processes)


def test_a_worker_whose_env_fails_to_build_raises_and_the_others_stop():
    import multiprocessing as mp

    before = {p.pid for p in mp.active_children()}
    with pytest.raises(EnvWorkerDied, match="env worker 1"):
        WatchedSubprocVecEnv([partial(make_rl_env, FAST), partial(make_rl_env, {"max_steps": 0})])
    left = [p for p in mp.active_children() if p.pid not in before]
    assert not left, f"workers left running: {left}"


@pytest.mark.slow
def test_sb3s_subproc_vec_env_blocks_closing_after_a_worker_died():
    """The defect, kept measured: under SB3's own class the failed step raises, and the close that a
    training's cleanup runs then never returns."""
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from functools import partial; import numpy as np; from stable_baselines3.common.vec_env import "
            "SubprocVecEnv; from sim.rl_env import make_rl_env; from test_subproc import failing_env, FAST\n"
            "if __name__ == '__main__':\n"
            "    v = SubprocVecEnv([partial(make_rl_env, FAST, (), True, 0), partial(failing_env, 1)]); v.reset()\n"
            "    try:\n        v.step(np.zeros((2, 3), np.float32))\n"
            "    except EOFError:\n        print('step raised', flush=True)\n"
            "    v.close()\n")
    with pytest.raises(subprocess.TimeoutExpired) as err:
        subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, cwd=ROOT)
    assert b"step raised" in (err.value.stdout or b"")
