"""Disturbances in the simulation: the occluder the camera renders, pushes the wrist sensor feels,
F/T bias and drift; all off by default and seeded."""

from dataclasses import asdict

import numpy as np
import pytest

from sim.config import EnvConfig, merge_nested
from sim.env import PegInsertionEnv
from sim.peg_hole_experts import PushDownPolicy

QUIET = {"force_noise_std": 0.0, "torque_noise_std": 0.0}


def _first_obs(**kw):
    env = PegInsertionEnv(image_size=64, **kw)
    try:
        obs, info = env.reset(seed=4)
        return obs, info, env
    finally:
        env.close()


def test_static_occluder_covers_the_expected_part_of_the_image():
    clean, _, _ = _first_obs()
    occluded, info, _ = _first_obs(occluder={"mode": "static", "size": [0.1, 0.1], "distance": 0.25})
    changed = (clean["rgb"] != occluded["rgb"]).any(-1).mean()
    # (size / (2 d tan(fov/2)))^2 = (0.1 / (0.5 tan 22.5 deg))^2 = 0.233
    assert 0.19 < changed < 0.27
    assert info["occluder_visible"]
    # nearer than the scene: the depth under the occluder is about the occluder's distance
    near = occluded["depth"][..., 0] < clean["depth"][..., 0] - 0.05
    assert near.mean() > 0.19 and np.median(occluded["depth"][..., 0][near]) < 0.3


def test_occluder_off_leaves_episodes_unchanged():
    a, _, _ = _first_obs()
    b, _, _ = _first_obs(occluder={"mode": "off", "offset_range": 0.05}, push={"rate_hz": 0.0})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_occluder_appears_after_first_contact():
    env = PegInsertionEnv(image_size=64, occluder={"mode": "after_contact"}, max_steps=60)
    try:
        obs, info = env.reset(seed=2)
        policy = PushDownPolicy(env.cfg)
        policy.reset(info, seed=0)
        seen_before = info["occluder_visible"]
        first_contact = None
        for t in range(60):
            obs, _, term, trunc, info = env.step(policy.act(obs, info))
            if first_contact is None and obs["contact"].any():
                first_contact = t
                assert info["occluder_visible"]
            elif first_contact is None:
                assert not info["occluder_visible"]
            if term or trunc:
                break
        assert not seen_before and first_contact is not None and info["occluder_visible"]
    finally:
        env.close()


def test_occluder_probability_puts_it_in_that_share_of_episodes_seeded():
    env = PegInsertionEnv(image_size=64, occluder={"mode": "static", "probability": 0.5}, max_steps=5)
    try:
        seen = [env.reset(seed=s)[1]["occluder_visible"] for s in range(40)]
        again = [env.reset(seed=s)[1]["occluder_visible"] for s in range(40)]
    finally:
        env.close()
    assert seen == again and 10 <= sum(seen) <= 30  # seeded, and about half


def test_closed_loop_settings_set_every_disturbance_whatever_the_policy_trained_with():
    from sim.rl_env import CLOSED_LOOP

    trained = EnvConfig.from_kwargs(occluder={"mode": "after_contact", "probability": 0.5}, push={"rate_hz": 2.0})
    for name, (over, _) in CLOSED_LOOP.items():
        cfg = EnvConfig.from_kwargs(**merge_nested(asdict(trained), over))  # as build_venv merges them
        assert cfg.occluder.probability == 1.0
        assert cfg.occluder.mode == {"occluder": "static", "occluder_after_contact": "after_contact"}.get(name, "off")
        assert cfg.push.rate_hz == (1.0 if name == "pushes" else 0.0)


def test_moving_occluder_moves_and_its_flow_is_exact():
    env = PegInsertionEnv(image_size=64, compute_flow=True, occluder={"mode": "moving", "period": 1.0})
    try:
        env.reset(seed=1)
        p0 = env.occluder.position
        _, _, _, _, info = env.step(np.zeros(3, np.float32))
        assert np.linalg.norm(env.occluder.position - p0) > 0.01
        seg_flow = np.linalg.norm(info["flow"], axis=-1)
        assert (seg_flow > 0.5).mean() > 0.1  # the occluder's pixels move across the image
    finally:
        env.close()


def test_pushes_are_felt_by_the_wrist_sensor_and_seeded():
    def run():
        env = PegInsertionEnv(use_camera=False, ft_sensor=QUIET, push={"rate_hz": 4.0, "impulse": 0.5})
        try:
            env.reset(seed=8)
            pushed, lateral = [], []
            for _ in range(30):
                obs, _, _, _, info = env.step(np.zeros(3, np.float32))
                pushed.append(info["pushed"])
                lateral.append(np.abs(obs["force"][:, :2]).max())
            return np.array(pushed), np.array(lateral)
        finally:
            env.close()

    pushed, lateral = run()
    assert 1 <= pushed.sum() <= 20
    # 0.5 N s over 20 ms is 25 N: the sensor reads well over the quiet level in the steps pushed
    assert lateral[pushed].min() > 5.0 and np.median(lateral[~pushed]) < 1.0
    again, lateral2 = run()
    np.testing.assert_array_equal(pushed, again)
    np.testing.assert_array_equal(lateral, lateral2)


def test_ft_bias_and_drift_are_added_to_the_readings():
    bias = [1.0, -2.0, 3.0, 0.1, 0.0, -0.1]
    drift = [0.0, 0.0, 2.0, 0.0, 0.0, 0.0]
    plain = PegInsertionEnv(use_camera=False, ft_sensor=QUIET)
    faulty = PegInsertionEnv(use_camera=False, ft_sensor={**QUIET, "bias": bias, "drift": drift})
    try:
        a, _ = plain.reset(seed=3)
        b, _ = faulty.reset(seed=3)
        np.testing.assert_allclose(b["force"] - a["force"], np.tile(bias, (50, 1)), atol=1e-5)
        for _ in range(10):
            a = plain.step(np.zeros(3, np.float32))[0]
            b = faulty.step(np.zeros(3, np.float32))[0]
        t = (9 * 50 + 1 + np.arange(50)) / 1000.0  # readings of the 10th step, s since reset
        expected = np.asarray(bias)[None] + t[:, None] * np.asarray(drift)[None]
        np.testing.assert_allclose(b["force"] - a["force"], expected, atol=1e-4)
    finally:
        plain.close()
        faulty.close()


@pytest.mark.parametrize("kwargs, field", [
    ({"occluder": {"mode": "sometimes"}}, "occluder.mode"),
    ({"occluder": {"mode": "static", "distance": 0.9}}, "occluder.distance"),
    ({"use_camera": False, "occluder": {"mode": "static"}}, "occluder.mode needs use_camera"),
    ({"occluder": {"mode": "static", "probability": 1.5}}, "occluder.probability"),
    ({"push": {"rate_hz": 1.0, "duration": 0.2}}, "push.duration"),
    ({"push": {"azimuth_range": [90, -90]}}, "push.azimuth_range"),
    ({"ft_sensor": {"bias": [1.0, 2.0]}}, "ft_sensor.bias"),
])
def test_bad_disturbance_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        EnvConfig.from_kwargs(**kwargs)
