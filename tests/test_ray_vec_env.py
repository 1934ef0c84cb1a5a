"""Policy envs on Ray actors (``vec_env=ray``): SB3's sub-env semantics, the same rollouts, training."""

from functools import partial

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv
from test_policy import TINY_PPO, policy_cfg

from mmrep.policy import load_policy, train_policy
from sim.rl_env import make_rl_env

pytest.importorskip("ray")

ENV = {"use_camera": False, "physics_hz": 240.0, "max_steps": 6}


def _fns(n):
    return [partial(make_rl_env, ENV, (), True, i) for i in range(n)]


def _rollout(venv, steps=14):
    venv.seed(7)
    out = [venv.reset()]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, rew, done, infos = venv.step(rng.uniform(-1, 1, size=(venv.num_envs, 3)).astype(np.float32))
        out += [obs, rew, done, [i.get("terminal_observation") for i in infos]]
    return out


def test_ray_vec_env_rolls_out_exactly_as_the_dummy_vec_env(ray_local):
    from mmrep.rl.cpu_time import worker_pids
    from mmrep.rl.ray_vec_env import RayVecEnv

    ray_env = RayVecEnv(_fns(2))
    try:
        assert ray_env.num_envs == 2 and ray_env.get_attr("spec")[0].id == "mmrep/PegInsertion-v0"
        assert ray_env.env_is_wrapped(type(make_rl_env(ENV, (), True)))[0] is True
        assert worker_pids(ray_env) is None  # Ray's processes, not ours: their CPU time is not known here
        got = _rollout(ray_env)
    finally:
        ray_env.close()
    ray_env.close()  # a second close does nothing
    dummy = DummyVecEnv(_fns(2))
    try:
        want = _rollout(dummy)
    finally:
        dummy.close()
    assert sum(d.sum() for d in got[3::4]) >= 2  # episodes ended and were reset within the rollout
    for a, b in zip(got, want, strict=True):
        if isinstance(a, list):
            for x, y in zip(a, b, strict=True):
                assert (x is None) == (y is None) and (x is None or np.array_equal(x, y))
        else:  # rewards: float64 as SubprocVecEnv stacks them, float32 in DummyVecEnv's buffer
            np.testing.assert_array_equal(np.asarray(a, dtype=b.dtype), b)


def test_policy_training_takes_its_envs_from_ray_actors(ray_local, tmp_path):
    cfg = policy_cfg(tmp_path / "run", "obs=state", "total_steps=32", *TINY_PPO, "vec_env=ray", "n_envs=2",
                     "eval_episodes=1")
    assert train_policy(cfg)["timesteps"] == 32
    model, venv, _, _ = load_policy(tmp_path / "run" / "policy.pt")
    venv.close()


def test_ray_address_needs_the_ray_vec_env(tmp_path):
    with pytest.raises(ValueError, match="ray_address=.*needs vec_env=ray"):
        policy_cfg(tmp_path, "obs=state", "ray_address=auto")
